"""Host-side verbs of workers on a batch system (``up --jobs N``, ``scale``): submit, wait, list, cancel.

dask-jobqueue's job classes write the job scripts (``jobqueue_env``, run by the env's own python);
this module submits them with the batch system's own command (``sbatch``), keeps their ids in the
per-server state (``jobs/KEY.json``), asks the queue for their state and the scheduler which of
their workers joined, and cancels them. Each job is one ``dask worker`` (one or more processes) that
dials the user's TLS-only scheduler on ``scheduler_interface``.
"""

from __future__ import annotations

import json
import os
import pkgutil
import re
import shutil
import subprocess
import time
from typing import Any

from . import envcheck
from . import modules as envmodules
from .common import Failure, NotYours, connect_owned, install_preload, locked, private_dirs, read_json, server_path, write_json

#: batch system -> argv that lists jobs ``{ids}`` as ``ID|STATE|REASON`` lines (SLURM is the one tested)
QUEUE_COMMANDS: dict[str | None, list[str]] = {"slurm": ["squeue", "-h", "-o", "%i|%T|%r", "-j", "{ids}"]}
#: queue states of a job that is waiting to start
PENDING = ("PENDING", "CONFIGURING", "REQUEUED", "RESV_DEL_HOLD", "REQUEUE_HOLD")


#: batch system -> its submit command (what dask-jobqueue's job class names; asked without the env)
SUBMIT_COMMANDS = {"slurm": "sbatch", "pbs": "qsub", "sge": "qsub", "lsf": "bsub"}


def check(payload: dict[str, Any]) -> dict[str, Any]:
    """Verb ``jobs-check`` {system}: where this host's submit command is (None when it has none)."""
    command = SUBMIT_COMMANDS.get(payload.get("system") or "slurm", "sbatch")
    return {"command": command, "path": shutil.which(command)}


def record_path(key: str) -> str:
    return server_path("jobs", key + ".json")


def read_record(key: str) -> dict[str, Any] | None:
    record = read_json(record_path(key), None)
    return record if isinstance(record, dict) and isinstance(record.get("jobs"), list) else None


def job_name(key: str, number: int) -> str:
    return "portal-%s-%d" % (key, number)


def _run(argv: list[str], stdin: str | None = None, timeout: int = 60) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout,
                              cwd=os.path.expanduser("~"))
    except FileNotFoundError:
        raise Failure("%s is not on the PATH here." % argv[0], "ClusterError",
                      hint="Run portal on a host where the batch system's commands work (`which %s`)." % argv[0])
    except subprocess.TimeoutExpired:
        raise Failure("%s did not answer within %ds." % (argv[0], timeout), "ClusterError",
                      hint="Is the batch system's controller up? Try `%s` by hand." % " ".join(argv))


def _words(res: subprocess.CompletedProcess[str]) -> str:
    """The batch system's own words for a refusal: its stderr (or stdout) on one line."""
    text = (res.stderr.strip() or res.stdout.strip() or "exit code %d" % res.returncode)
    return " / ".join(line.strip() for line in text.splitlines() if line.strip())[:400]


