"""What the user asked for on the command line, typed: built once in tasks.py, checked once
(``parts/cluster.validate``) into the :class:`ClusterOptions` every part of `up` reads."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class JobSettings:
    """The per-job settings of ``--jobs`` (None: not given; the host's jobqueue.yaml or portal.yaml's
    ``jobqueue:`` decide then)."""

    queue: str | None = None
    account: str | None = None
    walltime: str | None = None
    job_cores: int | None = None
    job_memory: str | None = None

    def given(self) -> dict[str, Any]:
        """The settings given, by name."""
        return {k: v for k, v in asdict(self).items() if v not in (None, "")}


@dataclass(frozen=True)
class ClusterAsk:
    """The cluster as asked for (None: not given; the settings fill it in)."""

    workers: int | None = None
    threads: int | None = None
    memory: str | None = None  # a size (16GiB) or a share of the host (25%)
    workers_on: str | None = None  # node1,node2
    jobs: int | None = None
    job: JobSettings = field(default_factory=JobSettings)


@dataclass(frozen=True)
class ClusterOptions:
    """The cluster's options, checked: every number within its range, the settings filling the gaps."""

    workers: int  # on the host; 0: the scheduler alone there (its workers are jobs or on other servers)
    threads: int
    memory: str | None = None  # None: the fair share the host gives
    workers_on: tuple[str, ...] = ()
    jobs: int = 0  # worker jobs on the batch system (0: none)
    job: dict[str, Any] = field(default_factory=dict)  # the per-job settings given (JobSettings.given)
    #: workers on each server of ``workers_on`` when the host has none (0: as many as ``workers``)
    node_workers: int = 0

    @property
    def beyond_host(self) -> bool:
        """Workers beyond this host (other servers, batch jobs): the scheduler listens on scheduler_interface."""
        return bool(self.workers_on or self.jobs)

    def for_nodes(self) -> ClusterOptions:
        """The options of the workers on each server of ``workers_on``: ``workers`` of their own there."""
        return replace(self, workers=self.node_workers or self.workers)


@dataclass(frozen=True)
class UpRequest:
    """`portal up` as asked for."""

    env: str | None = None
    jupyter: bool = False
    socket: bool = False  # JupyterLab on a Unix socket where it can
    attach: bool = True
    browser: bool = True
    watch: bool = False
    cluster: ClusterAsk = field(default_factory=ClusterAsk)
