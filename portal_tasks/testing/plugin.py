"""pytest plugin: the portal test server (`--portal-server`), its users, and fixtures around them."""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import shutil
import signal
import sys
import tempfile
import threading
import warnings
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

import portal_tasks
from portal_tasks.errors import UsageError
from portal_tasks.runner import Result, run
from portal_tasks.testing.backends import CHOICES, get_backend
from portal_tasks.testing.envs import ENVS_ROOT, envs_ready
from portal_tasks.testing.lmod import Lmod
from portal_tasks.testing.netns import LAPTOP_MARK
from portal_tasks.testing.procs import pid_alive
from portal_tasks.testing.server import TestServer, TestServerUnavailable, TestUser, close_masters
from portal_tasks.testing.slurm import SlurmCluster
from portal_tasks.testing.sockets import Listener
from portal_tasks.testing.sockets import listening_sockets as _listening_sockets

#: Tests using any of these get the isolated environment (HOME, tmux, DASK_*) automatically.
PORTAL_FIXTURES = frozenset(
    {"portal_server", "alice", "bob", "notmux", "run_portal", "testinfra_host", "listening_sockets", "portal_slurm",
     "carol", "zed", "fay", "ted", "oldpy", "portal_lmod"}
)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("portal", "portal test server")
    group.addoption(
        "--portal-server",
        default=os.environ.get("PORTAL_TEST_SERVER", "netns"),
        metavar="SERVER",
        help=f"test server for e2e tests: {CHOICES} (default: netns, or $PORTAL_TEST_SERVER)",
    )
    group.addoption(
        "--portal-env",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="an env on an ssh:// test server (repeatable): NAME=PATH (a=/opt/envs/a), or a conda env named on "
             "the host: NAME=ENV or NAME alone (a: the host's env `a`, which portal finds there)",
    )
    parser.addini(
        "portal_isolate_env",
        type="bool",
        default=False,
        help="isolate HOME, tmux and DASK_* variables in every test, not only in tests of the portal test server",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "portal: keep the developer's HOME, ssh config, tmux and DASK_* variables out of this test"
    )


@pytest.hookimpl(wrapper=True)
def pytest_cmdline_main(config: pytest.Config) -> Generator[None, object, object]:
    """Before pytest-xdist reads `-n`: tests run one at a time where parallel workers would share one server."""
    reason = serial_reason(config)
    if reason and getattr(config.option, "numprocesses", None):
        config.option.numprocesses = 0  # xdist then runs no workers
        if reason != "--pdb":
            config.issue_config_time_warning(
                pytest.PytestConfigWarning(f"portal: {reason}: the tests run one at a time (-n ignored)"), 2)
    return (yield)


def serial_reason(config: pytest.Config) -> str | None:
    """Why this run's tests must run one at a time, or None: with pytest-xdist (`-n`, see pyproject.toml) each
    worker is a session of its own and starts a netns or docker server of its own, but an ssh:// server is one
    real machine with one set of users (alice's `down` would end what another worker's test of hers runs)."""
    if config.getoption("usepdb", False):
        return "--pdb"  # a debugger needs the terminal of the one process
    spec = str(config.getoption("--portal-server", "netns"))
    if spec.startswith("ssh://"):
        return f"the test server {spec} has one set of users for every test"
    return None


# -- the server --------------------------------------------------------------------------


def _backend_options(config: pytest.Config, spec: str) -> dict[str, Any]:
    if spec.startswith("ssh://"):
        return {"envs": portal_envs(config.getoption("--portal-env"))}
    return {}


def portal_envs(items: list[str]) -> dict[str, str]:
    """`--portal-env` values as {name: env}: `a=/opt/envs/a` a path, `a=myenv` or `a` (= `a=a`) an env name
    that portal resolves on the host (sshhost.py keeps a name a str, a path a Path)."""
    envs = {}
    for item in items:
        name, _, env = item.partition("=")
        if name.strip():
            envs[name.strip()] = env.strip() or name.strip()
    return envs


def _close_quietly(close: Callable[[], None]) -> None:
    try:
        close()
    except Exception as exc:  # noqa: BLE001 - at exit there is no test left to fail
        warnings.warn(f"portal test server teardown: {exc}", stacklevel=1)