def scripts(payload: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """The job scripts dask-jobqueue writes in the env for workers ``names`` (nothing is submitted)."""
    envmodules.apply(payload.get("modules"))
    python = envcheck.env_python(payload["env"], payload.get("manager"))
    if payload.get("preload"):  # the jobs' workers import it (a home shared with the compute nodes)
        install_preload(payload["preload"])
    program = (pkgutil.get_data(__package__, "jobqueue_env.py") or b"").decode()
    ask = {k: payload.get(k) for k in ("system", "scheduler", "tls", "worker_args", "prologue", "settings",
                                       "defaults")}
    ask["names"] = names
    res = _run([python, "-c", program], json.dumps(ask) + "\n", timeout=120)
    try:
        reply: dict[str, Any] = json.loads(res.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise Failure("dask-jobqueue in env %s could not write the job script: %s" % (payload["env"], _words(res)),
                      "EnvError", hint="Install it there: pip install dask-jobqueue.")
    if not reply.get("ok"):
        hint = ("Install it there: pip install dask-jobqueue." if reply.get("kind") == "EnvError" else
                "Check the job settings (~/.config/dask/jobqueue.yaml on the host, jobqueue: in portal.yaml, options).")
        raise Failure("env %s: %s" % (payload["env"], reply.get("error")), reply.get("kind") or "ClusterError", hint)
    return reply


def script_verb(payload: dict[str, Any]) -> dict[str, Any]:
    """Verb ``jobs-script`` (read-only, for --explain): the scripts that ``jobs-submit`` would submit."""
    names = _names(payload["key"], read_record(payload["key"]) or {}, int(payload["count"]))
    reply = scripts(payload, names)
    return {"scripts": reply["scripts"], "submit": reply["submit"], "names": names}


def _names(key: str, record: dict[str, Any], count: int) -> list[str]:
    """Names of the next ``count`` jobs of env ``key`` (numbered on from the record's)."""
    first = int(record.get("next", 0))
    return [job_name(key, first + i) for i in range(count)]


def _live(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The recorded jobs the queue still lists (all of them where this system's queue is not asked)."""
    states = queue_states(record.get("system"), [j["id"] for j in record["jobs"]])
    return [j for j in record["jobs"] if states is None or j["id"] in states]


def _forget(key: str, record: dict[str, Any], gone: list[dict[str, Any]], keep: list[dict[str, Any]]) -> list[str]:
    """Cancel ``gone``, keep only ``keep`` of the record (the jobs the queue no longer lists go too)."""
    _cancel(record.get("cancel") or "scancel", [j["id"] for j in gone])
    for job in record["jobs"]:
        if job not in keep and os.path.isfile(job.get("script", "")):
            os.unlink(job["script"])
    record["jobs"] = keep
    if keep:
        write_json(record_path(key), record)
    elif os.path.isfile(record_path(key)):
        os.unlink(record_path(key))
    return [j["id"] for j in gone]


def submit(payload: dict[str, Any]) -> dict[str, Any]:
    """Verb ``jobs-submit``: as many worker jobs as make ``want`` live ones for the env's cluster; with
    ``exact``, the newest extra ones are cancelled too. Ids are kept in the per-server state.

    A refusal of the batch system is one line with its own words; jobs of this call already
    submitted are cancelled again, so a failed call leaves nothing queued.
    """
    key, want = payload["key"], int(payload["want"])
    with locked("jobs-" + key):
        record = read_record(key) or {"jobs": [], "next": 0}
        if record["jobs"] and record.get("scheduler") != payload["scheduler"]:  # jobs of a replaced cluster
            _forget(key, record, list(record["jobs"]), [])
        live = _live(record) if record["jobs"] else []
        if payload.get("exact") and len(live) > want:
            return {"submitted": [], "cancelled": _forget(key, record, live[want:], live[:want])}
        count = max(0, want - len(live))
        if not count:
            return {"submitted": [], "cancelled": []}
        names = _names(key, record, count)
        reply = scripts(payload, names)
        if not shutil.which(reply["submit"]):
            raise Failure("%s is not on the PATH here: no batch system to submit to." % reply["submit"],
                          "ClusterError", hint="Use --jobs on a host with %s, or --workers-on for other servers."
                          % reply["submit"])
        private_dirs(server_path("jobs"))
        made: list[dict[str, Any]] = []
        for name, text in zip(names, reply["scripts"]):
            path = server_path("jobs", name + ".sh")
            with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as fh:
                fh.write(text)
            res = _run([reply["submit"], path])
            found = re.search(reply["job_id_regexp"], res.stdout) if res.returncode == 0 else None
            if not found:
                _cancel(reply["cancel"], [j["id"] for j in made])
                raise Failure("%s refused the job: %s" % (reply["submit"], _words(res)), "ClusterError",
                              hint="Change the job settings (queue, account, walltime, cores, memory) and up again; "
                                   "the script is %s." % path)
            made.append({"id": found.group("job_id"), "name": name, "script": path, "submitted": time.time()})
        record.update({"system": payload["system"], "scheduler": payload["scheduler"], "cancel": reply["cancel"],
                       "next": int(record.get("next", 0)) + count, "jobs": record["jobs"] + made})
        write_json(record_path(key), record)
    return {"submitted": made, "cancelled": []}


def queue_states(system: str | None, ids: list[str]) -> dict[str, dict[str, str]] | None:
    """id -> {"state", "reason"} for the jobs the queue still lists; None when this system is not asked."""
    argv = QUEUE_COMMANDS.get(system)
    if not argv or not ids:
        return {} if argv else None
    res = _run([part.replace("{ids}", ",".join(ids)) for part in argv], timeout=30)
    states: dict[str, dict[str, str]] = {}
    for line in res.stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 3 and parts[0] in ids:
            states[parts[0]] = {"state": parts[1], "reason": "" if parts[2] in ("None", "(null)") else parts[2]}
    return states


def joined_workers(port: int, scheduler_pid: int | None, timeout: float = 3.0) -> dict[str, str] | None:
    """name -> address of the workers the user's scheduler knows (its dashboard's identity.json), or None
    when the scheduler's HTTP port is not the user's own (nothing is asked then)."""
    try:
        sock = connect_owned(int(port), [int(scheduler_pid)] if scheduler_pid else None, timeout, "your scheduler")
    except (OSError, NotYours, TypeError, ValueError):
        return None
    import http.client  # here: the helper's other verbs do without it

    conn = http.client.HTTPConnection("127.0.0.1", int(port), timeout=timeout)
    conn.sock = sock
    try:
        conn.request("GET", "/json/identity.json")
        identity = json.loads(conn.getresponse().read())
    except (OSError, http.client.HTTPException, ValueError):
        return None
    finally:
        conn.close()
    return {str(w.get("name")): addr for addr, w in (identity.get("workers") or {}).items()}


def _of_job(name: str, workers: dict[str, str]) -> list[str]:
    """The workers of job ``name`` (dask-jobqueue names them NAME, or NAME-0, NAME-1 with processes > 1)."""
    return sorted(addr for wname, addr in workers.items() if wname == name or wname.startswith(name + "-"))


def describe(key: str, dashboard_port: int | None = None, scheduler_pid: int | None = None) -> dict[str, Any]:
    """The env's jobs now: each with its queue state (or ``ended``) and the workers of it that joined."""
    record = read_record(key)
    if not record:
        return {"jobs": [], "system": None}
    ids = [j["id"] for j in record["jobs"]]
    states = queue_states(record.get("system"), ids)
    workers = joined_workers(dashboard_port, scheduler_pid) if dashboard_port else None
    jobs: list[dict[str, Any]] = []
    for job in record["jobs"]:
        seen = None if states is None else states.get(job["id"], {"state": "ended", "reason": ""})
        jobs.append({"id": job["id"], "name": job["name"], "state": (seen or {}).get("state", "unknown"),
                     "reason": (seen or {}).get("reason", ""),
                     "workers": _of_job(job["name"], workers) if workers is not None else []})
    return {"jobs": jobs, "system": record.get("system")}


def wait(payload: dict[str, Any]) -> dict[str, Any]:
    """Verb ``jobs-wait``: until every job's workers joined, or ``seconds`` passed (jobs still pending
    then are no reason to wait longer: the reply says which and why)."""
    deadline = time.monotonic() + float(payload.get("seconds", 60))
    while True:
        now = describe(payload["key"], payload.get("dashboard_port"), payload.get("scheduler_pid"))
        live = [j for j in now["jobs"] if j["state"] != "ended"]
        if all(j["workers"] for j in live) or time.monotonic() > deadline:
            return now
        time.sleep(0.25)


def _cancel(command: str, ids: list[str]) -> None:
    if ids:
        _run([command, *ids], timeout=60)


def cancel(payload: dict[str, Any]) -> dict[str, Any]:
    """Cancel every job of the env and forget them (``down``): {cancelled: [ids]}."""
    key = payload["key"]
    with locked("jobs-" + key):
        record = read_record(key)
        return {"cancelled": _forget(key, record, _live(record), []) if record else []}


VERBS = {"jobs-check": check, "jobs-script": script_verb, "jobs-submit": submit, "jobs-wait": wait}
