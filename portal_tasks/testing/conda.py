"""A real conda on the test host, and a user who has it the way people have it.

    ensure_conda() -> Path
        The machine's shared conda install (like /opt/conda): `assets/conda/install-conda.sh PREFIX` (conda
        built from its own source, BSD-3; offline, classic solver), once per machine under
        /opt/portal-testing/conda/<key> (key: the script, the wheel and the system Python), under a lock.
    setup_conda_user(prefix, name, home, venv)
        What a user of it did, run as that user with their HOME: on Debian's own ~/.bashrc (from /etc/skel:
        it returns early when not interactive) `PREFIX/bin/conda init bash` (the block lands at its end), then
        `conda create -n a --offline -y` (so ~/.conda/environments.txt lists ~/.conda/envs/a); a ~/.condarc
        with `envs_dirs: [~/scratch/condaenvs]` and an env `b` there that environments.txt does NOT list.
        Both envs get a Python with the test packages of `venv` (fill_env), and no bin/activate: they are
        conda envs only (conda-meta/). `base` is the install's own Python (conda's, without dask).

On the netns server the user is role `carol` (`server.user("carol")`, made on first use; the `carol`
fixture); `server.conda()` gives the prefix. So for carol: `ssh matagorda 'command -v conda'` fails,
`bash -ic 'conda activate a'` works, `env_prefix(carol.home, "a")` is ~/.conda/envs/a and
`env_prefix(carol.home, "b")` is ~/scratch/condaenvs/b.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import tempfile
from pathlib import Path

from portal_tasks.runner import run
from portal_tasks.testing.cached import ROOT, built_once
from portal_tasks.testing.errors import TestServerError, TestServerUnavailable

ASSETS = Path(__file__).resolve().parent / "assets" / "conda"
INSTALL_SCRIPT = ASSETS / "install-conda.sh"
SYSTEM_PYTHON = "/usr/bin/python3"  # what install-conda.sh makes the install's venv with
#: env name -> its prefix under the user's home: `a` from `conda create -n a`, `b` found through envs_dirs only
ENVS = {"a": ".conda/envs/a", "b": "scratch/condaenvs/b"}
ENVS_DIRS = "scratch/condaenvs"  # the envs_dirs entry of the user's ~/.condarc (as ~/scratch/condaenvs)
CLEAN_PATH = "/usr/local/bin:/usr/bin:/bin"


def env_prefix(home: Path, name: str) -> Path:
    """Where env `name` (a or b) of the conda user with this home lives."""
    return home / ENVS[name]


def _wheels() -> list[Path]:
    return sorted(ASSETS.glob("conda-*.whl"))


@functools.cache
def conda_key() -> str:
    """A short hash of the install script, the wheel and the system Python: a change installs afresh."""
    h = hashlib.sha256(INSTALL_SCRIPT.read_bytes())
    for wheel in _wheels():
        h.update(wheel.name.encode() + wheel.read_bytes())
    h.update(run([SYSTEM_PYTHON, "-c", "import sys; print(sys.version)"], timeout=30).stdout.encode())
    return h.hexdigest()[:12]


def unavailable() -> str | None:
    """Why no conda can be installed here, or None."""
    if not INSTALL_SCRIPT.exists() or not _wheels():
        return f"the conda install script or wheel is missing from {ASSETS}"
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return f"installing the test conda needs {SYSTEM_PYTHON} (with venv)"
    return None


def ensure_conda(root: Path = ROOT / "conda") -> Path:
    """The machine's conda prefix (PREFIX/bin/conda, PREFIX/etc/profile.d/conda.sh), installed on first use."""
    reason = unavailable()
    if reason:
        raise TestServerUnavailable(reason)
    return built_once(root / conda_key(), _install)


def _install(prefix: Path) -> None:
    res = run(["bash", str(INSTALL_SCRIPT), str(prefix)], timeout=900, env={"PIP_NO_INPUT": "1"})
    if not res.ok:
        raise TestServerError(f"installing the test conda at {prefix} failed (rc {res.rc}): {res.tail()}",
                              hint=f"Try `bash {INSTALL_SCRIPT} {prefix}` by hand.")
    # The script's `conda init --install` wrote its shell files from the script's environment; written again
    # from a login-like one, a user's `conda init bash` finds nothing to change in the prefix (which it could not)
    with tempfile.TemporaryDirectory() as home:
        res = run(["env", "-i", f"PATH={CLEAN_PATH}", f"HOME={home}", str(prefix / "bin" / "conda"), "init",
                   "--install"], timeout=120)
    if not res.ok:
        raise TestServerError(f"`{prefix}/bin/conda init --install` failed (rc {res.rc}): {res.tail()}")


