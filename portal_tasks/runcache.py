"""What one run has learnt from the host, asked once and read by several steps (typed, per Target)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .replies import EnvCheck, Facts


@dataclass(frozen=True)
class SchedulerPorts:
    """Where a plain ``Client()`` of an env finds its cluster: the scheduler's host and port, the dashboard's."""

    scheduler_port: int
    dashboard_port: int
    scheduler_host: str | None = None  # None: the loopback address

    @classmethod
    def of(cls, ports: Mapping[str, Any]) -> SchedulerPorts:
        """From a cluster's state, or the env's ports (recorded or planned)."""
        return cls(int(ports["scheduler_port"]), int(ports["dashboard_port"]), ports.get("scheduler_host") or None)


@dataclass
class RunCache:
    """Answers of one run that several steps ask alike; each field is filled by the first that asks."""

    #: the host's ``probe`` (also filled by warm `up`'s ``snapshot``)
    facts: Facts | None = None
    #: env spec -> the host's ``env-check`` answer (env, cluster, ipython and jupyter of one `up` ask the same)
    env_checks: dict[str, EnvCheck] = field(default_factory=dict)
    #: env key -> the ports of the cluster this run's `cluster` step started or reused
    cluster_ports: dict[str, SchedulerPorts] = field(default_factory=dict)
    #: env key -> its recorded ports from ``ports-report``, else the ones it would get ({} for a full block)
    planned_ports: dict[str, dict[str, Any]] = field(default_factory=dict)
