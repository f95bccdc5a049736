"""What every transport offers: run a command on the host, call the host-side helper, forward ports."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import json
import marshal
import subprocess
import threading
import zipfile
from abc import ABC, abstractmethod
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from .. import errors, remote_shell, state
from ..remote import tmux
from ..remote.files import write_atomic
from ..remote.hostpaths import HELPER_DIR
from ..config import Settings
from ..remote.python_pick import AGAIN, NEEDS
from ..runner import Result, log, redact, spawn

REMOTE_PACKAGE = Path(__file__).resolve().parent.parent / "remote"
#: Helper archives of other portal versions that nobody ran for this many days are removed on install.
PRUNE_DAYS = 30


def bytecode(source: bytes, name: str) -> bytes:
    """``source`` compiled for this Python as an unchecked hash-based .pyc (PEP 552): zipimport loads it
    without compiling when the host runs the same Python version, and skips it for the source otherwise."""
    code = compile(source, name, "exec", dont_inherit=True)
    return importlib.util.MAGIC_NUMBER + (1).to_bytes(4, "little") + importlib.util.source_hash(source) + \
        marshal.dumps(code)


#: The zipapp's ``__main__``: any Python (2.7 on) reads it; one older than the helper needs hands the call
#: to a newer one (remote/python_pick.py), and the marker of that hand-over stays out of what the helper starts.
MAIN = f"""import sys
if sys.version_info[:2] < {NEEDS!r}:
    from portal_remote.python_pick import run_newer
    run_newer()
