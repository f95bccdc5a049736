"""Configuration: invoke's layered config (portal.yaml, PORTAL_* variables) resolved per host."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

from invoke import Config
from invoke.exceptions import Exit, UncastableEnvVar

from . import names
from .errors import ConfigError, UsageError
from .remote.slots import LAST_PORT, SLOT_SIZE

#: Every setting portal reads, with its default. Per-host overrides live under ``hosts.<name>``.
DEFAULTS: dict[str, Any] = {
    "ssh_config": None,  # path; else $PORTAL_SSH_CONFIG; else OpenSSH's own default
    "transport": None,  # openssh | fabric | local; None: local for localhost, else openssh
    "session": "portal",  # tmux session name on the host
    "env_manager": None,  # conda | mamba | micromamba, or the path of one; None: whichever the host has
    "modules": None,  # environment modules loaded (module load) before the env, in every window and env check
    "host_python": None,  # python on the host that runs portal's helper (stdlib only); None: python3 there
    "remote_python": None,  # the old name of host_python, still read
    "port_base": 20000,  # first port of the port plan (below Linux's ephemeral range)
    "block_size": 100,  # ports per user block
    "slots": 100,  # number of blocks
    "workers": 2,  # local workers per cluster; 0 with --jobs or --workers-on: the scheduler alone on the host
    "threads": 2,
    "memory": "fair",  # budget of a cluster: fair (a fair share of the server), a size (16GiB) or a share of the host
    "connect_timeout": 10,  # seconds for an SSH connection to come up
    "fabric_accept_new_host_key": False,  # Fabric transport: learn an unknown host key (else refused, as OpenSSH asks)
    "scheduler_interface": None,  # interface the scheduler listens on when workers run on other servers (TLS only)
    "jobqueue": {},  # worker jobs on a batch system: system (slurm|pbs|sge|lsf) and dask-jobqueue's job settings
    "jobs_wait": 60,  # seconds `up --jobs` waits for the jobs' workers to join before it returns
    "claims_dir": None,  # the host's shared claims directory; None: the admin's (/etc/portal/portal.yaml), else /var/tmp
    "hosts": {},  # per-host overrides: {matagorda: {port_base: 21000, env_manager: micromamba}}
}

#: What a tmux session name may be: anything else (quotes, $, ;, spaces, '.', ':') is refused with one line.
SESSION_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


class PortalConfig(Config):
    """invoke Config with the ``portal`` prefix: portal.yaml files and PORTAL_* variables."""

    prefix = "portal"

    @staticmethod
    def global_defaults() -> dict[str, Any]:
        base = Config.global_defaults()
        base.update({k: (dict(v) if isinstance(v, dict) else v) for k, v in DEFAULTS.items()})
        return base

    def load_shell_env(self) -> None:
        """invoke's, but a PORTAL_* value of the wrong type is one line naming the variable, not a traceback."""
        try:
            super().load_shell_env()
        except (ValueError, TypeError, UncastableEnvVar) as exc:
            raise Exit(f"portal: {unreadable_variable(os.environ) or f'cannot read the PORTAL_* variables ({exc}).'}",
                       code=1) from None


def unreadable_variable(environ: Mapping[str, str]) -> str | None:
    """What is wrong with the first PORTAL_* variable whose setting wants a number or a mapping, or None."""
    for key, default in DEFAULTS.items():
        var = f"PORTAL_{key.upper()}"
        if var not in environ or default is None or isinstance(default, (str, bool)):
            continue
        if isinstance(default, dict):
            return f"{var} cannot be set from the environment; put '{key}' in portal.yaml."
        try:
            type(default)(environ[var])
        except ValueError:
            return f"{var}={environ[var]!r} is not a whole number. Unset it, or set {key} in portal.yaml."
    return None


#: What a module name may hold (python/3.11, gcc/12.2.0-x86_64, Python/3.11.3-GCCcore-12.3.0): it is typed into
#: shells, so anything a shell would read as code is refused, never quoted.
MODULE_NAME = re.compile(r"[A-Za-z0-9_.+/@:=-]{1,200}")
#: What a path of env_manager may hold (it is typed into the windows' shells, unquoted where ~ must expand).
MANAGER_PATH = re.compile(r"~?[A-Za-z0-9_./+@-]{1,1000}")
MANAGERS = ("conda", "mamba", "micromamba")


def check_env_manager(value: Any, host: str) -> str | None:
    """env_manager as given (a manager's name, or the path of one on the host); ConfigError when neither."""
    if value is None or value == "":
        return None
    text = str(value)
    if text in MANAGERS:
        return text
    if "/" in text and MANAGER_PATH.fullmatch(text) and text.rsplit("/", 1)[-1] in MANAGERS \
            and text.startswith(("/", "~/")):
        return text
    raise ConfigError(f"env_manager {text!r} is neither conda, mamba or micromamba nor the path of one.", host=host,
                      hint="Set env_manager to conda, mamba, micromamba, or a path such as /opt/conda/bin/conda.")


