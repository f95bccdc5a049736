"""Workers of the user's cluster as batch jobs (`up --jobs N`, `scale --jobs N`).

The scheduler stays in the user's cluster window on the host, TLS-only on ``scheduler_interface``;
each job is written by dask-jobqueue's job class in the env (the user's own jobqueue.yaml applies,
then ``jobqueue:`` in portal.yaml, then the options), submitted with the batch system's own command
(``sbatch``), kept by id in the per-server state, and cancelled by ``down``. A job's workers listen
on the user's block ports of the env (on the compute node) and its HTTP server on loopback.
"""

from __future__ import annotations

import shlex
import threading
from typing import Any, Mapping

from .. import daskcmd, plan, tls
from ..errors import UsageError
from ..remote.hostpaths import dask_preload
from ..request import JobSettings
from ..target import Explained, Target

#: option name -> dask-jobqueue setting (what `up`/`scale` may say about one job)
JOB_OPTIONS = {"queue": "queue", "account": "account", "walltime": "walltime", "job_cores": "cores",
               "job_memory": "memory"}
#: memory of one job when neither jobqueue.yaml nor portal.yaml nor an option says (cores: --threads;
#: one worker process per job, so its HTTP server gets the one in-block port the job's start picks)
DEFAULT_JOB_MEMORY = "2GiB"


def job_settings(target: Target, given: Mapping[str, Any]) -> dict[str, Any]:
    """portal.yaml's ``jobqueue:`` of the host, then the per-job settings given (:meth:`JobSettings.given`)."""
    settings = {k: v for k, v in target.settings.jobqueue.items() if k != "system"}
    settings.update({JOB_OPTIONS[k]: v for k, v in given.items() if v not in (None, "")})
    if "cores" in settings:
        settings["cores"] = plan.parse_count("job-cores", settings["cores"], 1, 1024)
    return settings


def validate(target: Target, jobs: int | None, job: JobSettings) -> tuple[int, dict[str, Any]]:
    """``jobs`` (0: none) and the per-job settings given, checked before anything starts."""
    count = 0 if jobs is None else plan.parse_count("jobs", jobs, 0, 1000)
    given = job.given()
    if given and not count:
        raise UsageError(f"--{next(iter(given)).replace('_', '-')} is a setting of batch jobs, but no --jobs is asked.",
                         host=target.host, hint="Add --jobs N, or leave the job settings out.")
    if given.get("job_memory"):
        plan.parse_memory(given["job_memory"])
    return count, given


def defaults(target: Target) -> dict[str, Any]:
    """portal's cores and memory of one job, used only where the user's jobqueue.yaml gives none."""
    return {"cores": target.settings.threads, "memory": DEFAULT_JOB_MEMORY, "processes": 1}


def payload(target: Target, state: dict[str, Any], spec_text: str, count: int, given: Mapping[str, Any]) -> dict[str, Any]:
    """The helper's payload for ``jobs-script`` / ``jobs-submit``: everything dask-jobqueue is told."""
    paths = tls.paths(target.facts()["home"])
    named = bool(target.settings.jobqueue.get("interface"))  # the user's interface: dask-jobqueue's --interface
    ports = tuple(state["worker_ports"]), tuple(state["nanny_ports"])
    preload = dask_preload(target.server_dir())
    http = tuple(state.get("http_ports") or state["worker_ports"])  # a record of the 20-port layout has none
    return {"key": state["key"], "env": spec_text, "manager": target.settings.env_manager, "modules": list(target.settings.modules),
            "system": target.settings.jobqueue.get("system", "slurm"), "scheduler": state["address"],
            "count": count, "tls": {"ca": paths.ca, "cert": paths.cert, "key": paths.key},
            "worker_args": daskcmd.job_worker_args(*ports, listen=not named, preload=preload),
            "preload": preload,
            "prologue": daskcmd.job_prologue(state["address"], http),
            "settings": job_settings(target, given), "defaults": defaults(target)}


def ensure(target: Target, state: dict[str, Any], spec_text: str, count: int, given: Mapping[str, Any],
           exact: bool = False) -> None:
    """``count`` live worker jobs for the env's cluster (``state``: where it listens), in one helper call:
    the missing ones are submitted (with ``exact``, the newest extra ones cancelled); nothing is waited for."""
    target.say(submitted_line(target, spec_text, count, target.link.helper(
        "jobs-submit", submit_payload(target, state, spec_text, count, given, exact), timeout=300)))


def submit_payload(target: Target, state: dict[str, Any], spec_text: str, count: int, given: Mapping[str, Any],
                   exact: bool = False) -> dict[str, Any]:
    """``jobs-submit``'s payload (also `up`'s, whose call submits them): one line first when the scheduler
    listens where no job reaches it."""
    daskcmd.require_reachable(target.host, state, spec_text, "batch jobs", "--jobs (scheduler_interface set)")
    return dict(payload(target, state, spec_text, count, given), want=count, exact=exact)


