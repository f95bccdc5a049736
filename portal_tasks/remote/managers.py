"""Host side: find conda, mamba or micromamba as the user's own shell would, without running their rc files,
and find a named env's prefix without starting the manager (a conda start costs 0.5-2 s).

A non-interactive ssh command never sees ``conda init``'s block: it sits at the end of ``~/.bashrc``, after
Debian's "not interactive: return" guard. So the manager is looked for, in order, in ``CONDA_EXE`` /
``MAMBA_EXE``, the ``conda initialize`` / ``mamba initialize`` blocks of the rc files, the PATH, the usual
install places, and ``MAMBA_ROOT_PREFIX`` / ``~/micromamba``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from typing import TYPE_CHECKING, Callable, Mapping

if TYPE_CHECKING:
    from typing import TypedDict

    class Manager(TypedDict):
        """conda, mamba or micromamba: its executable, where it was found, its install's root prefix."""

        kind: str
        path: str
        source: str
        root: str

KINDS = ("micromamba", "mamba", "conda")
#: rc files whose ``conda initialize`` / ``mamba initialize`` blocks name the manager (relative to ~).
RC_FILES = (".bashrc", ".bash_profile", ".zshrc", ".profile", ".config/fish/config.fish", ".tcshrc", ".cshrc",
            ".zprofile", ".bash_login")
#: Where installers put conda by default (~ expanded on the host).
INSTALL_PLACES = ("~/miniforge3", "~/mambaforge", "~/miniconda3", "~/anaconda3", "~/miniconda", "~/anaconda",
                  "~/conda", "~/.conda-install", "/opt/conda", "/opt/miniforge3", "/opt/mambaforge",
                  "/opt/miniconda3", "/opt/anaconda3", "/opt/anaconda", "/usr/local/miniforge3",
                  "/usr/local/miniconda3", "/usr/local/anaconda3", "/usr/local/conda")
MICROMAMBA_PLACES = ("~/.local/bin/micromamba", "~/bin/micromamba", "~/micromamba/bin/micromamba",
                     "/usr/local/bin/micromamba", "/opt/micromamba/bin/micromamba")
_BLOCK = re.compile(r"^# >>> (conda|mamba) initialize >>>$(.*?)^# <<< \1 initialize <<<$", re.M | re.S)
#: a word of a block: quoted (a path may hold spaces) or bare
_WORD = re.compile(r"""'([^']*)'|"([^"]*)"|([^\s'"`;()]+)""")
#: a manager's path, or conda's profile script (it sits in the install: PREFIX/etc/profile.d/conda.csh)
_MANAGER_PATH = re.compile(r"^(/.*/(?:bin|condabin)/(?:micromamba|mamba|conda))$|^(/.*)/etc/profile\.d/conda\.(?:sh|csh)$")
_ROOT_PREFIX = re.compile(r"""MAMBA_ROOT_PREFIX\s*[= ]\s*(?:'([^']*)'|"([^"]*)"|([^\s;'"]+))""")


def block_paths(body: str) -> list[str]:
    """The manager paths an initialize block names, in order (pure)."""
    found: list[str] = []
    for word in _WORD.finditer(body):
        text = next(part for part in word.groups() if part is not None)
        match = _MANAGER_PATH.match(text)
        if match:
            path = match.group(1) or match.group(2) + "/bin/conda"
            if path not in found:
                found.append(path)
    return found


def _executable(path: str) -> bool:
    return bool(path) and os.path.isfile(path) and os.access(path, os.X_OK)


def kind_of(path: str) -> str | None:
    """conda, mamba or micromamba by the executable's name, else None."""
    name = os.path.basename(path)
    return name if name in KINDS else None


def root_of(path: str, kind: str, hint: str | None = None) -> str:
    """The install's root prefix (its ``base``): two levels above ``bin/conda``; for micromamba the root
    its init block set (``hint``), else ``MAMBA_ROOT_PREFIX``, else the same two levels when they hold
    conda-meta, else ``~/micromamba``."""
    up = os.path.dirname(os.path.dirname(os.path.realpath(path)))
    if kind != "micromamba":
        return up
    root = hint or os.environ.get("MAMBA_ROOT_PREFIX")
    if root:
        return os.path.expanduser(root)
    if os.path.isdir(os.path.join(up, "conda-meta")):
        return up
    return os.path.expanduser("~/micromamba")


def _rc_candidates(home: str) -> list[tuple[str, str, str | None]]:
    """(path, source, root) of every manager an rc file's initialize block names, in the rc files' order
    (root: the ``MAMBA_ROOT_PREFIX`` the block sets, else None)."""
    found: list[tuple[str, str, str | None]] = []
    for rc in RC_FILES:
        try:
            with open(os.path.join(home, rc), errors="replace") as fh:
                text = fh.read(1 << 20)
        except OSError:
            continue
        for block in _BLOCK.finditer(text):
            body = block.group(2)
            prefix = _ROOT_PREFIX.search(body)
            root = os.path.expanduser(next(g for g in prefix.groups() if g is not None)) if prefix else None
            for path in block_paths(body):
                found.append((path, "the %s initialize block of ~/%s" % (block.group(1), rc), root))
    return found


