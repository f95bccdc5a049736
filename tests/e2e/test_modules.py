"""A server whose Python comes from `module load` (Lmod): portal loads the host's modules before it looks at the
env, and in every window; a module that is missing or fails is one line in Lmod's own words."""

from __future__ import annotations

import pytest

from portal_tasks import plan
from portal_tasks.testing.flows import status, up
from portal_tasks.testing.lmod import Lmod
from portal_tasks.testing.server import TestServer, TestUser

pytestmark = pytest.mark.e2e


def test_the_modules_python_runs_the_cluster(portal_server: TestServer, alice: TestUser, run_portal,
                                             portal_lmod: Lmod) -> None:
    host, module = portal_server.host, portal_lmod.python_module
    env = str(portal_lmod.python_bin).rsplit("/bin", 1)[0]
    res = run_portal(alice, "check", "--host", host, "--env", env, "--module", module)
    assert res.rc == 0 and f"module load {module} works" in res.stdout, res.stdout + res.stderr
    up(run_portal, alice, host, env, "--module", module)
    (cluster,) = status(run_portal, alice, host)["clusters"]
    args = alice.ssh(host, f"ps -o args= -p {cluster['pid']}").stdout
    assert args.startswith(f"{portal_lmod.python_bin}/python"), args
    typed = run_portal(alice, "up", "--host", host, "--env", env, "--module", module, "--explain").stdout
    assert f"module load {module}" in typed  # in every window, before the env


@pytest.mark.parametrize("which,words", [("missing", "module(s) are unknown"), ("broken", "broken on purpose")])
def test_a_module_that_is_missing_or_fails_is_one_line(portal_server: TestServer, alice: TestUser, run_portal,
                                                       portal_lmod: Lmod, which: str, words: str) -> None:
    module = portal_lmod.missing_module if which == "missing" else portal_lmod.broken_module
    env = str(portal_server.envs["a"])
    res = run_portal(alice, "up", "--host", portal_server.host, "--env", env, "--module", module, "--no-attach",
                     "--no-browser")
    errors = [line for line in res.stderr.splitlines() if line.startswith("portal:")]
    assert res.rc == 1 and len(errors) == 1 and "Traceback" not in res.stderr, res.stderr
    assert f"module load {module} failed: " in errors[0] and words in errors[0], errors
    assert not status(run_portal, alice, portal_server.host)["clusters"]  # nothing started


@pytest.mark.parametrize("role", ["fay", "ted"])
def test_fish_and_tcsh_users_windows_load_the_module(portal_server: TestServer, request: pytest.FixtureRequest,
                                                     run_portal, portal_lmod: Lmod, role: str) -> None:
    """Debian's Lmod defines `module` for sh login shells alone (/etc/profile.d/lmod.sh): a fish or tcsh window
    reads Lmod's own init for its shell first, so `module load` works there too and IPython starts."""
    user: TestUser = request.getfixturevalue(role)
    host, module = portal_server.host, portal_lmod.python_module
    env = str(portal_lmod.python_bin).rsplit("/bin", 1)[0]
    try:
        res = run_portal(user, "up", "--host", host, "--env", env, "--module", module, "--no-attach", "--no-browser",
                         timeout=300)
        assert res.rc == 0, res.stdout + res.stderr
        seen = status(run_portal, user, host)
        (cluster,) = seen["clusters"]
        assert cluster["healthy"], cluster
        args = user.ssh(host, f"ps -o args= -p {cluster['pid']}").stdout
        assert args.startswith(f"{portal_lmod.python_bin}/python"), args
        loaded = user.ssh(host, "tmux capture-pane -p -J -S - -t =portal:=ipython-" + plan.env_key(env)).stdout
        assert "command not found" not in loaded and "Unknown command" not in loaded, loaded
    finally:
        run_portal(user, "down", "--host", host, timeout=120)
