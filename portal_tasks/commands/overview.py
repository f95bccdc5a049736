"""`status --all`: every host this laptop has used, asked in parallel with a bounded wait.

Each host costs one helper call (``snapshot``) through its link, and each remembered forward one
local HTTP request; all of them run side by side, and whatever has not answered when the wait is
over is reported as such (an unreachable host is one line, never a failure of the whole command).
"""

from __future__ import annotations

import functools
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from invoke.config import Config

from .. import config as config_mod
from .. import state
from ..errors import PortalError, UsageError
from ..link import open_link
from ..services import probe_url
from ..parts import cluster as cluster_step
from . import forward as forward_step
from .status import service_lines

#: Seconds `status --all` (and the page) waits for the hosts, unless told otherwise.
DEFAULT_WAIT = 2.0

T = TypeVar("T")


@dataclass
class Job(Generic[T]):
    """A call running in a daemon thread: one that never returns cannot keep portal from exiting."""

    fn: Callable[[], T]
    value: T | None = None
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Job[T]:
        threading.Thread(target=self._run, daemon=True).start()
        return self

    def _run(self) -> None:
        try:
            self.value = self.fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            self.error = exc
        finally:
            self.done.set()


def check_wait(wait: float | str | None, host: str | None = None) -> float:
    """The --wait value (default DEFAULT_WAIT), 0.1 to 600 seconds; --all does not go with --host."""
    if host:
        raise UsageError("--all asks every host you used; it does not take --host.",
                         hint="Drop --host, or drop --all to ask one host.")
    if wait is None:
        return DEFAULT_WAIT
    try:
        seconds = float(wait)
    except ValueError:
        raise UsageError(f"--wait {wait!r} is not a number of seconds.", hint="Give e.g. --wait 2.") from None
    if not 0.1 <= seconds <= 600:
        raise UsageError(f"--wait {seconds:g} is out of range.", hint="Give 0.1 to 600 seconds.")
    return seconds


def known_hosts() -> list[str]:
    return list(state.load_hosts())


def host_settings(config: Config | Mapping[str, Any] | None, host: str, wait: float,
                  ssh_config: str | None = None) -> config_mod.Settings:
    """The host's settings, reached with the ssh config it was used with, SSH giving up within the wait."""
    recorded = state.load_hosts().get(host, {}).get("ssh_config")
    settings = config_mod.resolve(config, host, ssh_config=ssh_config or recorded)
    return settings.with_(connect_timeout=max(1.0, min(settings.connect_timeout, float(math.ceil(wait)))))


def snapshot(settings: config_mod.Settings, wait: float) -> dict[str, Any]:
    """The host's ``snapshot`` (facts, the session's windows, clusters, Jupyter servers); never prompts."""
    link = open_link(settings)
    link.batch = True
    reply: dict[str, Any] = link.helper("snapshot", {"session": settings.session, "env": None,
                                                     "manager": settings.env_manager,
                                                     "modules": list(settings.modules)}, timeout=wait + 1)
    return reply


def host_report(host: str, session: str, snap: dict[str, Any], forwards: list[dict[str, Any]]) -> dict[str, Any]:
    """A reachable host as `status --all` shows it (pure): the shape of `status`, without ports and notes."""
    facts = snap.get("facts") or {}
    windows = snap.get("windows")
    sessions = [] if windows is None else [{
        "name": session, "portal": True,
        "windows": [{"name": name, "command": w.get("command", ""), "pid": None} for name, w in windows.items()],
    }]
    jupyters = [{k: v for k, v in j.items() if k != "dir"} for j in snap.get("jupyters") or []]
    return {
        "host": host, "reachable": True, "error": None, "user": facts.get("user"), "uid": facts.get("uid"),
        "sessions": sessions,
        "clusters": [cluster_step.describe_entry(c) for c in snap.get("clusters") or []],
        "jupyter": jupyters,
        "forwards": forwards,
    }


def unreachable(host: str, error: str) -> dict[str, Any]:
    return {"host": host, "reachable": False, "error": error, "sessions": [], "clusters": [], "jupyter": [],
            "forwards": []}


def forward_rows(host: str) -> list[dict[str, Any]]:
    """The laptop's remembered forwards of host, `answers` not yet known (None)."""
    return [{"service": name, "local_port": entry.get("local_port"), "remote": entry.get("remote"),
             "url": str(entry.get("url", "")), "answers": None}
            for name, entry in sorted(state.load_forwards(host).items())]


def ask_all(config: Config | Mapping[str, Any] | None, hosts: list[str] | None = None, wait: float = DEFAULT_WAIT,
            ssh_config: str | None = None) -> list[dict[str, Any]]:
    """One report per host, in the order of ``hosts`` (default: every known host), within about ``wait`` seconds."""
    deadline = time.monotonic() + wait
    hosts = known_hosts() if hosts is None else hosts
    asked: list[tuple[str, str, Job[dict[str, Any]] | str, list[tuple[dict[str, Any], Job[bool]]]]] = []
    for host in hosts:
        try:
            settings = host_settings(config, host, wait, ssh_config)
        except PortalError as exc:  # e.g. a bad per-host setting: that host's line says so
            asked.append((host, "", exc.message, []))
            continue
        snap = Job(functools.partial(snapshot, settings, wait)).start()
        checks = [(row, Job(functools.partial(forward_step.answers, probe_url(row["service"], row["url"]),
                                              timeout=wait)).start())
                  for row in forward_rows(host) if row["url"]]
        asked.append((host, settings.session, snap, checks))
    reports = []
    for host, session, snap_job, checks in asked:
        if isinstance(snap_job, str):
            reports.append(unreachable(host, snap_job))
            continue
        if not snap_job.done.wait(max(0.0, deadline - time.monotonic())):
            reports.append(unreachable(host, f"no answer within {wait:g}s"))
            continue
        if snap_job.error is not None or snap_job.value is None:
            reports.append(unreachable(host, _reason(snap_job.error)))
            continue
        for row, check in checks:
            if check.done.wait(max(0.0, deadline - time.monotonic())) and check.error is None:
                row["answers"] = bool(check.value)
        reports.append(host_report(host, session, snap_job.value, [row for row, _ in checks]))
    return reports


def _reason(error: BaseException | None) -> str:
    if isinstance(error, PortalError):
        return error.message
    return f"internal error ({type(error).__name__}: {error})"


def render(reports: list[dict[str, Any]]) -> str:
    if not reports:
        return "no hosts yet: portal lists the hosts you ran `portal up` (or `portal forward`) for."
    lines = []
    for report in reports:
        if not report["reachable"]:
            lines.append(f"{report['host']}: unreachable ({report['error']})")
            continue
        lines.append(f"{report['host']}: user {report['user']} (uid {report['uid']})")
        lines += service_lines(report)
    return "\n".join(lines)
