"""Environments (pure): which kind an env is, the line that activates it, and the key naming its windows."""

from __future__ import annotations

import hashlib
import re
import shlex
from dataclasses import dataclass
from typing import Callable, Mapping

from .errors import EnvError, UsageError

#: Managers of named envs, in the order portal prefers them when the host has several.
ENV_MANAGERS: tuple[str, ...] = ("micromamba", "mamba", "conda")


def quote_path(path: str) -> str:
    """shlex.quote, but a leading ``~/`` stays unquoted so the host's shell expands it."""
    if path == "~":
        return "~"
    if path.startswith("~/"):
        rest = path[2:]
        return "~/" + shlex.quote(rest) if rest else "~/"
    return shlex.quote(path)


#: Shell families portal types lines for, by the login shell's name; any other shell is typed POSIX lines.
SHELL_FAMILIES: dict[str, str] = {"bash": "bash", "zsh": "zsh", "fish": "fish", "tcsh": "csh", "csh": "csh",
                                  "sh": "posix", "dash": "posix", "ksh": "posix", "mksh": "posix", "ash": "posix"}
#: The family --explain uses when the host's shell is not known.
DEFAULT_SHELL = "bash"


def shell_family(shell: str | None) -> str:
    """bash, zsh, fish, csh or posix for a login shell's path or name (``-zsh`` too); None: bash."""
    if not shell:
        return DEFAULT_SHELL
    name = shell.rstrip("/").rsplit("/", 1)[-1].lstrip("-")
    return SHELL_FAMILIES.get(name, SHELL_FAMILIES.get(name.rstrip("0123456789."), "posix"))


def manager_hook(kind: str, path: str, shell: str, root: str | None = None) -> str:
    """The line that defines ``conda activate`` (or mamba's, micromamba's) in ``shell`` from the manager's own
    shell hook: it works where the rc files never ran ``conda init`` (pure)."""
    exe = quote_path(path)
    if kind == "conda":
        hook = f"{exe} shell.{ {'csh': 'csh', 'posix': 'posix'}.get(shell, shell)} hook"
    else:  # micromamba, and mamba 2 (a mamba with no conda beside it)
        named = {"csh": "tcsh", "posix": "posix"}.get(shell, shell)
        hook = f"{exe} shell hook --shell {named}"
        if kind == "micromamba" and root:
            hook += f" --root-prefix {quote_path(root)}"
    if shell == "fish":
        return f"{hook} | source"
    if shell == "csh":
        return f'eval "`{hook}`"'
    return f'eval "$({hook})"'


def _activate_named(location: str, manager: str, kind: str, shell: str, root: str | None) -> list[str]:
    return [manager_hook(kind, manager, shell, root), shlex.join([kind, "activate", location])]


def _activate_venv(location: str, manager: str, kind: str, shell: str, root: str | None) -> list[str]:
    script = {"fish": "activate.fish", "csh": "activate.csh"}.get(shell, "activate")
    source = "." if shell == "posix" else "source"
    return [f"{source} {quote_path(location.rstrip('/') or '/')}/bin/{script}"]


def _activate_prefix(location: str, manager: str, kind: str, shell: str, root: str | None) -> list[str]:
    return [manager_hook(kind, manager, shell, root), f"{kind} activate {quote_path(location)}"]


@dataclass(frozen=True)
class EnvKind:
    """One way an env can be given, how it is recognised, and how a shell activates it."""

    name: str
    recognised_by: str
    #: (name or path, manager path, manager kind, shell family, root) -> the lines typed, in order
    activate: Callable[[str, str, str, str, str | None], list[str]]
    needs_manager: bool


#: Env kinds; the host-side ``env-check`` tells a venv from a conda prefix.
ENV_KINDS: dict[str, EnvKind] = {
    "named": EnvKind("named", "a bare name known to conda/mamba/micromamba", _activate_named, True),
    "venv": EnvKind("venv", "a path with bin/activate", _activate_venv, False),
    "conda-prefix": EnvKind("conda-prefix", "a path with conda-meta/", _activate_prefix, True),
}


def get_env_kind(name: str) -> EnvKind:
    try:
        return ENV_KINDS[name]
    except KeyError:
        raise UsageError(f"unknown env kind {name!r}.", hint=f"Known: {', '.join(ENV_KINDS)}.") from None


def is_path(spec: str) -> bool:
    """A path (venv or conda prefix) rather than an env name: names never hold '/'."""
    return "/" in spec or spec.startswith(("~", "."))


def manager_kind(manager: str) -> str:
    """conda, mamba or micromamba for a manager's name or path (by the executable's name; else conda)."""
    name = manager.rstrip("/").rsplit("/", 1)[-1]
    return name if name in ENV_MANAGERS else "conda"


def activation_lines(kind: str, location: str, manager: str | None = None, shell: str | None = None,
                     root: str | None = None) -> list[str]:
    """The lines typed into a window's interactive ``shell`` (a login shell's path or family) to activate
    the env; ``manager`` is the path (or name) of conda, mamba or micromamba for a named env or a prefix."""
    env_kind = get_env_kind(kind)
    if env_kind.needs_manager and not manager:
        raise EnvError(f"env {location!r} needs conda, mamba or micromamba, and none was found.",
                       hint="Set env_manager in portal.yaml to its path, or pass --env PATH to a venv.")
    family = shell if shell and shell in SHELL_FAMILIES.values() else shell_family(shell)
    mgr = manager or "conda"
    return env_kind.activate(location, mgr, manager_kind(mgr), family, root)


