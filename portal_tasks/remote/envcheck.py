"""Host-side verb ``env-check``: does the env exist, where is it, which kind, and what can it import."""

from __future__ import annotations

import glob
import hashlib
import json
import os
import subprocess
from typing import TYPE_CHECKING, Any

from . import managers, system
from . import modules as envmodules
from .common import Failure, read_json, state_path, write_json

if TYPE_CHECKING:
    from .managers import Manager

MODULES = ("IPython", "jupyterlab", "distributed", "jupyter_server_proxy", "dask_labextension", "dask_jobqueue")
#: Run by the env's own python (argv: the modules to look for). Besides which modules it has, it says
#: whether Dask's dashboard can work there: the bokeh its distributed asks for (read from
#: distributed/versions.py, not imported: that takes seconds) and the bokeh installed.
_PROBE = r"""
import importlib.util, json, os, re, sys
modules = {m: importlib.util.find_spec(m) is not None for m in sys.argv[1:]}
number = lambda text: [int(x) for x in re.findall(r"[0-9]+", text)[:3]]

def version(dist):
    # the installed version from its .dist-info directory's name (no importlib.metadata: its import costs
    # more than the rest of this program), else asked of importlib.metadata
    wanted = re.sub(r"[-_.]+", "_", dist).lower()
    for folder in sys.path:
        try:
            names = os.listdir(folder or ".")
        except OSError:
            continue
        for entry in names:
            name, _, found = entry[:-len(".dist-info")].partition("-")
            if entry.endswith(".dist-info") and found and re.sub(r"[-_.]+", "_", name).lower() == wanted:
                return found
    try:
        from importlib.metadata import version as metadata_version
        return metadata_version(dist)
    except Exception:
        return None

dashboard = None
if modules.get("distributed"):
    need = "bokeh>=3.1.0"
    try:
        origin = importlib.util.find_spec("distributed").origin
        with open(os.path.join(os.path.dirname(origin), "versions.py")) as fh:
            found = re.search(r"BOKEH_REQUIREMENT\s*=\s*Requirement\([\"']([^\"']+)", fh.read())
        need = found.group(1) if found else need
    except (OSError, AttributeError, TypeError):
        pass
    have = version("bokeh")
    ok = have is not None
    least = re.fullmatch(r"[A-Za-z0-9_.-]+\s*>=\s*([0-9.]+)", need)
    if ok and least and re.fullmatch(r"[0-9.]+", have):  # the usual "bokeh>=3.1.0": no packaging to import
        ok = number(have) >= number(least.group(1))
    elif ok:
        try:
            from packaging.requirements import Requirement
            ok = Requirement(need).specifier.contains(have, prereleases=True)
        except Exception:
            least = re.search(r">=\s*([0-9.]+)", need)
            ok = not least or number(have) >= number(least.group(1))
    dashboard = {"need": need, "have": have, "ok": ok}
versions = {}  # of what portal decides by: JupyterLab on a socket, jupyter-server-proxy's known hole
for dist in ("jupyter_server", "jupyter-server-proxy"):
    number = version(dist)
    if number:
        versions[dist] = number
print(json.dumps({"prefix": sys.prefix, "version": sys.version.split()[0], "modules": modules,
                  "dashboard": dashboard, "versions": versions}))
"""


def _is_path(spec: str) -> bool:
    return "/" in spec or spec.startswith(("~", "."))


def _path_kind(prefix: str) -> str | None:
    """venv (bin/activate, pyvenv.cfg) or conda prefix (conda-meta/), else None."""
    has_activate = os.path.isfile(os.path.join(prefix, "bin", "activate"))
    if os.path.isfile(os.path.join(prefix, "pyvenv.cfg")) and has_activate:
        return "venv"
    if os.path.isdir(os.path.join(prefix, "conda-meta")):
        return "conda-prefix"
    return "venv" if has_activate else None