def check_modules(value: Any, host: str) -> tuple[str, ...]:
    """``modules`` (a list, or one comma-separated string as --module gives it) as a tuple of module names."""
    if value is None or value == "":
        return ()
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)):
        raise ConfigError(f"modules {value!r} is not a list of module names.", host=host,
                          hint="Write modules: [python/3.11, gcc/12] in portal.yaml, or pass --module python/3.11.")
    names = tuple(str(item).strip() for item in items if str(item).strip())
    for name in names:
        if not MODULE_NAME.fullmatch(name):
            raise ConfigError(f"module name {name!r} holds characters a module name does not have.", host=host,
                              hint="Use the name `module avail` shows (letters, digits, / . _ + - @).")
    return names


@dataclass(frozen=True)
class Settings:
    """The settings in force for one host, validated."""

    host: str
    ssh_config: str | None
    transport: str
    session: str
    env_manager: str | None
    host_python: str
    port_base: int
    block_size: int
    slots: int
    workers: int
    threads: int
    memory: str
    connect_timeout: float
    claims_dir: str | None = None
    scheduler_interface: str | None = None
    fabric_accept_new_host_key: bool = False
    #: the batch system's name and dask-jobqueue's job settings (queue, account, walltime, cores, memory, ...)
    jobqueue: Mapping[str, Any] = field(default_factory=dict)
    jobs_wait: float = 60
    #: environment modules (Lmod, Environment Modules) loaded before the env: ``module load`` names
    modules: tuple[str, ...] = ()

    @property
    def remote_python(self) -> str:
        """The old name of :attr:`host_python`."""
        return self.host_python

    @property
    def is_local(self) -> bool:
        return self.transport == "local"

    def with_(self, **changes: Any) -> "Settings":
        return replace(self, **changes)


def _lookup(config: Mapping[str, Any] | Config | None, key: str) -> Any:
    if config is None:
        return DEFAULTS.get(key)
    try:
        value = config[key]
    except (KeyError, AttributeError):
        return DEFAULTS.get(key)
    return DEFAULTS.get(key) if value is None and key not in ("ssh_config", "transport", "env_manager", "claims_dir",
                                                              "scheduler_interface") else value


def _as_int(name: str, value: Any, low: int, high: int, host: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} {value!r} is not a whole number.", host=host, hint=f"Set {name} between {low} and {high}.") from None
    if not low <= number <= high:
        raise ConfigError(f"{name} {number} is out of range.", host=host, hint=f"Set {name} between {low} and {high}.")
    return number


def _as_seconds(name: str, value: Any, low: float, high: float, host: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} {value!r} is not a number of seconds.", host=host,
                          hint=f"Set {name} between {low:g} and {high:g}.") from None
    if not low <= number <= high:  # also NaN
        raise ConfigError(f"{name} {number:g} is out of range.", host=host, hint=f"Set {name} between {low:g} and {high:g}.")
    return number


