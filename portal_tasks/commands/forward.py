"""`forward`: SSH local forwards (through the master connection) for the user's running services."""

from __future__ import annotations

import contextlib
import dataclasses
import shlex
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from .. import state
from ..errors import ForwardError, LinkError, PortalError
from ..link.openssh import explain_ssh
from ..services import Service, collect, not_forwarded
from ..target import Explained, Target
from ..parts import cluster, jupyter


@dataclass(frozen=True)
class Forward:
    service: Service
    local_port: int
    answered: bool = False  # it answered through this forward just now (a kept forward)

    @property
    def url(self) -> str:
        return self.service.url(self.local_port)


def local_port_free(port: int) -> bool:
    """True when 127.0.0.1:port can be bound on the laptop."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_local_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def choose_local_port(preferred: Iterable[int | None], is_free: Callable[[int], bool], fallback: Callable[[], int]) -> int:
    """The first preferred port that is free (remembered, then the host's own number), else a fresh one."""
    for port in preferred:
        if port and is_free(port):
            return port
    return fallback()


def answers(url: str, timeout: float = 3.0) -> bool:
    """True when an HTTP GET of url gets any HTTP answer below 500 (the forward carries traffic).

    The query (Jupyter's token) is left out: whatever holds a laptop port may not be our forward.
    """
    import urllib.error
    import urllib.request  # here: only the forwards that are checked ask (http.client and email are no small import)

    try:
        with urllib.request.urlopen(url.split("?", 1)[0], timeout=timeout) as resp:
            return int(resp.status) < 500
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except (OSError, ValueError):
        return False


def wait_answers(url: str, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if answers(url, timeout=2.0):
            return True
        time.sleep(0.1)
    return False


def running(target: Target) -> list[Service]:
    """Every healthy dashboard and Jupyter server of this user on the host (says why one is left out)."""
    clusters, jupyters = cluster.describe(target), jupyter.describe(target)
    for line in not_forwarded(clusters, jupyters):
        target.say(f"{target.host}: {line}")
    return collect(clusters, jupyters)


def _forward_one(target: Target, service: Service, remembered: dict[str, Any] | None) -> Forward:
    link = target.link
    if remembered and remembered.get("remote") == service.remote:
        port = int(remembered["local_port"])
        held = link.holds_forward(port)  # the master's own listener: kept without a request through it
        if held or (held is None and answers(service.probe_url(port), timeout=2.0)):
            try:
                link.forward(port, service.remote)  # idempotent for an identical forward in the master
                return Forward(service, port, answered=True)
            except ForwardError:  # what answers there is another program, not our forward
                pass
        with contextlib.suppress(PortalError):
            link.cancel_forward(port, service.remote)
    want = [int(remembered["local_port"]) if remembered else None, service.host_port]
    port = choose_local_port(want, local_port_free, free_local_port)
    wished = next((p for p in want if p), None)
    if wished and port != wished:
        target.say(f"{target.host}: laptop port {wished} is taken by another program; {service.name} is on {port} instead.")
    link.forward(port, service.remote)
    return Forward(service, port)


def run(target: Target, watch: bool = False) -> list[Forward]:
    """Forward every running service, then stay to keep them alive with --watch (or when they end with us)."""
    if not watch:
        made = forward_all(target)
        if made and not target.link.persistent_forwards:
            keep_alive(target)
        return made
    try:
        made = forward_all(target)
    except (LinkError, ForwardError) as exc:  # the link dropped under the first round: made once it is back
        target.say(f"{target.host}: {exc.message} The watch makes the forwards once the link is back.")
        made = []
        keep_alive(target, pending=True)
    else:
        keep_alive(target)
    return made


class Early:
    """Forwards made while the host still boots: each service as soon as the host has seen it listen as the
    user's own (`up`'s dashboard while JupyterLab starts), and checked then (:func:`_carries`).

    Not earlier: a forward to a port nobody holds yet would hand a browser tab that reconnects (a dashboard,
    a notebook with its cookie) to whoever grabs the port first."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self._threads: list[threading.Thread] = []
        self._made: dict[str, Forward] = {}
        self._lock = threading.Lock()

    def add(self, service: Service) -> None:
        if self.target.link.name == "local" or service.name in self._made:
            return
        thread = threading.Thread(target=self._make, args=(service,), daemon=True)
        thread.start()
        self._threads.append(thread)

    def _make(self, service: Service) -> None:
        host = self.target.host
        try:
            with self._lock, state.laptop_lock(host):
                remembered = state.load_forwards(host)
                fwd = _forward_one(self.target, service, remembered.get(service.name))
                remembered[service.name] = {"local_port": fwd.local_port, "remote": service.remote, "url": fwd.url}
                state.save_forwards(host, remembered)
        except PortalError:
            return  # the forward step makes it again, and says why it cannot
        answered = fwd.answered or _carries(self.target, fwd)
        self._made[service.name] = dataclasses.replace(fwd, answered=answered)

    def made(self) -> dict[str, Forward]:
        """Every forward made so far, once each is made and checked."""
        for thread in self._threads:
            thread.join()
        return dict(self._made)


def forward_all(target: Target, services: list[Service] | None = None, early: Early | None = None) -> list[Forward]:
    """Forward every running service (``services`` when the caller already knows them); keep healthy
    forwards, replace broken ones; remember the ports. Forwards ``early`` made of the same services are kept."""
    ready = early.made() if early is not None else {}
    if services is None:
        services = running(target)
    state.record_host(target.host, target.settings.ssh_config)  # `status --all` and the page ask it from now on
    if target.link.name == "local":
        made = [Forward(s, s.host_port) for s in services if s.host_port]
        _print(made)
        return made
    target.link.connect()
    with state.laptop_lock(target.host):
        remembered = state.load_forwards(target.host)
        made = [ready[s.name] if s.name in ready and ready[s.name].service == s else
                _forward_one(target, s, remembered.get(s.name)) for s in services]
        state.save_forwards(target.host, {
            f.service.name: {"local_port": f.local_port, "remote": f.service.remote, "url": f.url} for f in made
        })
    for fwd in made:
        if not fwd.answered and not _carries(target, fwd):
            target.say(f"{target.host}: {fwd.service.name} forwarded to {fwd.local_port} but does not answer yet.")
    _print(made)
    return made


def _carries(target: Target, fwd: Forward) -> bool:
    """A forward just made works: the master's own listener on the laptop port (asked on the laptop, no
    traffic: the host already checked that the service is the user's and answers), else one request
    through it (where the laptop cannot tell, e.g. without /proc)."""
    held = target.link.holds_forward(fwd.local_port)
    if held is not None:
        return held
    return wait_answers(fwd.service.probe_url(fwd.local_port), 10.0)


def _print(made: list[Forward]) -> None:
    for fwd in made:
        print(f"{fwd.service.name}: {fwd.url}")


def keep_alive(target: Target, interval: float = 1.0, rounds: int | None = None, pending: bool = False) -> None:
    """Stay, and re-make the master and the forwards whenever the link drops (until interrupted, or `rounds`).

    While the link is up a round costs one local check (``ssh -O check``: no traffic to the host);
    ``pending`` forwards (a round that failed) are made again even when the link is up.
    """
    done, lost_at, told = 0, 0.0, False
    while rounds is None or done < rounds:
        done += 1
        time.sleep(interval)
        link = target.link
        if link.is_alive() and not pending:
            continue
        if not lost_at:
            lost_at = time.monotonic()
            target.say(f"{target.host}: link lost; reconnecting")
        try:
            link.reconnect()
            forward_all(target)
        except PortalError as exc:
            if not told:  # once per outage; the watch goes on
                target.say(f"{target.host}: not back yet ({exc.message}); trying every {interval:g}s, Ctrl-C ends.")
                told = True
            pending = True
            continue
        pending = False
        target.say(f"{target.host}: link back after {time.monotonic() - lost_at:.1f}s; forwards re-made.")
        lost_at, told = 0.0, False


def explain(target: Target, watch: bool = False) -> Explained:
    services = running(target)
    lines = []
    for s in services:
        port = s.host_port or 8888
        argv = [*explain_ssh(target.settings), "-f", "-N", "-L", f"127.0.0.1:{port}:{s.remote}", target.host]
        lines.append(shlex.join(argv) + f"    # then open {s.url(port)}")
    if not services:
        lines.append(f"# nothing to forward: no dashboard or Jupyter server of yours runs on {target.host}")
    return Explained(local=lines)
