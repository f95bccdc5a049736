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


def _activate_named(location: str, manager: str) -> str:
    return shlex.join([manager, "activate", location])


def _activate_venv(location: str, manager: str) -> str:
    return f"source {quote_path(location.rstrip('/') or '/')}/bin/activate"


def _activate_prefix(location: str, manager: str) -> str:
    return f"{shlex.quote(manager)} activate {quote_path(location)}"


@dataclass(frozen=True)
class EnvKind:
    """One way an env can be given, how it is recognised, and how a shell activates it."""

    name: str
    recognised_by: str
    activate: Callable[[str, str], str]  # (name or path, manager) -> shell line
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


def pick_manager(configured: str | None, available: Mapping[str, str | None]) -> str | None:
    """The configured manager, else the first of micromamba/mamba/conda the host has, else None."""
    if configured:
        return configured
    return next((m for m in ENV_MANAGERS if available.get(m)), None)


def activation_line(kind: str, location: str, manager: str | None = None) -> str:
    """The line typed into the window's interactive shell to activate the env."""
    env_kind = get_env_kind(kind)
    if env_kind.needs_manager and not manager:
        raise EnvError(f"env {location!r} needs conda, mamba or micromamba, and none was found.",
                       hint="Install one, set env_manager in portal.yaml, or pass --env PATH to a venv.")
    return env_kind.activate(location, manager or "conda")


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
    manager: str | None = None
    prefix: str | None = None  # the env's sys.prefix on the host, once checked
    modules: Mapping[str, bool] | None = None  # IPython / jupyterlab / distributed, once checked

    @property
    def key(self) -> str:
        return env_key(self.spec)

    def activation(self) -> str:
        return activation_line(self.kind, self.location, self.manager)

    def has(self, module: str) -> bool:
        """True when checked and the module imports (unknown counts as present)."""
        return True if self.modules is None else bool(self.modules.get(module))


def guess_env(spec: str, manager: str | None) -> Env:
    """The env as far as its spelling tells: a name, or a path assumed to be a venv."""
    return Env(spec=spec, kind="venv" if is_path(spec) else "named", location=spec, manager=manager)