import os
os.environ.pop("{AGAIN}", None)
from portal_remote.main import main
main()
"""


@lru_cache(maxsize=1)
def helper_archive() -> tuple[str, bytes]:
    """The host-side helper as a zipapp (stdlib only) and its short content hash. Each module also comes
    compiled (:func:`bytecode`): a call then spends no time compiling it (a zipapp keeps no __pycache__).
    Built once per version of the helper's sources and this Python, then read from the laptop's cache
    (building it compiles 30 modules: 0.08 CPU-s of every `portal` command that talks to a host)."""
    sources = sorted(REMOTE_PACKAGE.glob("*.py"))
    key = hashlib.sha256(importlib.util.MAGIC_NUMBER + MAIN.encode())
    for src in sources:
        key.update(src.name.encode() + b"\0" + src.read_bytes() + b"\0")
    kept = state.cache_dir() / f"helper-{key.hexdigest()[:16]}.pyz"
    try:
        data = kept.read_bytes()
    except OSError:
        data = _build_archive(sources)
        with contextlib.suppress(OSError):
            write_atomic(str(kept), data)
            for other in kept.parent.glob("helper-*.pyz"):  # another version's: rebuilt should it come back
                if other != kept:
                    other.unlink(missing_ok=True)
    return hashlib.sha256(data).hexdigest()[:12], data


def _build_archive(sources: list[Path]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for src in sources:
            for name, data in ((src.name, src.read_bytes()),
                               (f"{src.name}c", bytecode(src.read_bytes(), f"portal_remote/{src.name}"))):
                info = zipfile.ZipInfo(f"portal_remote/{name}", date_time=(2020, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED  # it travels with a first call: small
                zf.writestr(info, data)
        main = zipfile.ZipInfo("__main__.py", date_time=(2020, 1, 1, 0, 0, 0))
        zf.writestr(main, MAIN)
    return buf.getvalue()


def helper_path() -> str:
    """The helper's path under the user's home on the host."""
    digest, _ = helper_archive()
    return f"{HELPER_DIR}/remote-{digest}.pyz"


def helper_command(host_python: str, verb: str) -> str:
    """The host's shell line for one helper verb (pure; any login shell reads it, see remote_shell). Its
    payload goes on stdin (:func:`payload_line`), never here: every user of the host can read a process's
    arguments, and payloads carry keys."""
    return remote_shell.python_file(host_python, helper_path(), [verb])


def payload_line(payload: Any) -> bytes:
    """A helper payload as the one JSON line the helper reads first from its stdin."""
    return (json.dumps({} if payload is None else payload) + "\n").encode()


def helper_missing(rc: int, stderr: str) -> bool:
    """True when python could not open the helper archive: not installed yet, or removed meanwhile."""
    return rc == 2 and "remote-" in stderr and ("can't open file" in stderr or "No such file" in stderr)


#: Run by the host's python (argv: the helper's path, the archive's size, the verb): the first SIZE bytes of
#: stdin are the helper archive; written (0600, in a 0700 directory, atomically) unless it is there already,
#: old archives pruned, then the helper runs the verb on the rest of stdin. Exactly SIZE bytes are read
#: (os.read on fd 0, no buffering), so the payload line stays for the helper. Helpers of other portal
#: versions stay (another laptop may run one right now); only archives unused for PRUNE_DAYS (each run
#: touches its own, see remote/main.py) and partial uploads older than an hour go. Written for every Python
#: from 2.7 on: the helper's own ``__main__`` then finds a Python new enough (remote/python_pick.py). It stays
#: self-contained (it runs before the helper exists, on a Python older than the helper needs), so its atomic
#: write is its own few lines, not remote/files.py's ``write_atomic``.
BOOTSTRAP = r"""import io, os, sys, time
path, size, verb = os.path.expanduser(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
data = b""
while len(data) < size:
    chunk = os.read(0, size - len(data))
    if not chunk:
        sys.exit("portal: the helper archive arrived short")
    data += chunk
if not os.path.isfile(path):
    folder = os.path.dirname(path)
    try:
        os.makedirs(folder, 0o700)
    except OSError:
        if not os.path.isdir(folder):
            raise
    os.chmod(os.path.dirname(folder), 0o700)
    tmp = "%s.%d.tmp" % (path, os.getpid())
    with io.open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.rename(tmp, path)
    now = time.time()
    for name in os.listdir(folder):
        old = os.path.join(folder, name)
        try:
            age = now - os.stat(old).st_mtime
            if name != os.path.basename(path) and ((name.endswith(".pyz") and age > PRUNE * 86400)
                                                   or (name.endswith(".tmp") and age > 3600)):
                os.unlink(old)
        except OSError:
            pass
os.execv(sys.executable, [sys.executable, path, verb])
"""


def bootstrap_program() -> str:
    return BOOTSTRAP.replace("PRUNE", str(PRUNE_DAYS))


def bootstrap_command(host_python: str, verb: str, size: int) -> str:
    """The host's shell line that installs the helper from stdin when it is missing, then runs ``verb`` (pure):
    one round trip for a host that has not got this helper yet. One line of plain or single-quoted words
    (the program travels as base64), so any login shell reads it."""
    return remote_shell.python_program(host_python, bootstrap_program(), [str(size), verb], home_args=[helper_path()])


def python_not_found(python: str, rc: int, stderr: str) -> bool:
    """Whether the host's login shell said it has no ``python``, in its own words (sh, bash, zsh and fish
    exit 127; tcsh and csh exit 1)."""
    said = (f"{python}: not found", f"{python}: command not found", f"{python}: Command not found.",
            f"command not found: {python}", f"Unknown command: {python}", f"{python}: No such file or directory",
            f"no such file or directory: {python}")
    return rc in (1, 127) and any(words in stderr for words in said)


def is_traceback(stderr: str) -> bool:
    return "Traceback (most recent call last)" in stderr or "SyntaxError:" in stderr


def failure_line(result: Result) -> str:
    """What a failed helper call said, in one line: a Python traceback's last line (the exception), or the
    tail of its output."""
    text = (result.stderr or result.stdout).strip()
    if is_traceback(text):
        last = [line.strip() for line in text.splitlines() if line.strip()]
        return last[-1] if last else text
    return result.tail() or f"it exited {result.rc} and said nothing"


def python_hint(host: str) -> str:
    """What to do on a host whose Pythons are all too old for the helper."""
    return (f"Set host_python for this host in portal.yaml to a newer python (e.g. hosts: {{{host}: "
            f"{{host_python: /opt/python3.11/bin/python3}}}}), or install a python3.{NEEDS[1]} or newer there.")


ERROR_KINDS: dict[str, type[errors.PortalError]] = {
    cls.__name__: cls
    for cls in (
        errors.PortalError, errors.UsageError, errors.ConfigError, errors.EnvError, errors.TmuxError, errors.PortError,
        errors.ClusterError, errors.JupyterError, errors.StateError, errors.RemoteCommandError,
    )
}


def reported(kind: str, message: str, host: str, hint: str | None = None) -> errors.PortalError:
    """The PortalError the helper reported (its class by name, RemoteCommandError when unknown)."""
    return ERROR_KINDS.get(kind, errors.RemoteCommandError)(message, host=host, hint=hint)


class Link(ABC):
    """One connection to one host; every command, tmux call and forward goes through it."""

    name: str = "base"
    #: False when forwards end with this process (Fabric's copy threads): `up` then stays to keep them.
    persistent_forwards: bool = True

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.host = settings.host
        #: never prompt (password, 2FA) even on a terminal: for calls that ask many hosts at once
        self.batch = False
        self._soon: tuple[threading.Thread, dict[str, BaseException]] | None = None  # connect_soon's

    # -- transport-specific -------------------------------------------------
    @abstractmethod
    def connect(self) -> None:
        """Make sure the connection is up (raises LinkError naming the host when it cannot be)."""

    def connect_soon(self) -> None:
        """Start :meth:`connect` in the background: the caller has work of its own before it needs the link
        (imports, checks), done while ssh logs in. The first use of the link waits for it (:meth:`connected`)."""
        if self._soon is not None:
            return
        box: dict[str, BaseException] = {}

        def connect() -> None:
            try:
                self.connect()
            except BaseException as exc:  # given to the caller where it waits
                box["error"] = exc

        thread = threading.Thread(target=connect, name="portal-connect", daemon=True)
        self._soon = (thread, box)
        thread.start()

    def connecting(self) -> bool:
        """True while the :meth:`connect_soon` started is still under way."""
        return self._soon is not None and self._soon[0].is_alive()

    def connected(self) -> None:
        """:meth:`connect`, or the wait for the one :meth:`connect_soon` started (its error raised here)."""
        soon = self._soon
        if soon is None:
            self.connect()
            return
        thread, box = soon
        thread.join()
        self._soon = None
        if "error" in box:
            raise box["error"]

    @abstractmethod
    def command_argv(self, command: str, *, tty: bool = False) -> list[str]:
        """The local argv that runs the shell ``command`` on the host."""

    @abstractmethod
    def run_shell(self, command: str, *, input: str | bytes | None = None, timeout: float | None = None) -> Result:
        """Run a shell command line on the host and return its Result."""

    @abstractmethod
    def forward(self, local_port: int, remote: str) -> None:
        """Forward 127.0.0.1:local_port on the laptop to ``remote`` (``127.0.0.1:P`` or a socket path)."""

    @abstractmethod
    def cancel_forward(self, local_port: int, remote: str) -> None:
        """Stop one forward made by :meth:`forward` (no error if it is gone)."""

    @abstractmethod
    def close(self) -> None:
        """Drop the connection (and its forwards)."""

    def is_alive(self) -> bool:
        """True while the connection (and so its forwards) is up."""
        return True

    def holds_forward(self, local_port: int) -> bool | None:
        """Whether this link's own process listens on laptop port ``local_port`` (a forward of it), asked on
        the laptop alone; None when the laptop cannot tell (the forward is then checked through it)."""
        return None

    def reconnect(self) -> None:
        """Make the connection again after it dropped (forwards are then re-made by the caller)."""
        self.connect()

    def explain_login(self) -> list[str]:
        """The command a person types to get a shell on the host ([] when it is this machine)."""
        return []

    def attach_hint(self, session: str) -> str:
        """What a person types to attach to the session (plain commands, no portal options; any shell)."""
        return remote_shell.line(tmux.attach(session))

    def attach_argv(self, session: str) -> list[str]:
        """The argv that attaches the user's terminal to the tmux session."""
        return self.command_argv(remote_shell.line(tmux.attach(session)), tty=True)

    # -- shared --------------------------------------------------------------
    def run(self, argv: Sequence[str], *, input: str | bytes | None = None, timeout: float | None = None) -> Result:
        """Run an argv on the host, every argument quoted for whatever login shell the user has."""
        return self.run_shell(remote_shell.line(argv), input=input, timeout=timeout)

    def _install_helper(self) -> None:
        """Install the helper (it vanished, or a laptop's record of it was wrong): the bootstrap, with ``ping``."""
        _, data = helper_archive()
        result = self.run_shell(bootstrap_command(self.settings.host_python, "ping", len(data)),
                                input=data + payload_line({}), timeout=60)
        if not result.ok:
            self._raise_reported("install", result)
            raise errors.RemoteCommandError(f"could not install portal's helper in ~/.portal: {failure_line(result)}",
                                            host=self.host)

    def helper(self, verb: str, payload: Any = None, *, timeout: float | None = 120) -> Any:
        """Call a verb of the host-side helper, its JSON payload on stdin; return its JSON result.

        A helper that is not there (first use, or gone) is installed and the call made once more.
        """
        command, first, bootstrap = self._first_call(verb, payload_line(payload))
        result = self.run_shell(command, input=first, timeout=timeout)
        if not bootstrap and helper_missing(result.rc, result.stderr):
            self._install_helper()
            result = self.run_shell(command, input=first, timeout=timeout)
        reply = self._decode_helper(verb, result)
        state.remember_helper(self.host, helper_archive()[0])
        return reply

    def _first_call(self, verb: str, data: bytes) -> tuple[str, bytes, bool]:
        """(command, stdin, bootstrap) of a call: the helper itself, or, on the first call of this portal
        here, the bootstrap with the archive ahead of the payload."""
        digest, archive = helper_archive()
        if state.helper_known(self.host) != digest:
            return bootstrap_command(self.settings.host_python, verb, len(archive)), archive + data, True
        return helper_command(self.settings.host_python, verb), data, False

    def helper_stream(self, verb: str, payload: Any, on_event: Callable[[dict[str, Any]], None], *,
                      timeout: float | None = 300) -> Any:
        """Call a verb that prints progress lines (``{"event": ...}``) before its reply: ``on_event``
        gets each as it arrives (the laptop's progress stays live); returns the verb's result.

        One round trip, like :meth:`helper` (installs the helper once when it is missing). An
        exception from ``on_event`` ends the call (the helper sees its stdin close)."""
        command = helper_command(self.settings.host_python, verb)
        data = payload_line(payload)
        for attempt in (1, 2):
            held = self._hold(command, data)
            lines: list[str] = []
            try:
                _pump(held, lines, on_event)
            finally:
                rc, err = held.finish()
            if attempt == 1 and not lines and helper_missing(rc, err):
                self._install_helper()
                continue
            return self._decode_helper(verb, Result(("helper", verb), rc, "\n".join(lines), err))
        raise AssertionError("unreachable")

    def converse(self, verb: str, payload: Any) -> Conversation:
        """Start a verb that answers first, then waits for one more payload (``snapshot-up``): one session
        for a question and the work its answer leads to. See :class:`Conversation`."""
        return Conversation(self, verb, payload)

    def _raise_reported(self, verb: str, result: Result) -> None:
        """Raise what a failed call said when it said it in portal's words: the helper's JSON error line
        (a Python too old, say) or the login shell's "no such python"."""
        if result.stdout.strip().startswith("{") or python_not_found(self.settings.host_python, result.rc, result.stderr):
            self._decode_helper(verb, result)

    def _decode_helper(self, verb: str, result: Result) -> Any:
        if python_not_found(self.settings.host_python, result.rc, result.stderr):
            raise errors.RemoteCommandError(
                f"{self.settings.host_python!r} is not on the PATH.",
                host=self.host, hint=f"Install python3 there, or set host_python for this host in portal.yaml "
                                     f"(hosts: {{{self.host}: {{host_python: /path/to/python3}}}}).",
            )
        lines = result.stdout.strip().splitlines()
        try:
            reply = json.loads(lines[-1]) if lines else None
        except json.JSONDecodeError:
            reply = None
        if not isinstance(reply, dict):
            if result.stderr.strip():
                log.debug("portal's helper (%s) on %s wrote:\n%s", verb, self.host, redact(result.stderr))
            raise errors.RemoteCommandError(f"portal's helper ({verb}) failed: {failure_line(result)}",
                                            host=self.host,
                                            hint="Run again with --debug for its whole output." if
                                            is_traceback(result.stderr) else None)
        if not reply.get("ok"):
            if reply.get("kind") == "PythonTooOld":
                raise errors.ConfigError(str(reply.get("error")), host=self.host, hint=python_hint(self.host))
            raise reported(reply.get("kind", ""), reply.get("error", "unknown error"), self.host, reply.get("hint"))
        return reply.get("result")

    def _hold(self, command: str, first: bytes) -> Held:
        """Start ``command`` on the host with ``first`` on its stdin, which then stays open."""
        return SpawnedHeld(spawn(self.command_argv(command)), first)

    def _take(self, command: str, first: bytes) -> tuple[Held, str]:
        held = self._hold(command, first)
        return held, held.readline()

    @contextlib.contextmanager
    def lock(self, name: str, timeout: float = 120) -> Iterator[None]:
        """Hold the host-side lock NAME of this server (``~/.portal/hosts/MACHINE/locks/NAME``) while the block runs.

        The lock lives as long as the helper's stdin: if this process dies, the lock goes too.
        """
        command = helper_command(self.settings.host_python, "lock")
        first = payload_line({"name": name, "timeout": timeout})
        held, line = self._take(command, first)
        try:
            if line != "locked":
                rc, err = held.finish()
                if helper_missing(rc, err):  # not installed yet, or removed: install, once more
                    self._install_helper()
                    held, line = self._take(command, first)
                    err = held.finish()[1] if line != "locked" else ""
                if line != "locked":
                    failed = Result(("helper", "lock"), rc, line, err)
                    self._raise_reported("lock", failed)
                    said = failure_line(failed) if (line or err) else "no answer"
                    raise errors.StateError(f"could not take the lock {name!r} in ~/.portal ({said}).",
                                            host=self.host, hint="Another portal command may hang; try again.")
            yield
        finally:
            held.finish()


