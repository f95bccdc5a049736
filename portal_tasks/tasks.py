"""The invoke tasks: parse options, call the parts (parts/), `up` (up/) and the other commands (commands/),
print. No logic lives here. Each task imports what it runs inside its body (a task's module loads only when it runs)."""

from __future__ import annotations

import functools
import json as _json
import logging
import os
import sys
import typing
from types import ModuleType
from typing import Any, Callable

from invoke.collection import Collection
from invoke.context import Context
from invoke.exceptions import Exit, ParseError
from invoke.parser.argument import Argument
from invoke.tasks import Task, task

from . import names
from .config import DEFAULTS
from .errors import PortalError, UsageError
from .request import ClusterAsk, JobSettings, UpRequest
from .target import Target, make_target

HOST = "SSH host as your ~/.ssh/config knows it, or localhost (default)"
SSH_CONFIG = "ssh config file to use (default: $PORTAL_SSH_CONFIG, else OpenSSH's own)"
ENV = "conda/mamba/micromamba env name, or path to a venv or conda prefix"
EXPLAIN = "print the shell commands this stands for, and do nothing"
SOCKET = ("JupyterLab on a unix socket (0600, in a 0700 dir) where its jupyter_server allows, which is the "
          "default; --no-socket: on a port of your block")
MODULE = "environment modules to load before the env, comma-separated (python/3.11,gcc/12); else modules in config"
COMMON = {"host": HOST, "ssh-config": SSH_CONFIG, "explain": EXPLAIN}


#: The only short flags: each is the letter a well-known tool gives the same thing (docs/DECISIONS.md), and means
#: it in every task that has the option. Every other option is long only (invoke would pick a first free letter).
SHORT_FLAGS = {
    "host": "H",  # fabric -H, docker -H (-h stays help: `portal up -h`)
    "ssh_config": "F",  # ssh -F
    "env": "e",  # tox -e, nox -e
    "explain": "n",  # make -n, rsync -n, git clean -n: print what would run, run nothing
    "session": "s",  # tmux new -s
    "all_": "a",  # ps -a, docker ps -a
    "port": "p",  # ssh -p
}


class WholeNumber(Argument):
    """An INT option: a value that is no whole number is one line, exit 1 (invoke's own int() would raise)."""

    def set_value(self, value: Any, cast: bool = True) -> None:
        try:
            super().set_value(value, cast)
        except ValueError:
            error = UsageError(f"--{self.name} {value!r} is not a whole number.", hint="Give it in digits.")
            raise ParseError(f"portal: {error.line()}") from None