def candidates(home: str | None = None, environ: Mapping[str, str] | None = None,
               which: Callable[[str], str | None] | None = None) -> list[tuple[str, str, str | None]]:
    """(path, source, root or None) of every manager the user's shell could find, most trusted first."""
    home = home or os.path.expanduser("~")
    environ = os.environ if environ is None else environ
    found: list[tuple[str, str, str | None]] = [(environ[var], "$" + var, None) for var in ("CONDA_EXE", "MAMBA_EXE")
                                                if environ.get(var)]
    found += _rc_candidates(home)
    which = which or shutil.which
    found += [(path, "the PATH", None) for path in (which(kind) for kind in ("conda", "mamba", "micromamba")) if path]
    root: str | None
    for place in INSTALL_PLACES:
        root = os.path.join(home, place[2:]) if place.startswith("~/") else place
        found += [(os.path.join(root, "bin", kind), place, None) for kind in ("conda", "mamba")]
    root = environ.get("MAMBA_ROOT_PREFIX")
    if root:
        found.append((os.path.join(os.path.expanduser(root), "bin", "micromamba"), "$MAMBA_ROOT_PREFIX", root))
    found += [(os.path.join(home, place[2:]) if place.startswith("~/") else place, place, None)
              for place in MICROMAMBA_PLACES]
    return found


def find(wanted: str | None = None) -> Manager | None:
    """{"kind", "path", "source", "root"} of the manager to use, or None when there is none.

    ``wanted``: None (any), a kind (conda, mamba, micromamba) or a path to one of them. A conda install is
    used through its ``conda`` (mamba 1 needs conda's hook anyway), unless mamba is asked for by name.
    """
    if wanted and ("/" in wanted or wanted.startswith("~")):
        path = os.path.expanduser(wanted)
        kind = kind_of(path)
        if kind is None or not _executable(path):
            return None
        return {"kind": kind, "path": path, "source": "env_manager", "root": root_of(path, kind)}
    seen = set()
    for path, source, hint in candidates():
        path = os.path.expanduser(path)
        if path in seen or not _executable(path):
            continue
        seen.add(path)
        kind = kind_of(path)
        if kind is None:
            continue
        if kind == "mamba" and wanted != "mamba":
            conda = os.path.join(os.path.dirname(path), "conda")
            if _executable(conda):
                path, kind = conda, "conda"
        if wanted and kind != wanted:
            if wanted == "mamba" and kind == "conda" and _executable(os.path.join(os.path.dirname(path), "mamba")):
                path, kind = os.path.join(os.path.dirname(path), "mamba"), "mamba"
            else:
                continue
        return {"kind": kind, "path": path, "source": source, "root": root_of(path, kind, hint)}
    return None


def condarc_envs_dirs(home: str, root: str | None) -> list[str]:
    """The ``envs_dirs`` of ~/.condarc (and of the install's own .condarc), in order (a small YAML subset:
    ``envs_dirs:`` followed by ``- path`` items, or a flow list ``[a, b]``)."""
    dirs: list[str] = []
    for path in (os.path.join(home, ".condarc"), os.path.join(home, ".config", "conda", ".condarc"),
                 os.path.join(home, ".config", "conda", "condarc"), os.path.join(root or "", ".condarc")):
        try:
            with open(path, errors="replace") as fh:
                lines = fh.read(1 << 16).splitlines()
        except OSError:
            continue
        inside = False
        for line in lines:
            text = line.split(" #")[0].rstrip()
            if not inside:
                match = re.match(r"envs_dirs\s*:\s*(.*)$", text)
                if match:
                    rest = match.group(1).strip()
                    if rest.startswith("["):
                        dirs += [d.strip(" '\"") for d in rest.strip("[]").split(",") if d.strip(" '\"")]
                    else:
                        inside = True
                continue
            item = re.match(r"\s*-\s*(.+)$", text)
            if item:
                dirs.append(item.group(1).strip().strip("'\""))
            elif text.strip():
                inside = False
    for var in ("CONDA_ENVS_PATH", "CONDA_ENVS_DIRS"):
        dirs += [d for d in os.environ.get(var, "").split(os.pathsep) if d]
    return [os.path.expanduser(os.path.expandvars(d)) for d in dirs]


def known_prefix(name: str, manager: Manager | None, home: str | None = None) -> str | None:
    """The prefix of named env ``name`` from what is on disk (no manager start), or None.

    ``base`` is the install's root. Else the envs directories in conda's order (``envs_dirs`` of
    .condarc, the root's envs/, ~/.conda/envs), then ~/.conda/environments.txt by the entry's name.
    """
    home = home or os.path.expanduser("~")
    root = manager.get("root") if manager else None
    if name == "base":
        return root if root and os.path.isdir(os.path.join(root, "conda-meta")) else None
    folders = condarc_envs_dirs(home, root)
    if root:
        folders.append(os.path.join(root, "envs"))
    folders.append(os.path.join(home, ".conda", "envs"))
    for folder in folders:
        prefix = os.path.join(folder, name)
        if os.path.isdir(os.path.join(prefix, "conda-meta")):
            return prefix
    try:
        with open(os.path.join(home, ".conda", "environments.txt"), errors="replace") as fh:
            listed = [line.strip() for line in fh]
    except OSError:
        listed = []
    for prefix in listed:
        if prefix and os.path.basename(prefix.rstrip("/")) == name and os.path.isdir(os.path.join(prefix, "conda-meta")):
            return prefix
    return None


def listed_envs(manager: Manager) -> dict[str, str]:
    """name -> prefix from ``MANAGER env list --json`` (a manager start: the last resort)."""
    try:
        out = subprocess.run([manager["path"], "env", "list", "--json"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
        prefixes = json.loads(out.stdout).get("envs", [])
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return {}
    found: dict[str, str] = {}
    root = manager.get("root")
    for prefix in prefixes:
        name = "base" if root and os.path.realpath(prefix) == os.path.realpath(root) \
            else os.path.basename(prefix.rstrip("/"))
        found.setdefault(name, prefix)
    return found