class Conversation:
    """One helper call in two turns: :meth:`answer` reads the verb's first answer (an ``answer`` progress
    line); then :meth:`send` gives it one more payload and streams its progress until its reply, or
    :meth:`close` tells it there is nothing more (and does not wait for its end: no extra round trip).

    The first call of this portal on a host carries the helper, as :meth:`Link.helper` does; a helper
    that vanished is installed once and the question asked again."""

    def __init__(self, link: Link, verb: str, payload: Any) -> None:
        self.link, self.verb, self.payload = link, verb, payload
        self.held: Held | None = None
        self.lines: list[str] = []

    def answer(self) -> Any:
        digest, _ = helper_archive()
        for attempt in (1, 2):
            command, first, bootstrap = self.link._first_call(self.verb, payload_line(self.payload))
            self.held, self.lines = self.link._hold(command, first), []
            while True:
                line = self.held.readline()
                if not line:
                    break
                event = _event(line)
                if event is not None and event.get("event") == "answer":
                    state.remember_helper(self.link.host, digest)
                    return event.get("result")
                if event is None:
                    self.lines.append(line)
            rc, err = self.held.finish()
            if attempt == 1 and not bootstrap and not self.lines and helper_missing(rc, err):
                self.link._install_helper()
                continue
            self.link._decode_helper(self.verb, Result(("helper", self.verb), rc, "\n".join(self.lines), err))
            raise errors.RemoteCommandError(f"portal's helper ({self.verb}) gave no answer.", host=self.link.host)
        raise AssertionError("unreachable")

    def send(self, payload: Any, on_event: Callable[[dict[str, Any]], None]) -> Any:
        """The second turn: ``payload`` on the same stdin, its progress to ``on_event``; its reply."""
        assert self.held is not None, "answer() first"
        held, self.held = self.held, None
        try:
            held.send(payload_line(payload))
            _pump(held, self.lines, on_event)
        finally:
            rc, err = held.finish()
        return self.link._decode_helper(self.verb, Result(("helper", self.verb), rc, "\n".join(self.lines), err))

    def close(self) -> None:
        """Nothing more to do: the helper sees its stdin end and exits; its end is not waited for."""
        held, self.held = self.held, None
        if held is not None:
            held.close_input()
            threading.Thread(target=held.finish, daemon=True).start()