def submitted_line(target: Target, spec_text: str, count: int, done: Mapping[str, Any]) -> str:
    """What a ``jobs-submit`` did, in one line."""
    if done["submitted"]:
        ids = ", ".join(j["id"] for j in done["submitted"])
        n = len(done["submitted"])
        return f"{target.host}: submitted {n} worker job{'s' if n != 1 else ''} ({ids}) for env {spec_text}."
    if done["cancelled"]:
        return f"{target.host}: cancelled worker jobs {', '.join(done['cancelled'])} of env {spec_text}."
    return f"{target.host}: keeping the {count} worker jobs of env {spec_text}."


class Background:
    """:func:`ensure` in a thread of its own, while `up` goes on (the link carries calls side by side)."""

    def __init__(self, target: Target, state: dict[str, Any], spec_text: str, count: int,
                 given: Mapping[str, Any]) -> None:
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(target, state, spec_text, count, given), daemon=True)
        self._thread.start()

    def _run(self, target: Target, state: dict[str, Any], spec_text: str, count: int, given: Mapping[str, Any]) -> None:
        try:
            ensure(target, state, spec_text, count, given)
        except BaseException as exc:  # noqa: BLE001 - raised again in the caller's thread by result()
            self._error = exc

    def join(self) -> None:
        self._thread.join()

    def result(self) -> None:
        """Wait for it; its error, if it failed, raised here."""
        self._thread.join()
        if self._error is not None:
            raise self._error


def wait_payload(target: Target, key: str) -> dict[str, Any]:
    """``jobs-wait``'s payload but the scheduler's dashboard port and pid (known once it runs)."""
    return {"key": key, "seconds": target.settings.jobs_wait}


def wait(target: Target, state: Mapping[str, Any], spec_text: str) -> dict[str, Any]:
    now = target.link.helper("jobs-wait", dict(wait_payload(target, state["key"]),
                                               dashboard_port=state.get("dashboard_port"),
                                               scheduler_pid=state.get("scheduler_pid")),
                             timeout=target.settings.jobs_wait + 60)
    target.say(f"{target.host}: {summary(now['jobs'])}.")
    return dict(now)


def summary(jobs: list[dict[str, Any]]) -> str:
    """``2 jobs running, 2 workers joined; 1 job pending (reason: Resources)``."""
    live = [j for j in jobs if j["state"] != "ended"]
    if not live:
        return "no worker jobs queued"
    parts = []
    for state in dict.fromkeys(j["state"] for j in live):
        these = [j for j in live if j["state"] == state]
        reasons = sorted({j["reason"] for j in these if j["reason"]})
        joined = sum(len(j["workers"]) for j in these)
        text = f"{len(these)} job{'s' if len(these) != 1 else ''} {state.lower()}"
        if state == "RUNNING":
            text += f", {joined} worker{'s' if joined != 1 else ''} joined"
        if reasons:
            text += f" (reason: {', '.join(reasons)})"
        parts.append(text)
    return "; ".join(parts)


def scale(target: Target, state: dict[str, Any], spec_text: str, count: int,
          given: Mapping[str, Any]) -> dict[str, Any]:
    """Make the env's live jobs ``count``: submit the missing ones, cancel the newest extra ones; then wait."""
    ensure(target, state, spec_text, count, given, exact=True)
    now = wait(target, state, spec_text)
    note = no_workers_note(state, count, spec_text)
    if note:
        target.say(f"{target.host}: {note}")
    return now


def no_workers_note(state: Mapping[str, Any], count: int, spec_text: str) -> str | None:
    """One line when ``scale --jobs 0`` leaves a scheduler that has no workers of its own (``--workers 0``, none
    on other servers): it keeps running, with nothing to compute on; None otherwise."""
    if count or state.get("workers") or state.get("workers_on"):
        return None
    return (f"the scheduler of env {spec_text} now has no workers (none on this host, no jobs): "
            f"`portal scale --env {spec_text} --jobs N` gives it some, `portal down --env {spec_text}` ends it.")


def explain(target: Target, spec_text: str, key: str, ports: dict[str, Any], count: int,
            given: Mapping[str, Any], address: str) -> Explained:
    """The job scripts dask-jobqueue writes in the env (asked read-only), each given to ``sbatch <<'JOB'``;
    ``address``: where the scheduler listens (tls://HOST:PORT)."""
    if not count:
        return Explained()
    state: dict[str, Any] = {"key": key, "address": address}
    state.update({k: ports[k] for k in ("worker_ports", "nanny_ports", "http_ports") if k in ports})
    made = target.link.helper("jobs-script", payload(target, state, spec_text, count, given), timeout=180)
    return Explained(remote=[f"{shlex.quote(made['submit'])} <<'JOB'\n{text.rstrip()}\nJOB" for text in made["scripts"]])