@pytest.fixture(scope="session")
def portal_server(request: pytest.FixtureRequest) -> Iterator[TestServer]:
    """The test host for this session (one per session); skips with the reason where it cannot run."""
    spec = request.config.getoption("--portal-server")
    try:
        backend = get_backend(spec, **_backend_options(request.config, spec))
    except UsageError as exc:
        raise pytest.UsageError(str(exc)) from None
    if backend is None:
        pytest.skip("no portal test server (--portal-server none)")
    atexit.register(_close_quietly, backend.close)  # the last resort; close() is idempotent
    previous = _raise_on_sigterm()
    try:
        if backend.name == "netns" and not envs_ready():
            _say(request.config, f"portal: building the test envs under {ENVS_ROOT} (once per machine, minutes)")
        try:
            server = backend.start()
        except TestServerUnavailable as exc:
            pytest.skip(f"portal test server {spec!r} unavailable: {exc}")
        yield server
    finally:
        try:
            backend.close()
        finally:
            atexit.unregister(_close_quietly)
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def own_netns_server(request: pytest.FixtureRequest, why: str, extra_users: int = 0) -> Iterator[TestServer]:
    """For a module fixture: a netns server of the module's own (``extra_users`` beyond alice, bob and
    notmux: user01, user02, ...), closed afterwards; skips saying ``why`` it needs one where it cannot run."""
    from portal_tasks.testing import netns

    if request.config.getoption("--portal-server") != "netns":
        pytest.skip(f"{why} need the netns test server")
    reason = netns.unavailable()
    if reason:
        pytest.skip(reason)
    backend = netns.NetnsServer(extra_users=extra_users)
    try:
        yield backend.start()
    finally:
        backend.close()


@contextlib.contextmanager
def slurm_on(server: TestServer) -> Iterator[SlurmCluster]:
    """The server's SLURM while the block runs (started, then stopped also when the block fails); skips
    with the reason where the server has none (not the netns backend, not root, no SLURM installed)."""
    if server.start_slurm is None or server.stop_slurm is None:
        pytest.skip(f"the {server.backend} test server has no SLURM of its own (the netns server has)")
    try:
        cluster = server.start_slurm()
    except TestServerUnavailable as exc:
        pytest.skip(str(exc))
    try:
        yield cluster
    finally:
        server.stop_slurm()


@pytest.fixture(scope="session")
def portal_slurm(portal_server: TestServer) -> Iterator[SlurmCluster]:
    """A real SLURM on the test server (once per session): slurmctld on portal_server.host, compute
    node(s) sharing the homes; users submit with plain sbatch there. Skips with the reason where none."""
    with slurm_on(portal_server) as cluster:
        yield cluster


def _say(config: pytest.Config, line: str) -> None:
    """A line on the terminal even while output is captured."""
    capman = config.pluginmanager.getplugin("capturemanager")
    reporter = config.pluginmanager.getplugin("terminalreporter")
    if capman is None or reporter is None:
        return
    with capman.global_and_fixture_disabled():
        reporter.write_line(line)


def _raise_on_sigterm() -> Any:
    """Make SIGTERM (CI timeouts) unwind like Ctrl-C so fixture teardown runs; returns the old handler."""
    if threading.current_thread() is not threading.main_thread():
        return None
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return None

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    return signal.signal(signal.SIGTERM, handler)


def _user(server: TestServer, role: str) -> Iterator[TestUser]:
    try:
        user = server.user(role)
    except TestServerUnavailable as exc:
        pytest.skip(str(exc))
    yield user
    if server.reset_user is not None:  # the test's processes and files go; keys and ssh config stay
        server.reset_user(user)


def _user_fixture(role: str, doc: str) -> Any:
    """The fixture ``role``: that test user, clean at the start of each test (reset after it)."""

    def fixture(portal_server: TestServer) -> Iterator[TestUser]:
        yield from _user(portal_server, role)

    fixture.__doc__ = doc
    return pytest.fixture(name=role)(fixture)


alice = _user_fixture("alice", "The first test user, clean at the start of each test.")
bob = _user_fixture("bob", "A second test user, for \"users keep out of each other's way\" tests.")
notmux = _user_fixture("notmux", "A test user whose PATH on the host has no tmux.")
# Users made on first use (testing/roles.py); each skips with the reason where it cannot be made here.
carol = _user_fixture("carol", "A user with conda as people have it: `conda init bash` in Debian's ~/.bashrc, "
                               "envs a and b (conda.py).")
zed = _user_fixture("zed", "A user whose login shell is zsh (no ~/.zshrc).")
fay = _user_fixture("fay", "A user whose login shell is fish.")
ted = _user_fixture("ted", "A user whose login shell is tcsh.")
oldpy = _user_fixture("oldpy", "A user whose non-interactive PATH has a Python 3.6 `python3` first (oldpython.py).")


@pytest.fixture
def portal_lmod(portal_server: TestServer) -> Lmod:
    """The hosts' Lmod modules (lmod.py: python_module, missing_module, broken_module); skips where none."""
    if portal_server.lmod is None:
        from portal_tasks.testing import lmod

        pytest.skip(f"the {portal_server.backend} test server has no Lmod modules"
                    + (f": {lmod.unavailable()}" if portal_server.backend == "netns" and lmod.unavailable() else ""))
    return portal_server.lmod


# -- isolation ---------------------------------------------------------------------------


RUNTIME_PREFIX = "pt-r-"  # /tmp/pt-r-<pid>-XXXX: short, and the pid says whose


