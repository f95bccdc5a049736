"""`portal up --explain` pasted into a shell on the laptop builds the same setup by hand."""

from __future__ import annotations

import os
import signal
import urllib.request

import pytest

from portal_tasks import plan
from portal_tasks.runner import run
from portal_tasks.testing.flows import explained_ports, laptop_ssh_pids, skip_if_running
from portal_tasks.testing.plugin import portal_env

pytestmark = pytest.mark.e2e


def test_pasted_explain_of_up_gives_a_working_setup(portal_server, alice, run_portal, listening_sockets, tmp_path):
    host, env = portal_server.host, str(portal_server.envs["a"])
    before = listening_sockets(alice)  # empty, except on a server whose user runs things already (ssh://)
    explained = run_portal(alice, "up", "--host", host, "--env", env, "--explain")
    assert explained.rc == 0, explained.stderr
    assert listening_sockets(alice) == before, "--explain must start nothing"
    skip_if_running(run_portal, portal_server, alice, env, "pastes the commands that start one")
    text = explained.stdout
    assert text.splitlines()[0].startswith(f"ssh -F {alice.ssh_config} {host}")
    try:  # as when pasted: bash reads the lines from its input
        pasted = run(["bash"], input=text, env=portal_env(alice), cwd=str(alice.laptop), timeout=120)
        ports = dict(zip(("scheduler_port", "dashboard_port"), explained_ports(text)))
        listed = alice.ssh(host, "tmux list-windows -t =portal -F '#{window_name}'")
        windows = listed.stdout.split()
        key = plan.env_key(env)
        assert {f"cluster-{key}", f"ipython-{key}", f"env-{key}"} <= set(windows), (windows, pasted.stderr[-2000:])
        url = f"http://localhost:{ports['dashboard_port']}/status"
        deadline_ok = False
        for _ in range(60):  # the scheduler typed into its window needs a few seconds; bounded
            held = {s.port for s in listening_sockets(alice)}
            if {ports["scheduler_port"], ports["dashboard_port"]} <= held:
                deadline_ok = True
                break
            run(["sleep", "0.5"])
        assert deadline_ok, f"scheduler not listening on {ports}"
        with urllib.request.urlopen(url, timeout=20) as resp:  # the pasted ssh -L forward
            assert resp.status == 200
    finally:
        for pid in laptop_ssh_pids(alice, b"-N"):
            os.kill(pid, signal.SIGTERM)
