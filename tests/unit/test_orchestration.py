"""The orchestration of `up`, warm `up`, `forward` and `down` against a fake link: which calls reach
the host, in which order, and what the user reads. Nothing runs on a host."""

from __future__ import annotations

from typing import Any

import pytest

from portal_tasks import state
from portal_tasks.remote import tmux as cmds
from portal_tasks.config import resolve
from portal_tasks.errors import ClusterError
from portal_tasks.request import ClusterAsk, ClusterOptions, UpRequest
from portal_tasks.commands import down, forward
from portal_tasks.up import boot, command as up, warm
from portal_tasks.target import Target
from portal_tasks.testing.fakelink import FakeLink

HOST = "matagorda"
GiB = 1 << 30
FACTS = {"uid": 1000, "user": "alice", "home": "/home/alice", "hostname": HOST, "python": "3.11.4",
         "tmux": "tmux 3.3a", "managers": {"conda": "/opt/conda/bin/conda"}, "cpus": 8, "memory": 16 * GiB}
ENV = {"kind": "named", "prefix": "/opt/conda/envs/a", "python": "/opt/conda/envs/a/bin/python", "version": "3.11",
       "manager": "conda", "modules": {"IPython": True, "distributed": True, "jupyterlab": True},
       "dashboard": {"need": "bokeh>=3.1.0", "have": "3.4.0", "ok": True}}
PORTS = {"scheduler_port": 20000, "dashboard_port": 20001, "jupyter_port": 20002, "worker_ports": [20010, 20019],
         "nanny_ports": [20020, 20029]}
CLUSTER = {"key": "a", "env": "a", "address": "tls://127.0.0.1:20000", "scheduler_port": 20000, "dashboard_port": 20001,
           "worker_ports": [20010, 20019], "nanny_ports": [20020, 20029], "workers": 2, "workers_running": 2,
           "threads": 2, "memory_limit": 2 * GiB, "memory_budget": 4 * GiB, "scheduler_pid": 11, "workers_pid": 12,
           "healthy": True, "dashboard_ok": True, "dashboard_unowned": None}
LAB = {"env": "a", "env_key": "a", "port": 20002, "socket": None, "token": "t0k", "healthy": True, "problem": None,
       "url": "http://127.0.0.1:20002/lab?token=t0k", "pid": 13}
WINDOWS = {"shell": {"command": "bash", "marker": ""}, "env-a": {"command": "bash", "marker": "env:a"},
           "cluster-a": {"command": "dask", "marker": ""}, "ipython-a": {"command": "python3", "marker": "ipython:a"}}
OPTIONS = ClusterOptions(workers=2, threads=2, memory=None)
WARM = {"facts": FACTS, "env": ENV, "windows": WINDOWS, "clusters": [CLUSTER], "jupyters": []}