def _manager(wanted: str | None, spec: str) -> Manager:
    """The manager to use ({"kind", "path", "source", "root"}) for env name ``spec``, or a Failure saying where
    portal looked."""
    found = managers.find(wanted)
    if found:
        return found
    if wanted and ("/" in wanted or wanted.startswith("~")):
        raise Failure("env_manager %r is not an executable conda, mamba or micromamba here." % wanted, "EnvError",
                      "Set env_manager to the path of conda (e.g. ~/miniforge3/bin/conda) or to conda, mamba "
                      "or micromamba.")
    looked = "$CONDA_EXE, the conda initialize blocks of ~/.bashrc, ~/.zshrc and the like, the PATH, ~/miniforge3, " \
             "~/miniconda3, /opt/conda and the like"
    raise Failure("env %r is a name, but no %s was found here (looked at %s)."
                  % (spec, wanted or "conda, mamba or micromamba", looked), "EnvError",
                  "Set env_manager in portal.yaml to its path (e.g. env_manager: /path/to/bin/conda), "
                  "or pass --env PATH to a venv or conda prefix.")


def _resolve_named(spec: str, wanted: str | None) -> tuple[str, str, Manager]:
    """("named", prefix, manager) of env name ``spec``: from what is on disk first (no manager start),
    then from the manager's ``env list`` (kept per manager; asked again when a name is not in it)."""
    manager = _manager(wanted, spec)
    prefix = managers.known_prefix(spec, manager)
    if prefix:
        return "named", prefix, manager
    kept = state_path("envs", "named-%s.json" % _digest(manager["path"]))
    known = read_json(kept) or {}
    prefix = known.get(spec) if isinstance(known, dict) else None
    if isinstance(prefix, str) and os.path.isdir(os.path.join(prefix, "conda-meta")):
        return "named", prefix, manager
    envs = managers.listed_envs(manager)
    if envs:
        write_json(kept, envs)
    if spec not in envs:
        shown = ", ".join(sorted(envs)) or "none"
        name = manager["kind"]
        raise Failure("env %r not found (%s env list shows: %s)." % (spec, name, shown), "EnvError",
                      "Create it (%s create -n %s python ipython dask) or pass --env PATH." % (name, spec))
    return "named", envs[spec], manager


def _resolve_path(spec: str, wanted: str | None = None) -> tuple[str, str, Manager | None]:
    prefix = os.path.abspath(os.path.expanduser(spec))
    if os.path.exists(prefix) and not os.path.isdir(prefix):
        raise Failure("env %s is a file, not an env directory." % spec, "EnvError",
                      "Pass the env's top directory (the one holding bin/), or a conda env name.")
    if not os.path.isdir(prefix):
        parent = os.path.dirname(prefix)
        try:
            siblings = sorted(e for e in os.listdir(parent) if _path_kind(os.path.join(parent, e)))
        except OSError:
            siblings = []
        shown = (" (envs next to it: %s)" % ", ".join(siblings)) if siblings else ""
        raise Failure("env %s not found: no such directory%s." % (spec, shown), "EnvError",
                      "Create it (python3 -m venv %s) or pass another --env." % spec)
    kind = _path_kind(prefix)
    if kind is None:
        raise Failure("%s is not an env: it has neither bin/activate nor conda-meta/." % spec, "EnvError",
                      "Pass the env's top directory (the one holding bin/).")
    return kind, prefix, (managers.find(wanted) if kind == "conda-prefix" else None)


def resolve(spec: str, manager: str | None = None) -> tuple[str, str, Manager | None, str]:
    """(kind, prefix, manager, python) of env ``spec`` (Failure with what to do when it is not usable);
    ``manager`` the one asked for (env_manager: a kind or a path, or None); the one returned:
    {"kind", "path", "source", "root"} for a named env or a conda prefix, else None."""
    if not spec:
        raise Failure("no env given.", "UsageError", "Pass --env NAME or --env PATH.")
    found: Manager | None
    if _is_path(spec):
        kind, prefix, found = _resolve_path(spec, manager)
    else:
        kind, prefix, found = _resolve_named(spec, manager)
    python = next((os.path.join(prefix, "bin", exe) for exe in ("python", "python3")
                   if os.access(os.path.join(prefix, "bin", exe), os.X_OK)), None)
    if python is None:
        raise Failure("env %s has no python (nothing at %s/bin/python)." % (spec, prefix), "EnvError",
                      "Install python into it, e.g. conda install -p %s python." % prefix)
    return kind, prefix, found, python


