"""The env of a run as the host knows it: which env (``choose``), what the host's ``env-check`` says
of it (``inspect``, ``resolve``), and what a step needs of it (``require``). Steps share it."""

from __future__ import annotations

import sys

from .envs import Env, guess_env
from .errors import EnvError, PortalError, UsageError
from .replies import EnvInfo
from .target import Target

#: Modules a step needs, with the package that provides each.
PACKAGES = {"IPython": "ipython", "jupyterlab": "jupyterlab", "distributed": "dask[distributed]"}


def choose(target: Target, env: str | None) -> str:
    """The env spec: as given, or on localhost the env portal itself runs in."""
    if env:
        return env
    if target.settings.is_local:
        return sys.prefix
    raise UsageError("no env given.", host=target.host, hint="Pass --env NAME (conda/mamba/micromamba) or --env PATH.")


def manager(target: Target, spec: str) -> str | None:
    """The env manager asked for: config env_manager (a name or a path), else None (the host finds one)."""
    return target.settings.env_manager


def found_manager(target: Target) -> str | None:
    """The path of the manager the host found with no env at hand (for --explain), else env_manager."""
    found = target.facts().get("manager")
    return found["path"] if found else target.settings.env_manager


def session_environment(target: Target, ask: bool = False) -> dict[str, str]:
    """Variables of the user's tmux session: ZDOTDIR for a zsh user with no startup files at all (the host made an
    empty ~/.portal/zsh/.zshrc), so zsh's first-run menu does not eat the lines portal types. From what this run
    knows of the host; ``ask``: ask it when it knows nothing yet (--explain)."""
    try:
        facts = target.facts() if ask else target.cache.facts
    except PortalError:
        return {}
    zdotdir = facts.get("zdotdir") if facts else None
    return {"ZDOTDIR": zdotdir} if zdotdir else {}


def shell(target: Target) -> str | None:
    """The shell of the host's tmux windows as far as this run knows it, asking nothing (None: bash lines)."""
    facts = target.cache.facts
    return facts.get("shell") if facts else None


def inspect(target: Target, env: str | None) -> EnvInfo:
    """What `check` prints about the env: name, kind, prefix, python, modules (asked once per run)."""
    spec = choose(target, env)
    checks = target.cache.env_checks
    if spec not in checks:  # env, cluster, ipython and jupyter of one `up` ask the same
        checks[spec] = target.link.helper("env-check", {"env": spec, "manager": manager(target, spec),
                                                                  "modules": list(target.settings.modules)})
    return {"name": spec, **checks[spec]}


def from_info(target: Target, info: EnvInfo) -> Env:
    """The Env for what the host's ``env-check`` said (``info["name"]`` is the spec)."""
    spec = info["name"]
    location = spec if info["kind"] == "named" else info["prefix"]
    return Env(spec=spec, kind=info["kind"], location=location,
               manager=info.get("manager_path") or info.get("manager") or manager(target, spec),
               prefix=info["prefix"], modules=info["modules"], shell=info.get("shell") or shell(target),
               versions=info.get("versions"),
               loads=target.settings.modules, module_init=info.get("module_init"))


def resolve(target: Target, env: str | None) -> Env:
    """The env as the host knows it (kind, prefix, python, modules); EnvError when it is missing."""
    return from_info(target, inspect(target, env))


def resolve_for_explain(target: Target, env: str | None) -> Env:
    """Like resolve, but falls back to what the env's spelling tells when the host cannot say."""
    spec = choose(target, env)
    try:
        return resolve(target, spec)
    except PortalError:
        try:
            mgr = found_manager(target)
        except PortalError:
            mgr = target.settings.env_manager
        return guess_env(spec, mgr or "conda", shell(target), target.settings.modules)


def require(target: Target, env: Env, module: str, step: str) -> None:
    """EnvError naming the env and what to install when it lacks ``module``."""
    if not env.has(module):
        package = PACKAGES.get(module, module)
        raise EnvError(f"env {env.spec!r} lacks {module}, which `{step}` needs.", host=target.host,
                       hint=f"Install it into the env (pip install {package!r}, or conda install), or pass another --env.")
