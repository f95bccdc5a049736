"""`check`: is the host ready? One line per check, ok or what to do; True when all pass."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .. import hostenv
from ..envs import dashboard_problem
from ..errors import PortalError
from ..remote.proxy import proxy_safe
from ..target import Target

REQUIRED_MODULES = {"IPython": "ipython", "distributed": "dask.distributed"}
OPTIONAL_MODULES = {"jupyterlab": "jupyterlab (needed for --jupyter)"}


def in_jupyter(name: str, modules: dict[str, bool],
               versions: dict[str, str] | None = None) -> list[tuple[bool | None, str]]:
    """What JupyterLab can do with the cluster in env ``name``: the dashboard through Jupyter's own
    port (jupyter-server-proxy, not one with a known hole), dask-labextension's panes set to the shared
    cluster (needs both)."""
    env, proxy, panes = repr(name), modules.get("jupyter_server_proxy"), modules.get("dask_labextension")
    lines: list[tuple[bool | None, str]] = []
    have = (versions or {}).get("jupyter-server-proxy")
    if proxy and have and not proxy_safe(have):
        lines.append((None, (f"env {env} has jupyter-server-proxy {have}, which proxies websockets without Jupyter's "
                             "login (CVE-2024-28179): portal does not use it, notebooks get the dashboard's direct "
                             "link; `pip install -U 'jupyter-server-proxy>=4.1.1'`")))
    elif proxy:
        lines.append((True, (f"env {env} has jupyter-server-proxy: JupyterLab also serves the dashboard "
                             "(at /proxy/PORT/status, only your own cluster's)")))
    else:
        lines.append((None, f"dashboard through Jupyter not available in env {env}; `pip install jupyter-server-proxy`"))
    if not panes:
        lines.append((None, f"Dask panes in JupyterLab not available in env {env}; `pip install dask-labextension`"))
    elif proxy:
        lines.append((True, f"env {env} has dask-labextension: its panes are set to your cluster's dashboard"))
    else:
        lines.append((None, (f"dask-labextension in env {env} is set to your cluster only with "
                             "jupyter-server-proxy; `pip install jupyter-server-proxy`")))
    return lines


@dataclass(frozen=True)
class Line:
    ok: bool | None  # None: a note, neither pass nor fail
    text: str

    def render(self) -> str:
        mark = {True: "ok  ", False: "FAIL", None: "note"}[self.ok]
        return f"{mark} {self.text}"


def _ssh(target: Target) -> Line:
    target.link.connect()
    facts = target.facts()
    how = "no SSH (this machine)" if target.settings.is_local else f"over {target.link.name}"
    python = f"python {facts['python']}" + (f" ({facts['python_path']})" if facts.get("python_path") else "")
    return Line(True, f"{target.host}: reachable {how} as {facts['user']} (uid {facts['uid']}); "
                      f"portal's helper runs on {python}")


def _tmux(target: Target) -> Line:
    version = target.facts().get("tmux")
    if not version:
        return Line(False, f"{target.host}: tmux is not on the PATH. Install tmux there (apt-get install tmux) or ask the admins.")
    return Line(True, f"{target.host}: {version}")


def _env(target: Target, env: str | None) -> list[Line]:
    if env is None and not target.settings.is_local:
        return [Line(None, f"{target.host}: no --env given, so no env was checked")]
    loads = target.settings.modules
    info = hostenv.inspect(target, env)
    lines = [Line(True, f"{target.host}: module load {' '.join(loads)} works (loaded before the env, in every "
                        "window too)")] if loads else []
    if info.get("manager_path"):
        lines.append(Line(True, f"{target.host}: env manager {info['manager']} at {info['manager_path']} "
                                f"(found in {info.get('manager_source')})"))
    lines.append(Line(True, f"{target.host}: env {info['name']!r} ({info['kind']}) at {info['prefix']}, "
                            f"python {info['python']}"))
    modules = info.get("modules", {})
    for module, label in REQUIRED_MODULES.items():
        if modules.get(module):
            lines.append(Line(True, f"{target.host}: env {info['name']!r} has {label}"))
        else:
            lines.append(Line(False, f"{target.host}: env {info['name']!r} lacks {label}. Install it: pip install {label.split('.')[0]} (or conda install)."))
    if modules.get("distributed"):
        problem = dashboard_problem(info["name"], info.get("dashboard"))
        if problem:
            lines.append(Line(False, f"{target.host}: {problem}"))
        elif info.get("dashboard"):
            have = (info.get("dashboard") or {}).get("have")
            lines.append(Line(True, f"{target.host}: env {info['name']!r} has bokeh {have} "
                                    "for the Dask dashboard"))
    for module, label in OPTIONAL_MODULES.items():
        if not modules.get(module):
            lines.append(Line(None, f"{target.host}: env {info['name']!r} lacks {label}"))
        else:
            lines.append(Line(True, f"{target.host}: env {info['name']!r} has {module}"))
    if modules.get("jupyterlab") and modules.get("distributed"):
        lines += [Line(ok, f"{target.host}: {text}")
                  for ok, text in in_jupyter(info["name"], modules, info.get("versions"))]
    if modules.get("dask_jobqueue"):
        lines.append(Line(True, f"{target.host}: env {info['name']!r} has dask-jobqueue (for --jobs)"))
    else:
        lines.append(Line(None, f"{target.host}: env {info['name']!r} lacks dask-jobqueue (needed for --jobs); "
                                "`pip install dask-jobqueue`"))
    return lines


def _beyond(target: Target) -> list[Line]:
    """Workers beyond this host: the scheduler's interface, and the batch system's submit command."""
    host, name = target.host, target.settings.scheduler_interface
    if not name:
        lines = [Line(None, f"{host}: no scheduler_interface set, so workers on other servers or batch jobs "
                            "(--workers-on, --jobs) cannot reach the scheduler; set it for this host in portal.yaml")]
    else:
        try:
            address = target.link.helper("interface-address", {"name": name})["address"]
            lines = [Line(True, f"{host}: scheduler_interface {name} is {address} (the scheduler listens there, "
                                "TLS only, for --workers-on and --jobs)")]
        except PortalError as exc:
            lines = [Line(False, exc.line())]
    system = target.settings.jobqueue.get("system", "slurm")
    found = target.link.helper("jobs-check", {"system": system})
    if found["path"]:
        lines.append(Line(True, f"{host}: {found['command']} at {found['path']} ({system} batch jobs: --jobs)"))
    else:
        lines.append(Line(None, f"{host}: no {found['command']} on the PATH, so no {system} batch jobs (--jobs) here"))
    return lines


def _ports(target: Target) -> list[Line]:
    from . import ports as ports_step

    return [Line(ok, text) for ok, text in ports_step.check_lines(target)]


def run(target: Target, env: str | None = None) -> bool:
    """Print one line per check; True only when none failed. An unreachable host stops the checks."""
    all_ok = True
    checks: list[Callable[[], list[Line]]] = [
        lambda: [_ssh(target)],
        lambda: [_tmux(target)],
        lambda: _env(target, env),
        lambda: _ports(target),
        lambda: _beyond(target),
    ]
    for i, check in enumerate(checks):
        try:
            lines = check()
        except PortalError as exc:
            lines = [Line(False, exc.line())]
            if i == 0:  # nothing else can be checked without the host
                print(lines[0].render())
                return False
        for line in lines:
            print(line.render(), flush=True)
            all_ok = all_ok and line.ok is not False
    return all_ok