def as_user(uid: int, gid: int, home: Path, script: str, timeout: float = 120) -> None:
    """Run a bash script as the user (their uid, groups and login environment), in their home."""
    res = run(["setpriv", f"--reuid={uid}", f"--regid={gid}", "--init-groups", "--reset-env", "--",
               "bash", "-c", script], timeout=timeout, cwd=str(home))
    if not res.ok:
        raise TestServerError(f"setting up the conda user {home.name} failed (rc {res.rc}): {res.tail(5)}")
    if "needs sudo" in res.stdout:
        raise TestServerError(f"`conda init bash` as {home.name} wanted to change the shared install: "
                              f"{res.stdout.strip()[-300:]}")


def setup_conda_user(prefix: Path, uid: int, gid: int, home: Path, venv: Path) -> None:
    """The user's conda as described above; `venv` is the test env whose packages envs a and b get."""
    conda = prefix / "bin" / "conda"
    as_user(uid, gid, home, f"""set -e
{conda} init bash
{conda} create -n a --offline -y -q >/dev/null
printf 'envs_dirs:\\n  - ~/{ENVS_DIRS}\\n' > ~/.condarc
{conda} create -n b --offline -y -q >/dev/null
""")
    known = home / ".conda" / "environments.txt"
    b = str(env_prefix(home, "b"))
    known.write_text("".join(line for line in known.read_text().splitlines(True) if line.strip() != b))
    for name in ENVS:
        fill_env(env_prefix(home, name), venv)
        _chown_tree(env_prefix(home, name), uid, gid)


def fill_env(env: Path, venv: Path) -> None:
    """Give conda env `env` the Python and packages of `venv`, as a venv of its own (pyvenv.cfg, bin/python),
    with venv's site-packages, share and etc linked and its entry points' shebangs naming env's python; no
    bin/activate, so it stays a conda env only."""
    if not (env / "conda-meta").is_dir():
        raise TestServerError(f"{env} is not a conda env (no conda-meta)")
    cfg = (venv / "pyvenv.cfg").read_text()
    m = re.search(r"^version\s*=\s*(\d+)\.(\d+)", cfg, re.MULTILINE)
    if m is None:
        raise TestServerError(f"no version in {venv}/pyvenv.cfg")
    pyver = f"python{m.group(1)}.{m.group(2)}"
    (env / "pyvenv.cfg").write_text("".join(ln for ln in cfg.splitlines(True) if not ln.startswith("command")))
    bindir = env / "bin"
    bindir.mkdir(exist_ok=True)
    old_python = str(venv / "bin" / "python")
    new_python = str(bindir / "python")
    for entry in sorted((venv / "bin").iterdir()):
        dest = bindir / entry.name
        if entry.name.lower().startswith("activate") or dest.exists() or dest.is_symlink():
            continue
        if entry.is_symlink():  # python, python3, python3.X
            dest.symlink_to(os.readlink(entry))
        elif entry.is_file():
            data = entry.read_bytes()
            first, nl, rest = data.partition(b"\n")
            if first.startswith(b"#!") and old_python.encode() in first:
                data = first.replace(old_python.encode(), new_python.encode()) + nl + rest
            dest.write_bytes(data)
            dest.chmod(entry.stat().st_mode & 0o777)
    site = env / "lib" / pyver / "site-packages"
    site.parent.mkdir(parents=True, exist_ok=True)
    site.symlink_to(venv / "lib" / pyver / "site-packages")
    for entry in venv.iterdir():  # share/jupyter (JupyterLab's assets), etc/jupyter (server extensions), ...
        skip = entry.name in ("bin", "lib", "lib64", "include", "pyvenv.cfg") or entry.name.startswith(".")
        if not skip and not (env / entry.name).exists():
            (env / entry.name).symlink_to(entry)


def _chown_tree(top: Path, uid: int, gid: int) -> None:
    os.lchown(top, uid, gid)
    for root, dirs, files in os.walk(top):  # not into symlinked dirs
        for name in dirs + files:
            os.lchown(os.path.join(root, name), uid, gid)