def module_lines(names: tuple[str, ...], init: str | None = None) -> list[str]:
    """``module load NAMES`` as typed into a window (the same in every shell), or nothing without modules; after
    ``source INIT`` when the host named the module system's init file for the window's shell (fish)."""
    if not names:
        return []
    return [*([shlex.join(["source", init])] if init else []), shlex.join(["module", "load", *names])]


def chained(lines: list[str], command: str, shell: str | None = None) -> list[str]:
    """``lines`` then ``command``, each on the success of those before (``&&``: bash, zsh, fish 3, tcsh alike), as
    one line; in csh and tcsh the last line only (an alias the hook defines is known from the next line on)."""
    if shell_family(shell) == "csh":
        return [*lines[:-1], f"{lines[-1]} && {command}"] if lines else [command]
    return [" && ".join([*lines, command])]


def dashboard_problem(env: str, dashboard: Mapping[str, object] | None) -> str | None:
    """What keeps Dask's dashboard from working in env (its bokeh), with the install command; None when
    nothing does (or the env has no distributed, which `check` says on its own)."""
    if not dashboard or dashboard.get("ok"):
        return None
    need, have = dashboard.get("need") or "bokeh>=3.1.0", dashboard.get("have")
    found = f"it has bokeh {have}" if have else "it has no bokeh"
    return (f"the Dask dashboard needs {need} in env {env!r} ({found}); its page would only say so. "
            f"Install it: pip install {shlex.quote(str(need))} (or conda install {shlex.quote(str(need))}).")


def env_key(spec: str) -> str:
    """A short tmux-safe key for window names: the env name, or a path's name plus a short hash."""
    clean = spec.rstrip("/") or "/"
    if not is_path(clean):
        return _safe(clean)
    parts = [p for p in clean.split("/") if p not in ("", "~", ".", "..")]
    name = parts[-1] if parts else "root"
    if name.lstrip(".") in ("venv", "env", "") and len(parts) > 1:
        name = parts[-2]
    digest = hashlib.sha256(clean.encode()).hexdigest()[:4]
    return f"{_safe(name)}-{digest}"


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-") or "env"


@dataclass(frozen=True)
class Env:
    """An env as a step uses it: what the user typed, its kind, where it is, and its manager."""

    spec: str
    kind: str
    location: str  # env name, or the path (absolute once the host has resolved it)
    manager: str | None = None  # the path of conda/mamba/micromamba on the host (or its name)
    prefix: str | None = None  # the env's sys.prefix on the host, once checked
    modules: Mapping[str, bool] | None = None  # IPython / jupyterlab / distributed, once checked
    shell: str | None = None  # the windows' shell on the host (its path or family); None: bash
    loads: tuple[str, ...] = ()  # environment modules loaded before the env (module load)
    #: the module system's init file the window's shell reads before ``module load`` (fish on Debian's Lmod)
    module_init: str | None = None
    versions: Mapping[str, str] | None = None  # of jupyter_server and jupyter-server-proxy, once checked

    @property
    def key(self) -> str:
        return env_key(self.spec)

    def activation(self) -> list[str]:
        """The lines that load the env's modules and activate the env in a window's shell."""
        return [*module_lines(self.loads, self.module_init),
                *activation_lines(self.kind, self.location, self.manager, self.shell)]

    def launch(self, command: str) -> list[str]:
        """The lines that activate the env and then, only if that worked, run ``command``."""
        return chained(self.activation(), command, self.shell)

    def has(self, module: str) -> bool:
        """True when checked and the module imports (unknown counts as present)."""
        return True if self.modules is None else bool(self.modules.get(module))

    def lab_socket(self) -> bool:
        """JupyterLab can listen on a Unix socket here (jupyter_server 1.9 and later); False when unknown."""
        return version_tuple((self.versions or {}).get("jupyter_server")) >= LAB_SOCKET_SINCE

    def proxy_safe(self) -> bool:
        """jupyter-server-proxy is here without CVE-2024-28179 (unknown counts as safe: the host decides too)."""
        from .remote.proxy import proxy_safe

        have = (self.versions or {}).get("jupyter-server-proxy")
        return self.versions is None or "jupyter-server-proxy" not in self.versions or proxy_safe(have)


#: The jupyter_server that has ``ServerApp.sock`` (a Unix socket instead of a port).
LAB_SOCKET_SINCE = (1, 9, 0)


def version_tuple(text: str | None) -> tuple[int, ...]:
    """(1, 9, 0) for "1.9.0rc1"; () for None."""
    return tuple(int(x) for x in re.findall(r"[0-9]+", (text or "").split("+")[0])[:3])


def guess_env(spec: str, manager: str | None, shell: str | None = None, loads: tuple[str, ...] = ()) -> Env:
    """The env as far as its spelling tells: a name, or a path assumed to be a venv."""
    return Env(spec=spec, kind="venv" if is_path(spec) else "named", location=spec, manager=manager, shell=shell,
               loads=loads)