class PortalTask(Task[Any]):
    """invoke's Task with portal's short flags only, and INT for a parameter typed ``int | None`` (None: not given)."""

    def __init__(self, body: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(body, **{"auto_shortflags": False, **kwargs})
        self.hints = typing.get_type_hints(body)

    def arg_opts(self, name: str, default: str, taken_names: set[str]) -> dict[str, Any]:
        opts = super().arg_opts(name, default, taken_names)
        if set(typing.get_args(self.hints.get(name))) == {int, type(None)}:
            opts["kind"] = int
        if name in SHORT_FLAGS:
            opts["names"].append(SHORT_FLAGS[name])
        return opts

    def get_arguments(self, ignore_unknown_help: bool | None = None) -> list[Argument]:
        kept = dict(self.help)  # invoke pops each help text it uses: a second run in one process would have none
        try:
            made = super().get_arguments(ignore_unknown_help)
        finally:
            self.help = kept
        return [WholeNumber(names=a.names, kind=int, default=a.default, help=a.help, positional=a.positional,
                            optional=a.optional, incrementable=a.incrementable, attr_name=a.attr_name)
                if a.kind is int else a for a in made]


def _debug() -> bool:
    return bool(os.environ.get("PORTAL_DEBUG")) or logging.getLogger().isEnabledFor(logging.DEBUG)


def portal_task(*args: Any, **kwargs: Any) -> Callable[..., Any]:
    """@task that turns a PortalError into one line on stderr and exit 1 (traceback with --debug)."""

    def wrap(fn: Callable[..., Any]) -> Any:
        @functools.wraps(fn)
        def body(c: Context, *a: Any, **kw: Any) -> Any:
            try:
                if kw.get("env"):  # names are data, never code: refused before anything runs
                    names.check_env(kw["env"])
                return fn(c, *a, **kw)
            except PortalError as exc:
                if _debug():
                    raise
                raise Exit(f"portal: {exc.line()}", code=1) from None
            except Exit:
                raise
            except BrokenPipeError:  # `portal status | head`: the reader left, nothing to report
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                raise Exit(code=0) from None
            except Exception as exc:  # a bug: still one line, the traceback on request
                if _debug():
                    raise
                raise Exit(f"portal: internal error ({type(exc).__name__}: {exc}). "
                           "Run again with PORTAL_DEBUG=1 (or portal --debug) for the traceback.", code=1) from None
            except KeyboardInterrupt:
                raise Exit("portal: interrupted; what already runs on the host keeps running.", code=130) from None

        return task(*args, klass=PortalTask, **kwargs)(body)

    return wrap


def _target(c: Context, host: str | None, ssh_config: str | None, **overrides: Any) -> Target:
    return make_target(c.config, host, ssh_config=ssh_config, **overrides)


def _explain_or_run(target: Target, explain: bool, command: ModuleType, **kw: Any) -> Any:
    if explain:
        print(target.render(command.explain(target, **kw)))
        return None
    return command.run(target, **kw)


def _host_step(target: Target, explain: bool, part: ModuleType, **kw: Any) -> Any:
    """A part of `up` on its own: its --explain, or the part on `up`'s path (``up/single``)."""
    if explain:
        print(target.render(part.explain(target, **kw)))
        return None
    from .up import single

    return single.run(target, part.__name__.rsplit(".", 1)[1], **kw)


@portal_task(help={**COMMON, "session": "tmux session name (default: portal, or config 'session')"})
def tmux(c: Context, host: str | None = None, ssh_config: str | None = None, session: str | None = None,
         explain: bool = False) -> None:
    """Ensure the user's tmux session exists on the host (an existing one is reused)."""
    from .parts import tmux as part

    _host_step(_target(c, host, ssh_config, session=session), explain, part)


@portal_task(name="env", help={**COMMON, "env": ENV})
def env_(c: Context, env: str | None = None, host: str | None = None, ssh_config: str | None = None,
         explain: bool = False) -> None:
    """Activate ENV in its own tmux window (checks that it exists first)."""
    from .parts import env as part

    _host_step(_target(c, host, ssh_config), explain, part, env=env)


@portal_task(help={**COMMON, "env": ENV})
def ipython(c: Context, env: str | None = None, host: str | None = None, ssh_config: str | None = None,
            explain: bool = False) -> None:
    """Start IPython in ENV with the cluster's address exported (a running one is kept)."""
    from .parts import ipython as part

    _host_step(_target(c, host, ssh_config), explain, part, env=env)


@portal_task(help={**COMMON, "env": ENV, "socket": SOCKET})
def jupyter(c: Context, env: str | None = None, host: str | None = None, ssh_config: str | None = None,
            socket: bool = True, explain: bool = False) -> None:
    """Start JupyterLab for ENV on its planned port with a token (a running one is kept)."""
    from .parts import jupyter as part

    _host_step(_target(c, host, ssh_config), explain, part, env=env, socket=socket)


CLUSTER_HELP = {
    "workers": "number of Dask workers on the host (default 2, or config 'workers'); 0 with --jobs or --workers-on",
    "threads": "threads per worker (default 2)",
    "memory": "memory budget for all workers: a size (16GiB) or a share of the host (25%)",
}
JOBS_HELP = {
    "jobs": "also submit N worker jobs to the host's batch system (SLURM; needs scheduler_interface for HOST)",
    "queue": "batch jobs: partition/queue (else jobqueue.yaml on the host, or jobqueue: in portal.yaml)",
    "account": "batch jobs: account to charge",
    "walltime": "batch jobs: wall time per job (HH:MM:SS)",
    "job-cores": "batch jobs: cores per job (default --threads)",
    "job-memory": "batch jobs: memory per job (default 2GiB)",
}


@portal_task(help={**COMMON, "env": ENV, **CLUSTER_HELP})
def cluster(c: Context, env: str | None = None, host: str | None = None, ssh_config: str | None = None,
            workers: int | None = None, threads: int | None = None, memory: str | None = None,
            explain: bool = False) -> None:
    """Start or reuse the user's Dask cluster for ENV (TLS, on the user's own ports)."""
    from .parts import cluster as part

    _host_step(_target(c, host, ssh_config), explain, part, env=env,
               ask=ClusterAsk(workers=workers, threads=threads, memory=memory))


@portal_task(help={**COMMON, "watch": "keep the forwards alive, re-making them after the link drops"})
def forward(c: Context, host: str | None = None, ssh_config: str | None = None, watch: bool = False,
            explain: bool = False) -> None:
    """Forward the ports of the user's running services to free local ports."""
    from .commands import forward as command

    _explain_or_run(_target(c, host, ssh_config), explain, command, watch=watch)


@portal_task(help=COMMON)
def browse(c: Context, host: str | None = None, ssh_config: str | None = None, explain: bool = False) -> None:
    """Open the browser at the forwarded Dask dashboard and JupyterLab."""
    from .commands import browse as command

    _explain_or_run(_target(c, host, ssh_config), explain, command)


@portal_task(help={
    **COMMON, "env": ENV, **CLUSTER_HELP,
    "jupyter": "also start JupyterLab", "socket": SOCKET,
    "attach": "attach to tmux at the end (--no-attach skips it)",
    "browser": "open the browser (--no-browser skips it; URLs are printed anyway)",
    "watch": "stay and keep the forwards alive",
    "page": "also open the local page of all your hosts (`portal page`; started in the background if none runs)",
    "workers-on": "also run workers on these servers (node1,node2; needs scheduler_interface for HOST in config)",
    "module": MODULE,
    **JOBS_HELP,
})
def up(c: Context, env: str | None = None, host: str | None = None, ssh_config: str | None = None,
       jupyter: bool = False, socket: bool = True, attach: bool = True, browser: bool = True,
       workers: int | None = None, threads: int | None = None, memory: str | None = None,
       watch: bool = False, workers_on: str | None = None, explain: bool = False, page: bool = False,
       jobs: int | None = None, queue: str | None = None, account: str | None = None, walltime: str | None = None,
       job_cores: int | None = None, job_memory: str | None = None, module: str | None = None) -> None:
    """Bring it all up: tmux, env, cluster, IPython (and JupyterLab), forwards, browser, attach."""
    if page and not explain:  # first: the page shows this host's services as they come up
        from .page import server

        url = server.ensure_running()
        print(f"portal page: {url}", flush=True)
        if browser:
            server.open_in_browser(url)
    from .parts import cluster

    job = JobSettings(queue=queue, account=account, walltime=walltime, job_cores=job_cores, job_memory=job_memory)
    request = UpRequest(env=env, jupyter=jupyter, socket=socket, attach=attach, browser=browser, watch=watch,
                        cluster=ClusterAsk(workers=workers, threads=threads, memory=memory, workers_on=workers_on,
                                           jobs=jobs, job=job))
    target = _target(c, host, ssh_config, modules=module)
    if not explain:
        cluster.validate(target, request.cluster)  # bad input (options, no env): not even a connection is made
        cluster.env_spec(target, env)
        target.link.connect_soon()  # ssh logs in while the rest of `up` is imported
    from .up import command

    _explain_or_run(target, explain, command, request=request)


@portal_task(help={**COMMON, "env": ENV, **JOBS_HELP, "jobs": "the number of worker jobs the env's cluster should have"})
def scale(c: Context, env: str | None = None, jobs: int | None = None, host: str | None = None,
          ssh_config: str | None = None, queue: str | None = None, account: str | None = None,
          walltime: str | None = None, job_cores: int | None = None, job_memory: str | None = None,
          explain: bool = False) -> None:
    """Give the env's running cluster N worker jobs on the batch system: submit the missing, cancel the extra."""
    from .commands import scale as command

    _explain_or_run(_target(c, host, ssh_config), explain, command, env=env, jobs=jobs,
                    job=JobSettings(queue=queue, account=account, walltime=walltime, job_cores=job_cores,
                                    job_memory=job_memory))


@portal_task(help={"host": HOST, "ssh-config": SSH_CONFIG, "json": "print JSON",
                   "all": "every host you used portal with, asked side by side",
                   "wait": "with --all: seconds to wait for the hosts (default 2)"})
def status(c: Context, host: str | None = None, ssh_config: str | None = None, json: bool = False,
           all_: bool = False, wait: float | None = None) -> None:
    """What runs for you on HOST (or on every host with --all): sessions, clusters, Jupyter, forwards (read-only)."""
    from .commands import overview, status as command

    if all_:
        reports = overview.ask_all(c.config, wait=overview.check_wait(wait, host), ssh_config=ssh_config)
        print(_json.dumps(reports, indent=2, sort_keys=True) if json else overview.render(reports))
        return
    report = command.run(_target(c, host, ssh_config))
    print(_json.dumps(report, indent=2, sort_keys=True) if json else command.render(report))


@portal_task(help={"ssh-config": SSH_CONFIG, "port": "laptop port to serve on (default: a free one)",
                   "browser": "open the browser (--no-browser only prints the URL)",
                   "wait": "seconds to wait for each host per refresh (default 2)"})
def page(c: Context, port: int = 0, browser: bool = True, wait: float | None = None,
         ssh_config: str | None = None) -> None:
    """A local page (127.0.0.1, a secret in its URL) with every host's services, health and actions; Ctrl-C ends it."""
    from .commands import overview
    from .page import server

    server.serve(c.config, port=port, browser=browser, wait=overview.check_wait(wait), ssh_config=ssh_config)


@portal_task(help={"host": HOST, "ssh-config": SSH_CONFIG, "json": "print JSON"})
def ports(c: Context, host: str | None = None, ssh_config: str | None = None, json: bool = False) -> None:
    """Your port plan on HOST and how many ports you hold there (read-only)."""
    from .commands import ports as command

    report = command.run(_target(c, host, ssh_config))
    print(_json.dumps(report, indent=2, sort_keys=True) if json else command.render(report))


@portal_task(help={**COMMON, "env": "stop only this env's services", "keep-cluster": "leave the Dask cluster running"})
def down(c: Context, env: str | None = None, host: str | None = None, ssh_config: str | None = None,
         keep_cluster: bool = False, explain: bool = False) -> None:
    """Stop what `up` started for you (never anything of another user), remove forwards."""
    from .commands import down as command

    _explain_or_run(_target(c, host, ssh_config), explain, command, env=env, keep_cluster=keep_cluster)


@portal_task(help={"host": HOST, "ssh-config": SSH_CONFIG, "env": ENV, "module": MODULE})
def check(c: Context, host: str | None = None, ssh_config: str | None = None, env: str | None = None,
          module: str | None = None) -> None:
    """Check the host is ready: ssh, tmux, env, python, dask, free planned ports (read-only)."""
    from .commands import check as command

    if not command.run(_target(c, host, ssh_config, modules=module), env=env):
        raise Exit(code=1)


@portal_task(name="tls", help={**COMMON, "rotate": "replace your CA, certificate and key with new ones (running clusters "
                                                  "are replaced at your next up of their env)"})
def tls_(c: Context, host: str | None = None, ssh_config: str | None = None, rotate: bool = False,
         explain: bool = False) -> None:
    """Your TLS certificate on HOST (valid until when); --rotate makes and installs a new one."""
    from .commands import tls as command

    _explain_or_run(_target(c, host, ssh_config), explain, command, rotate=rotate)


ns = Collection(tmux, env_, ipython, jupyter, cluster, forward, browse, up, scale, status, page, ports, down, check,
                tls_)
ns.configure({k: (dict(v) if isinstance(v, dict) else v) for k, v in DEFAULTS.items()})