def env_python(spec: str | None, manager: str | None = None) -> str:
    """The python of env ``spec``."""
    return resolve(str(spec or "").strip(), manager)[3]


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def stamp(prefix: str, python: str) -> list[list[str | int]]:
    """What changes when the env's python or packages change: the modification times of its python, its
    ``conda-meta`` and its site-packages directories (installing or removing a package adds or removes an
    entry there)."""
    paths = [python, os.path.join(prefix, "conda-meta")]
    paths += sorted(glob.glob(os.path.join(prefix, "lib", "python*", "site-packages")))
    found: list[list[str | int]] = []
    for path in paths:
        try:
            found.append([path, os.stat(path).st_mtime_ns])
        except OSError:
            pass
    return found


def probe(spec: str, prefix: str, python: str) -> dict[str, Any]:
    """What the env's python says of itself (:data:`_PROBE`), kept per env until its :func:`stamp` changes."""
    kept = state_path("envs", "%s.json" % _digest(prefix))
    now = stamp(prefix, python)
    known = read_json(kept) or {}
    if isinstance(known, dict) and known.get("stamp") == now and known.get("python") == python \
            and known.get("probe") == _digest(_PROBE) and isinstance(known.get("info"), dict):
        kept_info: dict[str, Any] = known["info"]
        return kept_info
    try:
        out = subprocess.run([python, "-c", _PROBE, *MODULES], capture_output=True, text=True, timeout=60)
        info: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
        raise Failure("the python of env %s does not run (%s)." % (spec, python), "EnvError",
                      "Try `%s -c 1` on the host to see why." % python)
    if now == stamp(prefix, python):  # nothing changed while it ran
        write_json(kept, {"stamp": now, "python": python, "info": info, "probe": _digest(_PROBE)})
    return info


def module_init(shell: str, loaded: Any) -> str | None:
    """The module system's own setup for fish, for windows whose shell is fish when modules are loaded: Debian's
    Lmod defines ``module`` (and MODULEPATH) for sh login shells alone (/etc/profile.d/lmod.sh), so a fish window
    has neither unless it reads Lmod's ``$MODULESHOME/init/profile.fish`` (the same for fish), or the module
    system's ``init/fish``. None for other shells (bash and zsh read the profile; tcsh its csh login files),
    without modules, or when there is no such file."""
    home = os.environ.get("MODULESHOME")  # set by the system's login files, which envmodules ran
    if not loaded or os.path.basename(shell or "") != "fish" or not home:
        return None
    for name in ("profile.fish", "fish"):
        path = os.path.join(home, "init", name)
        if os.path.isfile(path):
            return path
    return None


def env_check(payload: dict[str, Any]) -> dict[str, Any]:
    """{"env", "manager", "modules"} -> {"kind", "prefix", "python", "version", "manager", "manager_path",
    "manager_source", "modules", "dashboard"}.

    ``manager`` is conda, mamba or micromamba (None for a venv), ``manager_path`` the executable the windows'
    shell hook runs, ``manager_source`` where it was found ("the conda initialize block of ~/.bashrc").
    ``dashboard``: {"need": "bokeh>=3.1.0", "have": version or None, "ok"} when the env has distributed.
    """
    spec = str(payload.get("env") or "").strip()
    envmodules.apply(payload.get("modules"))
    manager: Manager | dict[str, str] | None
    kind, prefix, manager, python = resolve(spec, payload.get("manager"))
    info = probe(spec, prefix, python)
    manager = manager or {}
    shell = system.window_shell()
    return {"kind": kind, "prefix": prefix, "python": python, "version": info["version"],
            "manager": manager.get("kind"), "manager_path": manager.get("path"),
            "manager_source": manager.get("source"), "modules": info["modules"], "dashboard": info.get("dashboard"),
            "versions": info.get("versions") or {},
            "shell": shell, "loaded": list(payload.get("modules") or []),
            "module_init": module_init(shell, payload.get("modules"))}


VERBS = {"env-check": env_check}
