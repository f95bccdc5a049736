"""Python envs on the test host that every test user can run, built once per machine."""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import os
import shutil
from pathlib import Path

from portal_tasks.errors import EnvError
from portal_tasks.runner import run

#: env name -> pip requirements; `bare` is for "env lacks dask" tests, `nobokeh` for "dashboard needs bokeh",
#: `lab` for the dashboard inside JupyterLab, `hpc` for workers on a batch system (dask-jobqueue), `oldproxy`
#: for a jupyter-server-proxy portal does not use.
ENV_REQUIREMENTS: dict[str, list[str]] = {
    "a": ["dask[distributed]", "bokeh>=3.1.0", "ipython", "jupyterlab"],
    "bare": [],
    "nobokeh": ["dask[distributed]", "ipython"],
    "lab": ["dask[distributed]", "bokeh>=3.1.0", "ipython", "jupyterlab", "jupyter-server-proxy", "dask-labextension"],
    "hpc": ["dask[distributed]", "bokeh>=3.1.0", "ipython", "dask-jobqueue"],
    #: a jupyter-server-proxy with CVE-2024-28179 (websockets proxied without authentication): not used for the link
    "oldproxy": ["dask[distributed]", "bokeh>=3.1.0", "ipython", "jupyterlab", "jupyter-server-proxy==4.1.0",
                 "dask-labextension"],
}
ENVS_ROOT = Path(os.environ.get("PORTAL_TEST_ENVS_ROOT", "/opt/portal-testing/envs"))
SYSTEM_PYTHON = "/usr/bin/python3"
COMPLETE_MARK = ".portal-complete"


@functools.cache
def _python_version(python: str) -> str:
    return run([python, "-c", "import sys; print(sys.version)"], timeout=30).stdout.strip()


def envs_key(name: str, python: str = SYSTEM_PYTHON) -> str:
    """A short hash of one env's requirements and the python: a changed env is rebuilt, the others kept."""
    blob = json.dumps({"req": ENV_REQUIREMENTS[name], "python": python, "version": _python_version(python)},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _env_path(root: Path, name: str, python: str) -> Path:
    return root / envs_key(name, python) / name


def envs_ready(root: Path = ENVS_ROOT, python: str = SYSTEM_PYTHON) -> bool:
    """True when every env is already built (no minutes-long build ahead)."""
    return all((_env_path(root, name, python) / COMPLETE_MARK).exists() for name in ENV_REQUIREMENTS)


def ensure_envs(root: Path = ENVS_ROOT, python: str = SYSTEM_PYTHON) -> dict[str, Path]:
    """Return {name: venv path}, building missing envs (minutes the first time, then cached)."""
    root.mkdir(parents=True, exist_ok=True)
    for d in (root.parent, root):
        d.chmod(0o755)
    with open(root / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel runs wait for one builder
        found = {}
        for name, reqs in ENV_REQUIREMENTS.items():
            path = _env_path(root, name, python)
            path.parent.mkdir(exist_ok=True)
            path.parent.chmod(0o755)
            found[name] = _ensure_env(path, reqs, python)
        return found


def _ensure_env(path: Path, requirements: list[str], python: str) -> Path:
    if (path / COMPLETE_MARK).exists():
        return path
    shutil.rmtree(path, ignore_errors=True)
    steps = [[python, "-m", "venv", str(path)]]
    if requirements:
        steps.append([str(path / "bin" / "python"), "-m", "pip", "install", "-q", *requirements])
    for argv in steps:
        res = run(argv, timeout=1800, env={"PIP_NO_INPUT": "1"})
        if not res.ok:
            raise EnvError(
                f"building test env {path.name} failed (rc {res.rc}): {res.tail()}",
                hint=f"Check `{' '.join(argv)}` by hand.",
            )
    run(["chmod", "-R", "a+rX", str(path)], timeout=120)
    (path / COMPLETE_MARK).write_text(json.dumps(requirements))
    return path


if __name__ == "__main__":
    for name, p in ensure_envs().items():
        print(name, p)