@pytest.fixture(autouse=True)
def laptop(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A laptop of its own (cache dir), every port free, every forward answering at once."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(forward, "local_port_free", lambda port: True)
    monkeypatch.setattr(forward, "wait_answers", lambda url, seconds=10.0: True)
    monkeypatch.setattr(forward, "answers", lambda url, timeout=3.0: True)


def make(replies: dict[str, Any], shell: Any = None) -> tuple[Target, FakeLink, list[str]]:
    settings = resolve(None, HOST)
    link = FakeLink(settings, replies, shell)
    said: list[str] = []
    return Target(settings=settings, link=link, say=said.append), link, said


def test_warm_up_is_one_snapshot_and_no_other_host_call(capsys: pytest.CaptureFixture[str]) -> None:
    target, link, said = make({"snapshot": WARM})
    up.run(target, UpRequest(env="a", attach=False, browser=False))
    assert link.host_calls() == [("helper", "snapshot")]
    assert ("forward", 20001, "127.0.0.1:20001") in link.calls
    assert said == [
        f"{HOST}: tmux session 'portal' already running, reused.",
        "attach: tmux attach -t '=portal'",  # the fake link's: Link.attach_hint
        f"{HOST}: env 'a' (named, /opt/conda/envs/a) already active, kept in window env-a of session 'portal'.",
        (f"{HOST}: reusing your Dask cluster for env a: tls://127.0.0.1:20000, dashboard port 20001, 2 workers x 2 "
         "threads, 2 GiB each (scheduler pid 11)."),
        f"{HOST}: IPython in env 'a' already running, kept in window ipython-a with the cluster's address.",
    ]
    assert "dashboard-a: http://localhost:20001/status" in capsys.readouterr().out


def test_warm_up_says_what_the_kept_cluster_runs_when_asked_for_other_sizes() -> None:
    target, link, said = make({"snapshot": WARM})
    up.run(target, UpRequest(env="a", attach=False, browser=False, cluster=ClusterAsk(workers=3)))
    assert link.host_calls() == [("helper", "snapshot")]
    assert f"{HOST}: (it runs 2 workers x 2 threads; `portal down --env a` first to change that.)" in said


def test_warm_up_with_jupyter_keeps_the_running_lab(capsys: pytest.CaptureFixture[str]) -> None:
    target, link, said = make({"snapshot": dict(WARM, jupyters=[LAB])})
    up.run(target, UpRequest(env="a", jupyter=True, attach=False, browser=False))
    assert link.host_calls() == [("helper", "snapshot")]
    assert said[-1] == f"{HOST}: JupyterLab for env 'a' already running, kept: {LAB['url']}"
    assert sorted(c for c in link.calls if c[0] == "forward") == [("forward", 20001, "127.0.0.1:20001"),
                                                                 ("forward", 20002, "127.0.0.1:20002")]
    assert "jupyter-a: http://localhost:20002/lab?token=t0k" in capsys.readouterr().out


@pytest.mark.parametrize("change", [
    {"windows": None},  # no session
    {"env": None, "env_error": "env 'a' not found"},
    {"clusters": [dict(CLUSTER, healthy=False)]},
    {"clusters": [dict(CLUSTER, dashboard_ok=False)]},  # its dashboard port is not the scheduler's own
    {"windows": dict(WINDOWS, **{"ipython-a": {"command": "bash", "marker": ""}})},  # IPython ended
    {"windows": dict(WINDOWS, **{"env-a": {"command": "bash", "marker": "env:b"}})},
], ids=["no-session", "no-env", "cluster-unhealthy", "dashboard-unowned", "ipython-ended", "env-window-other"])
def test_anything_missing_takes_the_full_path(change: dict[str, Any]) -> None:
    target, _, _ = make({})
    snap: Any = dict(WARM, **change)
    assert warm.decide(target, "a", snap, ["tmux", "env", "cluster", "ipython"], options=OPTIONS) is None


def test_a_lab_on_a_port_is_not_kept_when_a_socket_is_asked() -> None:
    target, _, _ = make({})
    snap: Any = dict(WARM, jupyters=[LAB])
    steps = ["tmux", "env", "cluster", "ipython", "jupyter"]
    assert warm.decide(target, "a", snap, steps, options=OPTIONS, jupyter=True, socket=False) is not None
    assert warm.decide(target, "a", snap, steps, options=OPTIONS, jupyter=True, socket=True) is not None  # unknown
    snap["env"] = dict(ENV, versions={"jupyter_server": "2.14.2"})  # a jupyter_server that can listen on a socket
    assert warm.decide(target, "a", snap, steps, options=OPTIONS, jupyter=True, socket=True) is None
    snap["env"] = dict(ENV, versions={"jupyter_server": "1.8.1"})  # one that cannot: its lab on a port is kept
    assert warm.decide(target, "a", snap, steps, options=OPTIONS, jupyter=True, socket=True) is not None


@pytest.mark.parametrize("part", ["env", "cluster", "ipython", "jupyter"])
def test_a_single_step_is_the_snapshot_and_one_up_call_with_only_its_part(part: str) -> None:
    from portal_tasks.up import single

    said_events = {"env": [{"event": "env", "started": True}],
                   "cluster": [{"event": "cluster-starting", "prep": PREP}, {"event": "cluster-ready", "state": STATE}],
                   "ipython": [{"event": "ipython", "started": True}],
                   "jupyter": [{"event": "jupyter", "entry": dict(LAB, started=True)}]}[part]
    result = {"cluster": {"cluster": STATE}, "jupyter": {"jupyter": dict(LAB, started=True)}}.get(part, {})
    target, link, said = make({"snapshot": COLD, "up": ([{"event": "tmux", "created": False}, *said_events], result)})
    single.run(target, part, env="a")
    assert link.host_calls() == [("helper", "snapshot"), ("then", "up")]  # one session
    plan = dict(link.payloads)["up"]
    assert [p for p in ("env", "cluster", "ipython", "jupyter") if p in plan] == [part]
    assert not [c for c in link.calls if c[0] == "forward"]  # a single step forwards nothing
    assert not [line for line in said if "tmux session" in line]  # its own part only: the session was there


def test_the_tmux_step_is_one_up_call_with_only_the_session() -> None:
    from portal_tasks.up import single

    target, link, said = make({"up": ([{"event": "tmux", "created": True}], {})})
    assert single.run(target, "tmux") is True
    assert link.host_calls() == [("helper", "up")]
    assert dict(link.payloads)["up"] == {"session": {"name": "portal", "has": cmds.has_session("portal"),
                                                     "new": cmds.new_session("portal")}, "locks": []}
    assert said[0] == f"{HOST}: tmux session 'portal' created."


def test_the_dashboard_is_forwarded_as_soon_as_the_host_says_it_is_ready() -> None:
    """Its forward is made when `cluster-ready` arrives, before JupyterLab's line (the host still boots)."""
    order: list[str] = []
    target, link, _ = make({"snapshot": COLD, "up": lambda payload: (
        [*events()[:-1], {"event": "cluster-ready", "state": STATE}, {"event": "probe"},
         {"event": "jupyter", "entry": dict(LAB, started=True)}], {"cluster": STATE, "jupyter": LAB})})
    seen = link.forward

    def forwarded(port: int, remote: str) -> None:
        order.append(f"forward {port}")
        seen(port, remote)

    link.forward = forwarded  # type: ignore[method-assign]
    real = boot._event

    def event(target: Any, planned: Any, display: Any, e: dict[str, Any], booted: Any, hooks: Any) -> None:
        if e["event"] == "probe":
            up.forward.threading.Event().wait(0.3)  # the early forward's thread has run by now
            order.append("jupyter still booting")
            return
        real(target, planned, display, e, booted, hooks)

    boot._event = event  # type: ignore[assignment]
    try:
        up.run(target, UpRequest(env="a", jupyter=True, attach=False, browser=False))
    finally:
        boot._event = real  # type: ignore[assignment]
    assert order[:2] == ["forward 20001", "jupyter still booting"]
    assert sorted(order[2:]) == ["forward 20002"]


def test_forward_forwards_only_what_the_host_confirmed_and_remembers_it(capsys: pytest.CaptureFixture[str]) -> None:
    unowned = dict(CLUSTER, key="b", env="b", dashboard_port=20101, dashboard_ok=False,
                   dashboard_unowned="dashboard port 20101 is held by another user, bob (uid 1001)")
    replies = {"cluster-list": [CLUSTER, unowned], "jupyter-list": [LAB]}
    target, link, said = make(replies)
    forward.run(target)
    assert link.calls == [("helper", "cluster-list"), ("helper", "jupyter-list"), ("connect",),
                          ("forward", 20001, "127.0.0.1:20001"), ("forward", 20002, "127.0.0.1:20002")]
    assert said == [f"{HOST}: dashboard of env b not forwarded: {unowned['dashboard_unowned']}."]
    out = capsys.readouterr().out
    assert "dashboard-a: http://localhost:20001/status" in out
    assert "jupyter-a: http://localhost:20002/lab?token=t0k" in out
    assert state.load_forwards(HOST)["jupyter-a"] == {"local_port": 20002, "remote": "127.0.0.1:20002",
                                                      "url": "http://localhost:20002/lab?token=t0k"}


def test_forward_keeps_a_remembered_forward_that_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    state.save_forwards(HOST, {"dashboard-a": {"local_port": 31001, "remote": "127.0.0.1:20001",
                                               "url": "http://localhost:31001/status"}})
    target, link, said = make({"cluster-list": [CLUSTER], "jupyter-list": []})
    made = forward.run(target)
    assert [(f.local_port, f.answered) for f in made] == [(31001, True)]
    assert [c for c in link.calls if c[0] in ("forward", "cancel")] == [("forward", 31001, "127.0.0.1:20001")]
    assert said == []


def test_a_remembered_port_taken_by_another_program_moves_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(forward, "local_port_free", lambda port: port != 20001)
    monkeypatch.setattr(forward, "free_local_port", lambda: 40000)
    target, link, said = make({"cluster-list": [CLUSTER], "jupyter-list": []})
    forward.run(target)
    assert [c for c in link.calls if c[0] == "forward"] == [("forward", 40000, "127.0.0.1:20001")]
    assert said == [f"{HOST}: laptop port 20001 is taken by another program; dashboard-a is on 40000 instead."]


STOPPED = ["jupyter a", "cluster a", "window env-a", "window ipython-a", "window jupyter-a", "session portal"]


def stopped(words: list[str] = STOPPED, **more: Any) -> dict[str, Any]:
    """A ``down`` helper reply."""
    return dict({"stopped": list(words), "clusters": [], "survivors": None}, **more)


def test_down_is_one_down_call_then_the_forwards(capsys: pytest.CaptureFixture[str]) -> None:
    state.save_forwards(HOST, {"dashboard-a": {"local_port": 20001, "remote": "127.0.0.1:20001", "url": "u"}})
    target, link, _ = make({"down": stopped()})
    down.run(target)
    assert link.host_calls() == [("helper", "down")]
    assert link.calls == [("helper", "down"), ("cancel", 20001, "127.0.0.1:20001"), ("close",)]
    (verb, payload), = link.payloads
    assert {k: payload[k] for k in ("session", "key", "env", "keep_cluster")} == {
        "session": "portal", "key": None, "env": None, "keep_cluster": False}
    assert payload["plan"]["first"] is None  # the host knows the user's own block: no probe for the uid
    assert capsys.readouterr().out == (f"{HOST}: stopped jupyter a, cluster a, window env-a, window ipython-a, "
                                       "window jupyter-a, session portal, forward dashboard-a\n")
    assert state.load_forwards(HOST) == {}


def test_down_of_one_env_keeping_its_cluster_leaves_the_rest(capsys: pytest.CaptureFixture[str]) -> None:
    state.save_forwards(HOST, {"dashboard-a": {"local_port": 20001, "remote": "127.0.0.1:20001", "url": "u"},
                               "jupyter-a": {"local_port": 20002, "remote": "127.0.0.1:20002", "url": "u"},
                               "jupyter-b": {"local_port": 20032, "remote": "127.0.0.1:20032", "url": "u"}})
    target, link, _ = make({"down": stopped(["jupyter a", "window env-a", "window ipython-a", "window jupyter-a"])})
    down.run(target, env="a", keep_cluster=True)
    assert link.calls == [("helper", "down"), ("cancel", 20002, "127.0.0.1:20002")]
    assert {k: link.payloads[0][1][k] for k in ("key", "env", "keep_cluster")} == {"key": "a", "env": "a",
                                                                                   "keep_cluster": True}
    assert capsys.readouterr().out == (f"{HOST}: stopped jupyter a, window env-a, window ipython-a, window jupyter-a, "
                                       "forward jupyter-a\n")
    assert sorted(state.load_forwards(HOST)) == ["dashboard-a", "jupyter-b"]


def test_down_stops_workers_on_other_servers_from_the_laptop_in_their_place(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    node_settings = resolve(None, "matagorda2")
    node_link = FakeLink(node_settings, {"probe": dict(FACTS, hostname="matagorda2"),
                                         "nodes-stop": {"stopped": [21], "survivors": []}})
    monkeypatch.setattr(Target, "other", lambda self, host: Target(settings=node_settings, link=node_link))
    reply = stopped(["jupyter a", "jobs 7 of a", "cluster a", "window env-a"], facts=FACTS,
                    clusters=[{"env": "a", "env_key": "a", "workers_on": ["matagorda2"], "at": 2}])
    target, link, _ = make({"down": reply})
    down.run(target, env="a")
    assert link.host_calls() == [("helper", "down")]  # the server's name for the node came with the reply
    assert node_link.host_calls() == [("helper", "probe"), ("lock", "nodes-a"), ("helper", "nodes-stop"),
                                      ("run", "tmux kill-window -t '=portal:=workers-a'")]
    assert node_link.payloads[1][1]["origin"] == HOST
    assert capsys.readouterr().out == (f"{HOST}: stopped jupyter a, jobs 7 of a, workers a on matagorda2, cluster a, "
                                       "window env-a\n")


def test_cluster_processes_that_did_not_end_are_one_error_and_the_forwards_stay() -> None:
    state.save_forwards(HOST, {"dashboard-a": {"local_port": 20001, "remote": "127.0.0.1:20001", "url": "u"}})
    target, link, _ = make({"down": stopped(["jupyter a"], survivors={"env": "a", "env_key": "a", "pids": [11]})})
    with pytest.raises(ClusterError, match=r"cluster processes \[11\] of env a did not end") as err:
        down.run(target)
    assert err.value.host == HOST and "ps" in str(err.value.hint)
    assert link.calls == [("helper", "down")]
    assert list(state.load_forwards(HOST)) == ["dashboard-a"]


def test_down_explain_prints_the_window_kills_the_helper_runs_and_asks_nothing() -> None:
    target, link, _ = make({})
    assert down.explain(target, env="a", keep_cluster=True).remote == [
        "tmux kill-window -t =portal:=ipython-a 2>/dev/null", "tmux kill-window -t =portal:=jupyter-a 2>/dev/null",
        "tmux kill-window -t =portal:=env-a 2>/dev/null"]
    assert down.explain(target).remote[-1] == "tmux kill-window -t =portal:=cluster-ENV 2>/dev/null"
    assert link.calls == []


# -- cold `up` in one host call (the helper's streaming ``up`` verb) ------------------------------

BLOCK = {"index": 0, "start": 20000, "end": 20099}
REPORT = {"uid": 1000, "block": BLOCK, "claimed": True, "envs": {}, "listening": [],
          "would_be": dict(PORTS, http_ports=[20030, 20039])}
COLD = dict(WARM, windows=None, clusters=[], ports=REPORT, share={"default_memory": 4 * GiB},
            tls={"exists": True, "dir": "/home/alice/.portal/tls", "cert": None})
PREP = {"reused": False, "ports": dict(PORTS, http_ports=[20030, 20039], http=list(range(20030, 20040))),
        "listen": "127.0.0.1", "share": {"memory": 4 * GiB}, "notes": [], "was_recorded": False, "env_kind": "named",
        "block": BLOCK}
STATE = dict(CLUSTER, notes=[])


def events(jupyter: bool = False, prep: dict[str, Any] = PREP, state: dict[str, Any] = STATE) -> list[dict[str, Any]]:
    out = [{"event": "tmux", "created": True}, {"event": "env", "started": True},
           {"event": "cluster-starting", "prep": prep}, {"event": "ipython", "started": True}]
    if jupyter:
        out.append({"event": "jupyter", "entry": dict(LAB, started=True)})
    return out + [{"event": "cluster-ready", "state": state}]


def test_cold_up_is_the_snapshot_and_one_up_call(capsys: pytest.CaptureFixture[str]) -> None:
    target, link, said = make({"snapshot": COLD, "up": (events(), {"cluster": STATE, "cluster_notes": []})})
    up.run(target, UpRequest(env="a", attach=False, browser=False))
    assert link.host_calls() == [("helper", "snapshot"), ("then", "up")]  # one session
    assert len(link.host_calls()) <= 3
    assert ("forward", 20001, "127.0.0.1:20001") in link.calls
    plan = dict(link.payloads)["up"]
    assert plan["tls"] is None  # the host has the files
    assert sorted(plan["locks"]) == ["cluster-a", "window-portal-env-a", "window-portal-ipython-a"]
    window = plan["cluster"]["window"]
    assert window["argv"][0] == cmds.new_window("portal", "cluster-a", None)
    assert all(argv[:2] == ["tmux", "send-keys"] for argv in window["argv"][1:])
    ipy = plan["ipython"]["window"]["argv"][0]
    assert "DASK_SCHEDULER_ADDRESS=tls://127.0.0.1:20000" in ipy
    assert said[0] == f"{HOST}: tmux session 'portal' created."
    # in the order the user reads: the cluster ready, then IPython (started once it is; here its line came first)
    assert said[-2].startswith(f"{HOST}: started Dask cluster for env a: tls://127.0.0.1:20000")
    assert said[-1] == f"{HOST}: IPython in env 'a' started in window ipython-a with the cluster's address."
    assert "dashboard-a: http://localhost:20001/status" in capsys.readouterr().out


def test_cold_up_sends_a_new_tls_set_on_stdin_only_when_the_host_has_none() -> None:
    snap = dict(COLD, tls={"exists": False, "dir": "/home/alice/.portal/tls"})
    target, link, said = make({"snapshot": snap, "up": ([{"event": "tls", "status": {"installed": True,
                                                                                   "dir": "/home/alice/.portal/tls"}},
                                                         *events()], {"cluster": STATE})})
    up.run(target, UpRequest(env="a", attach=False, browser=False))
    plan = dict(link.payloads)["up"]
    assert set(plan["tls"]["files"]) == {"ca.pem", "cert.pem", "key.pem"} and plan["tls"]["replace"] is False
    assert f"{HOST}: made your TLS certificate in /home/alice/.portal/tls (Dask accepts only it)." in said


def test_cold_up_with_jupyter_plans_the_lab_on_the_envs_port() -> None:
    target, link, said = make({"snapshot": COLD, "up": (events(jupyter=True), {"cluster": STATE, "jupyter": LAB})})
    up.run(target, UpRequest(env="a", jupyter=True, attach=False, browser=False))
    assert link.host_calls() == [("helper", "snapshot"), ("then", "up")]  # one session
    lab = dict(link.payloads)["up"]["jupyter"]
    assert lab["port"] == 20002
    assert "--port=20002" in lab["window"]["argv"][-1][4]
    assert sorted(c for c in link.calls if c[0] == "forward") == [("forward", 20001, "127.0.0.1:20001"),
                                                                 ("forward", 20002, "127.0.0.1:20002")]
    assert f"{HOST}: JupyterLab for env 'a' started in window jupyter-a: {LAB['url']}" in said


def test_ports_the_host_gave_otherwise_make_a_second_call_with_them() -> None:
    moved = dict(PREP, ports=dict(PREP["ports"], scheduler_port=20030, dashboard_port=20031))
    given = dict(STATE, scheduler_port=20030, dashboard_port=20031, address="tls://127.0.0.1:20030")
    replies = iter([([{"event": "tmux", "created": True}, {"event": "env", "started": True},
                      {"event": "replan", "cluster": {"scheduler_port": 20030}}], {"replan": {"cluster": moved}}),
                    (events(prep=moved, state=given), {"cluster": given})])
    target, link, said = make({"snapshot": COLD, "up": lambda payload: next(replies)})
    up.run(target, UpRequest(env="a", attach=False, browser=False))
    assert link.host_calls() == [("helper", "snapshot"), ("then", "up"), ("helper", "up")]  # one more session
    first, second = [p for v, p in link.payloads if v == "up"]
    assert first["cluster"]["ports"]["scheduler_port"] == 20000
    assert second["cluster"]["ports"]["scheduler_port"] == 20030
    assert "DASK_SCHEDULER_ADDRESS=tls://127.0.0.1:20030" in second["ipython"]["window"]["argv"][0]
    assert said.count(f"{HOST}: tmux session 'portal' created.") == 1  # each step says its lines once
    assert ("forward", 20031, "127.0.0.1:20031") in link.calls


def test_a_failure_of_the_up_call_is_one_error_and_starts_nothing_more() -> None:
    from portal_tasks.errors import ClusterError

    def fail(payload: Any) -> Any:
        raise ClusterError("env a: the cluster did not come up within 90s.", host=HOST)

    target, link, _ = make({"snapshot": COLD, "up": fail})
    with pytest.raises(ClusterError, match="did not come up"):
        up.run(target, UpRequest(env="a", attach=False, browser=False))
    assert link.host_calls() == [("helper", "snapshot"), ("then", "up")]  # one session
    assert not [c for c in link.calls if c[0] == "forward"]


def test_status_is_one_snapshot_call_with_every_session() -> None:
    from portal_tasks.commands import status

    block = {"index": 0, "start": 20000, "end": 20099}
    snap = dict(WARM, sessions=[{"name": "portal", "windows": [{"name": "env-a", "command": "bash", "pid": 5}]},
                                {"name": "mine", "windows": [{"name": "vim", "command": "vim", "pid": 6}]}],
                ports={"block": block, "uid": 1000, "claimed": True, "envs": {"a": dict(PORTS, env="a", slot=0)},
                       "listening": [{"addr": "127.0.0.1", "port": 20000}, {"addr": "127.0.0.1", "port": 40000}]},
                share={"caps": {}, "users": [], "trusted": True, "free_memory": 0})
    target, link, _ = make({"snapshot": snap})
    report = status.run(target)
    assert link.host_calls() == [("helper", "snapshot")]
    assert [p["sessions"] for v, p in link.payloads if v == "snapshot"] == [True]
    assert [(s["name"], s["portal"]) for s in report["sessions"]] == [("portal", True), ("mine", False)]
    assert report["clusters"][0]["address"] == "tls://127.0.0.1:20000" and report["user"] == "alice"
    assert (report["ports"]["listening"], report["ports"]["listening_in_block"]) == (2, 1)


def test_a_step_line_that_comes_early_waits_for_the_steps_before_it() -> None:
    """The cluster ready before JupyterLab: its lines wait, so the user reads the steps in their order."""
    from portal_tasks.up.boot import Display

    said: list[str] = []
    display = Display([("ipython", "ipython", ""), ("jupyter", "jupyter", ""), ("cluster-ready", "cluster", "")],
                      shown=False)
    display.close("cluster-ready", ["cluster up"], said.append)
    assert said == []
    display.close("ipython", ["ipython up"], said.append)
    assert said == ["ipython up"]
    display.close("cluster-ready", ["said again"], said.append)  # a second call's line: already waiting
    display.close("jupyter", ["lab up"], said.append)
    assert said == ["ipython up", "lab up", "cluster up"]
    display.close("jupyter", ["again"], said.append)
    assert said == ["ipython up", "lab up", "cluster up"]


def test_a_jupyterlab_on_a_unix_socket_is_said_with_its_socket_and_the_forward_not_an_unopenable_url() -> None:
    from portal_tasks.parts import jupyter as jupyter_step

    on_socket = dict(LAB, port=None, socket="/h/.portal/hosts/m/jupyter/a/jupyter.sock",
                     url="http+unix://%2Fh%2F.portal%2Fhosts%2Fm%2Fjupyter%2Fa%2Fjupyter.sock/lab?token=t0k")
    said = jupyter_step.where(on_socket)  # type: ignore[arg-type]
    assert said == (", on its Unix socket /h/.portal/hosts/m/jupyter/a/jupyter.sock "
                    "(`portal forward` makes a browser URL of it)")
    assert "t0k" not in said and "http+unix" not in said
    assert jupyter_step.where(LAB) == f": {LAB['url']}"  # type: ignore[arg-type]
