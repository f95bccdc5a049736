"""Users whose login shell is zsh, fish or tcsh: portal's windows are their own shell, the env active in it,
and `up --jupyter` works as it does for bash (the lines typed are valid in each shell)."""

from __future__ import annotations

import pytest

from portal_tasks.testing.assertions import CLIENTS_SCRIPT, client_env, dask_client, user_ports
from portal_tasks.testing.flows import http_get, status, up, urls_in
from portal_tasks.testing.server import TestServer, TestUser

pytestmark = pytest.mark.e2e

SHELL_OF = {"zed": "zsh", "fay": "fish", "ted": "tcsh"}


@pytest.mark.parametrize("role", ["zed", "fay", "ted"])
def test_up_jupyter_in_each_login_shell(portal_server: TestServer, run_portal, request, role: str) -> None:
    user: TestUser = request.getfixturevalue(role)
    host, env = portal_server.host, str(portal_server.envs["a"])
    first = up(run_portal, user, host, env, "--jupyter")
    assert all(http_get(url)[0] == 200 for url in urls_in(first)), urls_in(first)
    seen = status(run_portal, user, host)
    assert seen["clusters"] and seen["jupyter"] and seen["jupyter"][0]["healthy"], seen
    panes = user.ssh(host, "tmux list-panes -s -t '=portal' -F '#{window_name} #{pane_pid}'").stdout.splitlines()
    shells = {name: user.ssh(host, f"ps -o comm= -p {pid}").stdout.strip() for name, pid in
              (line.split() for line in panes)}
    assert set(shells.values()) == {SHELL_OF[role]}, shells  # every window is the user's own shell
    # the env window's shell has the env active: its python is the env's
    variables = client_env(user_ports(run_portal(user, "ports", "--host", host, "--json")), env, str(user.home))
    with dask_client(portal_server, user, f"{env}/bin/python", variables, script=CLIENTS_SCRIPT) as clients:
        others = [c for c in clients["clients"] if c != clients["mine"] and c.startswith("Client-")]
    assert others, f"IPython's client in the {SHELL_OF[role]} window is not connected: {clients}"
    warm = up(run_portal, user, host, env, "--jupyter")
    assert urls_in(warm) == urls_in(first) and "reusing" in warm.stdout + warm.stderr
