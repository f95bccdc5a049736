"""The seed's own command for a user whose conda comes only from `conda init bash` in Debian's ~/.bashrc (so a
non-interactive ssh command never sees it), with `a` made by `conda create -n a`: `portal check --env a` and
`portal up --env a` work, and everything runs from env a."""

from __future__ import annotations

import os
import signal

import pytest

from portal_tasks.runner import run
from portal_tasks.testing import conda
from portal_tasks.testing.assertions import CLIENTS_SCRIPT, client_env, dask_client, user_ports
from portal_tasks.testing.flows import explained_ports, laptop_ssh_pids, status, up
from portal_tasks.testing.plugin import portal_env
from portal_tasks.testing.server import TestServer, TestUser

pytestmark = pytest.mark.e2e


def args_of(user: TestUser, host: str, pid: int) -> str:
    res = user.ssh(host, f"ps -o args= -p {pid}")
    assert res.rc == 0, res.stderr
    return res.stdout.strip()


def test_conda_from_conda_init_is_found_and_check_says_where(portal_server: TestServer, carol: TestUser, run_portal):
    host, prefix = portal_server.host, portal_server.conda()
    assert carol.ssh(host, "command -v conda").rc != 0  # what made portal fail before: no conda for ssh commands
    res = run_portal(carol, "check", "--host", host, "--env", "a")
    assert res.rc == 0, res.stdout + res.stderr
    assert (f"env manager conda at {prefix}/bin/conda (found in the conda initialize block of ~/.bashrc)"
            in res.stdout), res.stdout
    assert f"env 'a' (named) at {conda.env_prefix(carol.home, 'a')}," in res.stdout


def test_up_env_a_runs_scheduler_workers_ipython_and_jupyter_from_env_a(portal_server: TestServer, carol: TestUser,
                                                                        run_portal):
    host = portal_server.host
    prefix = str(conda.env_prefix(carol.home, "a"))
    res = up(run_portal, carol, host, "a", "--jupyter")
    assert "✓ cluster" in res.stderr, res.stderr
    seen = status(run_portal, carol, host)
    (cluster,) = seen["clusters"]
    assert args_of(carol, host, cluster["pid"]).startswith(f"{prefix}/bin/python"), cluster
    (workers,) = carol.ssh(host, "pgrep -u $(id -u) -f 'dask spec'").stdout.split()  # scheduler and both nannies
    # the forkserver the two workers are forked from (and Python's resource tracker)
    spawned = carol.ssh(host, f"pgrep -P {workers}").stdout.split()
    assert len(spawned) >= 2, spawned
    assert all(args_of(carol, host, int(p)).startswith(f"{prefix}/bin/python") for p in [workers, *spawned])
    (lab,) = seen["jupyter"]
    assert lab["healthy"] and args_of(carol, host, lab["pid"]).startswith(f"{prefix}/bin/python"), lab
    # IPython's window: started by the env's ipython, its `client` connected to the cluster
    pane = carol.ssh(host, "tmux list-panes -a -F '#{window_name} #{pane_pid}'").stdout.split("\n")
    shell_pid = next(line.split()[1] for line in pane if line.startswith("ipython-a "))
    ipython = carol.ssh(host, f"pgrep -P {shell_pid}").stdout.split()
    assert ipython and args_of(carol, host, int(ipython[0])).startswith(f"{prefix}/bin/python"), pane
    variables = client_env(user_ports(run_portal(carol, "ports", "--host", host, "--json")), "a", str(carol.home))
    with dask_client(portal_server, carol, f"{prefix}/bin/python", variables, script=CLIENTS_SCRIPT) as clients:
        others = [c for c in clients["clients"] if c != clients["mine"] and c.startswith("Client-")]
    assert others, f"IPython's client is not connected: {clients}"
    # the windows activated env a with conda's own hook: nothing depends on conda init in ~/.bashrc
    explained = run_portal(carol, "up", "--host", host, "--env", "a", "--explain")
    assert f'eval "$({portal_server.conda()}/bin/conda shell.bash hook)"' in explained.stdout
    assert "conda activate a" in explained.stdout


@pytest.mark.parametrize("name,where", [("b", "envs_dirs of ~/.condarc"), ("base", "the install itself")])
def test_env_manager_as_a_path_with_envs_from_envs_dirs_and_base(portal_server: TestServer, carol: TestUser,
                                                                  run_portal, name: str, where: str):
    host, install = portal_server.host, portal_server.conda()
    prefix = str(install) if name == "base" else str(conda.env_prefix(carol.home, name))
    res = run_portal(carol, "check", "--host", host, "--env", name, env={"PORTAL_ENV_MANAGER": f"{install}/bin/conda"})
    assert f"env manager conda at {install}/bin/conda (found in env_manager)" in res.stdout, res.stdout + res.stderr
    assert f"env {name!r} (named) at {prefix}," in res.stdout, (where, res.stdout)
    if name == "b":
        assert res.rc == 0, res.stdout + res.stderr
        up(run_portal, carol, host, name)
        (cluster,) = status(run_portal, carol, host)["clusters"]
        assert args_of(carol, host, cluster["pid"]).startswith(f"{prefix}/bin/python")
    else:  # base is conda's own python: found, and check says what it lacks
        assert res.rc == 1 and "env 'base' lacks dask.distributed" in res.stdout, res.stdout


def test_a_name_no_manager_knows_is_one_line(portal_server: TestServer, carol: TestUser, run_portal):
    res = run_portal(carol, "up", "--host", portal_server.host, "--env", "nosuch", "--no-attach", "--no-browser")
    errors = [line for line in res.stderr.splitlines() if line.startswith("portal:")]
    assert res.rc == 1 and len(errors) == 1 and "Traceback" not in res.stderr, res.stderr
    assert "env 'nosuch' not found (conda env list shows: a, b, base). Create it (conda create -n nosuch" in errors[0]


def test_pasted_explain_for_a_conda_env_starts_the_cluster(portal_server: TestServer, carol: TestUser, run_portal,
                                                           listening_sockets):
    host = portal_server.host
    explained = run_portal(carol, "up", "--host", host, "--env", "a", "--explain")
    assert explained.rc == 0, explained.stderr
    text = explained.stdout
    try:
        pasted = run(["bash"], input=text, env=portal_env(carol), cwd=str(carol.laptop), timeout=120)
        port = explained_ports(text)[0]
        for _ in range(120):  # conda's hook, then the scheduler typed into its window; bounded
            if port in {s.port for s in listening_sockets(carol)}:
                break
            run(["sleep", "0.5"])
        else:
            shows = carol.ssh(host, "tmux capture-pane -p -t =portal:=cluster-a").stdout
            raise AssertionError(f"the pasted scheduler does not listen on {port}: {pasted.stderr[-2000:]}\n{shows}")
        pid = carol.ssh(host, f"pgrep -u $(id -u) -f 'dask spec.*\"port\":{port},'").stdout.split()
        assert pid and args_of(carol, host, int(pid[0])).startswith(f"{conda.env_prefix(carol.home, 'a')}/bin/python")
    finally:
        for pid in laptop_ssh_pids(carol, b"-N"):
            os.kill(pid, signal.SIGTERM)
