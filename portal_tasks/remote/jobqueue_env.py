"""Run by the env's own python, not by the helper: dask-jobqueue writes the worker job scripts.

The helper passes this file's text to ``ENV_PYTHON -c`` and one JSON line on stdin:
``{"system", "scheduler", "names", "tls": {ca, cert, key}, "worker_args", "prologue", "settings", "defaults"}``.
It prints one JSON line: ``{"ok": true, "scripts": [...], "submit", "cancel", "job_id_regexp"}`` or
``{"ok": false, "error": ...}``. dask-jobqueue reads the user's own ``~/.config/dask/jobqueue.yaml``
for whatever ``settings`` leaves out, as it does for ``SLURMCluster``; ``defaults`` (portal's cores and
memory per job) apply only where neither gives a value.
"""

from __future__ import annotations

import importlib
import json
import shlex
import sys
from typing import Any

#: portal's name of a batch system -> dask-jobqueue's job class (one code path for all of them)
JOB_CLASSES = {"slurm": "slurm.SLURMJob", "pbs": "pbs.PBSJob", "sge": "sge.SGEJob", "lsf": "lsf.LSFJob"}


def job_scripts(payload: dict[str, Any]) -> dict[str, Any]:
    system = payload["system"]
    module, name = JOB_CLASSES[system].split(".")
    try:
        import dask
        from distributed.security import Security
        job_class = getattr(importlib.import_module("dask_jobqueue." + module), name)
    except ImportError as exc:
        return {"ok": False, "kind": "EnvError", "error": "the env cannot import dask_jobqueue (%s)." % exc}
    tls = payload["tls"]
    security = Security(tls_ca_file=tls["ca"], tls_worker_cert=tls["cert"], tls_worker_key=tls["key"],
                        require_encryption=True)  # type: ignore[no-untyped-call]
    settings = dict(payload.get("settings") or {})
    for key, value in (payload.get("defaults") or {}).items():
        if settings.get(key) is None and dask.config.get("jobqueue.%s.%s" % (system, key), None) is None:
            settings[key] = value
    python = shlex.quote(sys.executable)
    theirs = list(settings.pop("job_script_prologue", None) or [])
    scripts: list[str] = []
    try:
        for name in payload["names"]:
            number = name.rsplit("-", 1)[-1]
            prologue = theirs + [line.replace("{python}", python).replace("{number}", number)
                                 for line in payload.get("prologue") or []]
            job = job_class(scheduler=payload["scheduler"], name=name, job_name=name, security=security, protocol="tls://",
                            python=sys.executable, worker_extra_args=list(payload.get("worker_args") or []),
                            job_script_prologue=prologue, **settings)
            scripts.append(job.job_script())
    except (ValueError, TypeError, KeyError) as exc:  # dask-jobqueue's words for a setting it cannot use
        return {"ok": False, "kind": "ConfigError", "error": str(exc).strip().splitlines()[0]}
    return {"ok": True, "scripts": scripts, "submit": job_class.submit_command, "cancel": job_class.cancel_command,
            "job_id_regexp": job_class.job_id_regexp}


if __name__ == "__main__":
    print(json.dumps(job_scripts(json.loads(sys.stdin.readline()))))