def _pump(held: Held, lines: list[str], on_event: Callable[[dict[str, Any]], None]) -> None:
    """Read a call's output to its end: each progress line to ``on_event``, the rest (its reply) to ``lines``."""
    while True:
        line = held.readline()
        if not line:
            return
        event = _event(line)
        if event is None:
            lines.append(line)
        else:
            on_event(event)


def _event(line: str) -> dict[str, Any] | None:
    """A progress line of a streaming verb, or None for anything else (its reply, stray output)."""
    if not line.startswith('{"'):
        return None
    try:
        data = json.loads(line)
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) and "event" in data else None


class Held(ABC):
    """A helper call that keeps running while its stdin stays open (the ``lock`` verb)."""

    @abstractmethod
    def readline(self) -> str:
        """The next line it printed, stripped ("" when it ended)."""

    @abstractmethod
    def finish(self) -> tuple[int, str]:
        """Close its stdin, wait for its end (bounded) and return (exit code, stderr); idempotent."""

    @abstractmethod
    def send(self, data: bytes) -> None:
        """More for its stdin (a conversation's second turn)."""

    @abstractmethod
    def close_input(self) -> None:
        """End its stdin (it then ends); :meth:`finish` still reaps it."""


class SpawnedHeld(Held):
    """A held helper call that is a local process (ssh through the master, or bash for localhost)."""

    def __init__(self, proc: subprocess.Popen[bytes], first: bytes) -> None:
        self.proc = proc
        self._end: tuple[int, str] | None = None
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(first)
            proc.stdin.flush()
        except OSError:
            pass  # it ended already; finish() tells why

    def readline(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().decode(errors="replace").strip()

    def send(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        with contextlib.suppress(OSError):
            self.proc.stdin.write(data)
            self.proc.stdin.flush()

    def close_input(self) -> None:
        assert self.proc.stdin is not None
        with contextlib.suppress(OSError):
            self.proc.stdin.close()

    def finish(self) -> tuple[int, str]:
        if self._end is None:
            if self.proc.stdin is not None and self.proc.stdin.closed:  # close_input() ended it already
                self.proc.stdin = None
            try:
                _, err = self.proc.communicate(timeout=10)
            except (subprocess.TimeoutExpired, OSError, ValueError):
                self.proc.kill()
                _, err = self.proc.communicate()
            self._end = (self.proc.returncode, (err or b"").decode(errors="replace").strip())
        return self._end