def _remove_runtime_dirs_of_dead_runs() -> None:
    for d in Path(tempfile.gettempdir()).glob(f"{RUNTIME_PREFIX}*-*"):
        pid = d.name[len(RUNTIME_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def portal_clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private HOME (so no ~/.ssh/config), XDG dirs and tmux dir; no DASK_*, TMUX, PORTAL_* or BROWSER.

    XDG_RUNTIME_DIR and TMUX_TMPDIR are short /tmp dirs: control sockets must fit in ~104 bytes.
    """
    home = tmp_path_factory.mktemp("home")
    _remove_runtime_dirs_of_dead_runs()
    runtime = Path(tempfile.mkdtemp(prefix=f"{RUNTIME_PREFIX}{os.getpid()}-"))
    monkeypatch.setenv("HOME", str(home))
    for var, sub in (("XDG_CONFIG_HOME", ".config"), ("XDG_CACHE_HOME", ".cache"), ("XDG_DATA_HOME", ".local/share")):
        (home / sub).mkdir(mode=0o700, parents=True)
        monkeypatch.setenv(var, str(home / sub))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.setenv("TMUX_TMPDIR", str(runtime))
    for var in list(os.environ):
        if var.startswith("DASK_") or (var.startswith("PORTAL_") and not var.startswith("PORTAL_TEST_")):
            monkeypatch.delenv(var)
    for var in ("TMUX", "TMUX_PANE", "BROWSER"):
        monkeypatch.delenv(var, raising=False)
    yield home
    close_masters(runtime, home)
    shutil.rmtree(runtime, ignore_errors=True)


@pytest.fixture(autouse=True)
def _portal_isolation(request: pytest.FixtureRequest) -> None:
    """Applies portal_clean_env to tests marked `portal` or using the test server's fixtures."""
    if (
        request.node.get_closest_marker("portal") is not None
        or PORTAL_FIXTURES.intersection(request.fixturenames)
        or request.config.getini("portal_isolate_env")
    ):
        request.getfixturevalue("portal_clean_env")


# -- helpers -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def testinfra_host(portal_server: TestServer) -> Callable[..., Any]:
    """testinfra_host(user, host=None): a testinfra Host logged in as user, through the user's ssh config."""
    import testinfra

    cache: dict[tuple[str, str], Any] = {}

    def get(user: TestUser, host: str | None = None) -> Any:
        alias = host or portal_server.host
        if (user.name, alias) not in cache:
            cache[(user.name, alias)] = testinfra.get_host(
                f"ssh://{user.name}@{alias}",
                ssh_config=str(user.ssh_config),
                controlpath=str(user.runtime / "ti-%%C"),  # testinfra %-formats its argv
                timeout=20,
            )
        return cache[(user.name, alias)]

    return get


@pytest.fixture
def listening_sockets(portal_server: TestServer) -> Callable[..., list[Listener]]:
    """listening_sockets(user, host=None): the TCP listeners (addr, port, uid, pid) user owns on host."""
    return lambda user, host=None: _listening_sockets(portal_server, user, host)


PACKAGE_PARENT = str(Path(portal_tasks.__file__).resolve().parents[1])


def portal_env(user: TestUser, env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of the `portal` CLI on user's laptop: its HOME, XDG dirs, tmux dir and ssh config."""
    laptop = user.laptop
    dirs = {"XDG_CONFIG_HOME": ".config", "XDG_CACHE_HOME": ".cache", "XDG_DATA_HOME": ".local/share"}
    out = {"HOME": str(laptop), "PORTAL_SSH_CONFIG": str(user.ssh_config), LAPTOP_MARK: str(laptop),
           "XDG_RUNTIME_DIR": str(user.runtime), "TMUX_TMPDIR": str(user.runtime)}
    for var, sub in dirs.items():
        (laptop / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
        out[var] = str(laptop / sub)
    pythonpath = os.environ.get("PYTHONPATH")
    out["PYTHONPATH"] = PACKAGE_PARENT + (os.pathsep + pythonpath if pythonpath else "")
    out.update(env or {})
    return out


@pytest.fixture
def run_portal(portal_server: TestServer, portal_clean_env: Path) -> Callable[..., Result]:
    """run_portal(user, *args, timeout=120, env=None, input=None): the `portal` CLI as user, from their laptop.

    DASK_*, TMUX, BROWSER and the developer's PORTAL_* are already out of os.environ (portal_clean_env).
    """
    if importlib.util.find_spec("portal_tasks.__main__") is None:
        pytest.skip("portal_tasks/__main__.py does not exist yet")

    def run_portal_(
        user: TestUser, *args: str, timeout: float = 120, env: dict[str, str] | None = None, input: str | None = None
    ) -> Result:
        return run([sys.executable, "-m", "portal_tasks", *args], timeout=timeout, input=input,
                   env=portal_env(user, env), cwd=str(user.laptop))

    return run_portal_