def _as_bool(name: str, value: Any, host: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{name} {value!r} is neither true nor false.", host=host, hint=f"Set {name} to true or false.")


def _interface(value: Any, host: str) -> str | None:
    if value is None:
        return None
    if not (isinstance(value, str) and re.fullmatch(r"[A-Za-z0-9_.:@-]{1,15}", value)):
        raise ConfigError(f"scheduler_interface {value!r} is not a network interface name.", host=host,
                          hint="Give one that `ip -4 addr` lists on the host, e.g. eth0 or ib0.")
    return value


#: batch systems whose dask-jobqueue job class portal submits with (SLURM is the one tested)
JOB_SYSTEMS = ("slurm", "pbs", "sge", "lsf")
#: dask-jobqueue job settings portal passes on as given (its own names; see dask-jobqueue's docs)
JOB_SETTINGS = ("queue", "account", "walltime", "cores", "memory", "processes", "job_extra_directives",
                "job_script_prologue", "job_directives_skip", "interface", "job_cpu", "job_mem", "local_directory",
                "log_directory", "death_timeout", "resource_spec", "project", "shebang")


def _jobqueue(value: Any, host: str) -> dict[str, Any]:
    value = _plain(value) or {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"jobqueue {value!r} is not a mapping of job settings.", host=host,
                          hint="e.g. jobqueue: {system: slurm, queue: debug, walltime: '01:00:00'}.")
    unknown = sorted(set(value) - set(JOB_SETTINGS) - {"system"})
    if unknown:
        raise ConfigError(f"unknown jobqueue setting(s) {', '.join(map(str, unknown))}.", host=host,
                          hint=f"Known: system, {', '.join(JOB_SETTINGS)}.")
    system = value.get("system", "slurm")
    if system not in JOB_SYSTEMS:
        raise ConfigError(f"jobqueue system {system!r} is not one portal submits to.", host=host,
                          hint=f"Use one of {', '.join(JOB_SYSTEMS)}.")
    return {**value, "system": system}


def check_host(host: str) -> str:
    """The host as given; one that ssh would read as an option, or a shell as more than a name, is refused."""
    if host.startswith("-"):
        raise UsageError(f"host {host!r} begins with '-', so ssh would read it as an option.",
                         hint="Give a host name or an alias from your ssh config.")
    return names.check_host(host)  # nor spaces, control or shell characters: names are data, never code


def check_port_plan(port_base: int, block_size: int, slots: int, host: str) -> None:
    """A block holds at least one env's ports, and the last block ends at or below port 65535."""
    if block_size < SLOT_SIZE:
        raise ConfigError(f"block_size {block_size} cannot hold one env's {SLOT_SIZE} ports.", host=host,
                          hint=f"Set block_size to {SLOT_SIZE} or more (a multiple of {SLOT_SIZE}).")
    last = port_base + block_size * slots - 1
    if last > LAST_PORT:
        fit = (LAST_PORT + 1 - port_base) // block_size
        raise ConfigError(f"the port plan runs past port {LAST_PORT}: port_base {port_base} + {slots} slots x "
                          f"{block_size} ports ends at {last}.", host=host,
                          hint=f"Set slots to {fit} or less, or lower port_base or block_size." if fit else
                          "Lower port_base or block_size.")


def _plain(value: Any) -> Any:
    """invoke's config nests DataProxy objects (mapping-like, not Mappings): make plain dicts."""
    if hasattr(value, "_config") and hasattr(value, "keys"):
        return {k: _plain(value[k]) for k in value.keys()}
    return value


def is_local_host(host: str) -> bool:
    return host in ("localhost", "127.0.0.1", "::1", "")


def resolve(config: Mapping[str, Any] | Config | None, host: str = "localhost", **overrides: Any) -> Settings:
    """Merge defaults, config, the host's own section and CLI overrides (None = not given)."""
    host = check_host(host or "localhost")
    merged: dict[str, Any] = {k: _lookup(config, k) for k in DEFAULTS if k != "hosts"}
    hosts = _plain(_lookup(config, "hosts") or {})
    if not isinstance(hosts, Mapping):
        raise ConfigError("'hosts' in portal config must be a mapping of host name to settings.")
    per_host = hosts.get(host) or {}
    if not isinstance(per_host, Mapping):
        raise ConfigError(f"'hosts.{host}' in portal config must be a mapping of settings.")
    unknown = sorted(set(per_host) - set(DEFAULTS))
    if unknown:
        raise ConfigError(f"unknown setting(s) {', '.join(unknown)} under 'hosts.{host}' in portal config.",
                          hint=f"Known: {', '.join(sorted(k for k in DEFAULTS if k != 'hosts'))}.")
    merged.update(per_host)
    merged.update({k: v for k, v in overrides.items() if v is not None})
    if not merged.get("ssh_config"):
        merged["ssh_config"] = os.environ.get("PORTAL_SSH_CONFIG") or None
    if merged["ssh_config"]:
        merged["ssh_config"] = os.path.expanduser(str(merged["ssh_config"]))
    transport = merged.get("transport") or ("local" if is_local_host(host) else "openssh")
    if transport not in ("openssh", "fabric", "local"):
        raise ConfigError(f"unknown transport {transport!r}.", host=host, hint="Use openssh, fabric or local.")
    env_manager = check_env_manager(merged.get("env_manager"), host)
    modules = check_modules(merged.get("modules"), host)
    port_base = _as_int("port_base", merged["port_base"], 1024, 65000, host)
    block_size = _as_int("block_size", merged["block_size"], 1, 10000, host)
    slots = _as_int("slots", merged["slots"], 1, 100000, host)
    check_port_plan(port_base, block_size, slots, host)
    claims_dir = merged.get("claims_dir")
    if claims_dir is not None and not (isinstance(claims_dir, str) and claims_dir.startswith("/")):
        raise ConfigError(f"claims_dir {claims_dir!r} is not an absolute path.", host=host,
                          hint="Give the directory on the host, e.g. /var/lib/portal-ports.")
    session = str(merged["session"])
    if not SESSION_NAME.fullmatch(session):  # refused, not quoted: it ends up in tmux targets and shell lines
        raise ConfigError(f"session name {session!r} cannot be a tmux session name.", host=host,
                          hint="Use letters, digits, - or _ only.")
    return Settings(
        host=host,
        ssh_config=merged["ssh_config"],
        transport=transport,
        session=session,
        env_manager=env_manager,
        modules=modules,
        host_python=str(merged.get("host_python") or merged.get("remote_python") or "python3"),
        port_base=port_base,
        block_size=block_size,
        slots=slots,
        workers=_as_int("workers", merged["workers"], 0, 1024, host),  # 0: see parts/cluster.validate
        threads=_as_int("threads", merged["threads"], 1, 1024, host),
        memory=str(merged["memory"]),
        connect_timeout=_as_seconds("connect_timeout", merged["connect_timeout"], 1, 600, host),
        claims_dir=claims_dir,
        scheduler_interface=_interface(merged.get("scheduler_interface"), host),
        fabric_accept_new_host_key=_as_bool("fabric_accept_new_host_key", merged["fabric_accept_new_host_key"], host),
        jobqueue=_jobqueue(merged.get("jobqueue"), host),
        jobs_wait=_as_seconds("jobs_wait", merged["jobs_wait"], 0, 3600, host),
    )

