"""Every listening socket of a cluster in the user's block (host side, on this machine): slots with room for
the workers' HTTP servers, records of the earlier 20-port layout planned again, HTTP ports chosen around
others, and a listener Dask moved outside the block found and named."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import pytest

from portal_tasks import config, plan
from portal_tasks.remote import cluster, common, hostpaths, ports, slots

BLOCK = {"index": 34, "start": 23400, "end": 23499}


@pytest.fixture
def payload() -> dict:
    return plan.plan_payload(config.resolve(None, "h"), 1234)


def old_record(slot: int, env: str) -> dict:
    """An env as the earlier layout recorded it: 20-port slots, workers 4-11, nannies 12-19, no HTTP range."""
    base = BLOCK["start"] + 20 * slot
    return {"scheduler_port": base, "dashboard_port": base + 1, "jupyter_port": base + 2,
            "worker_ports": [base + 4, base + 11], "nanny_ports": [base + 12, base + 19], "env": env, "slot": slot}


def listener(port: int, pid: int | None = None, uid: int | None = None) -> dict:
    return {"addr": "127.0.0.1", "port": port, "uid": os.getuid() if uid is None else uid, "inode": port,
            "pid": pid, "pids": [pid] if pid else [], "cmdline": ["dask"] if pid else []}


def test_slots_hold_each_workers_three_ports_and_do_not_overlap():
    seen: set[int] = set()
    for slot in range(slots.slots_per_block(100)):
        ports_ = slots.slot_ports(BLOCK["start"], slot)
        every = slots.recorded_ports(ports_)
        assert len(every) == 3 + 3 * slots.MAX_WORKERS and not every & seen
        assert all(BLOCK["start"] <= p <= BLOCK["end"] for p in every)
        seen |= every
        assert slots.is_current(ports_)
    assert slots.slots_per_block(100) == 3 and not slots.is_current(old_record(0, "a"))


def test_per_worker_ports_and_pid_files():
    ports_ = slots.slot_ports(BLOCK["start"], 0)
    assert slots.per_worker(ports_, 0) == {"worker_port": [23404, 23411], "nanny_port": [23412, 23419],
                                            "http_port": 23420}
    assert slots.per_worker(ports_, 7)["http_port"] == 23427
    assert slots.per_worker(dict(ports_, http=[23421, 23425]), 1)["http_port"] == 23425
    assert slots.per_worker(old_record(0, "a"), 1)["http_port"] == 0  # no HTTP range: the kernel picks (as before)
    assert hostpaths.worker_pid_file("/s/clusters/a.workers.pid", 3) == "/s/clusters/a.workers-3.pid"


def test_new_slots_keep_clear_of_envs_the_earlier_layout_recorded():
    envs = {"a": old_record(0, "a"), "b": old_record(1, "b")}  # ports 23400-23439
    assert slots.free_slots(BLOCK["start"], 3, envs) == [2]  # new slot 1 (23430-23459) overlaps b's old slot
    envs["c"] = dict(slots.slot_ports(BLOCK["start"], 2), slot=2)
    assert slots.free_slots(BLOCK["start"], 3, envs) == []


def test_an_env_of_the_earlier_layout_is_kept_until_its_cluster_starts_then_planned_again(payload):
    data = {"block": BLOCK, "envs": {"a": old_record(0, "a"), "b": old_record(1, "b")}}
    kept = ports.ensure_env(data, payload, "a", "a", BLOCK)  # e.g. Jupyter asks: the record works as it is
    assert kept == old_record(0, "a")
    notes: list[str] = []
    moved = ports.ensure_env(data, payload, "a", "a", BLOCK, replan=True, notes=notes)
    assert moved["slot"] == 2 and moved["http_ports"] == [23480, 23487] and slots.is_current(moved)
    assert data["envs"]["a"] is moved and "earlier portal" in notes[0] and "slot 2" in notes[0]
    assert not slots.recorded_ports(moved) & slots.recorded_ports(data["envs"]["b"])
    notes.clear()
    assert ports.ensure_env(data, payload, "a", "a", BLOCK, replan=True, notes=notes) is moved and not notes
    full = {"block": BLOCK, "envs": {n: old_record(i, n) for i, n in enumerate("abcde")}}
    assert ports.ensure_env(full, payload, "a", "a", BLOCK, replan=True, notes=notes) == old_record(0, "a")
    assert "keeps the ports an earlier portal planned" in notes[0] and "outside the block" in notes[0]
    with pytest.raises(common.Failure) as info:
        ports.ensure_env(full, payload, "f", "f", BLOCK, replan=True, notes=notes)
    assert "is full" in info.value.message
    alone = {"block": BLOCK, "envs": {"a": old_record(0, "a")}}  # its slot 0 is this layout's slot 0, plus HTTP
    again = ports.ensure_env(alone, payload, "a", "a", BLOCK, replan=True, notes=[])
    assert {k: again[k] for k in ("scheduler_port", "worker_ports", "nanny_ports")} == \
           {k: old_record(0, "a")[k] for k in ("scheduler_port", "worker_ports", "nanny_ports")}


def test_a_port_plan_of_the_earlier_layout_is_read_not_damaged(home, payload, monkeypatch):
    monkeypatch.setattr(ports, "listeners", list)
    path = Path(common.state_path("ports.json"))
    path.write_text(json.dumps({"block": BLOCK, "envs": {"a": old_record(0, "a"), "b": old_record(1, "b")}}))
    monkeypatch.setattr(ports, "ensure_block", lambda data, plan_, notes, claims=None: BLOCK)
    report = ports.report({"plan": payload, "key": "a"})
    assert report["envs"]["a"] == old_record(0, "a") and report["would_be"]["scheduler_port"] == 23460
    got = ports.assign({"plan": payload, "key": "a", "env": "a", "replan": True})
    assert got["ports"]["scheduler_port"] == 23460 and "earlier portal" in got["notes"][0]
    assert json.loads(path.read_text())["envs"]["b"] == old_record(1, "b")
    assert ports.recorded_block() == BLOCK
    path.write_text(json.dumps({"block": BLOCK, "envs": {"a": dict(old_record(0, "a"), http_ports=[1])}}))
    with pytest.raises(common.Failure) as info:
        ports.report({"plan": payload})
    assert "damaged http_ports" in info.value.message


def test_http_ports_are_chosen_around_ports_others_hold():
    rec = slots.slot_ports(BLOCK["start"], 0)
    found = [listener(23420, uid=os.getuid() + 1), listener(23422, pid=99)]
    assert ports.choose_http(rec, found) == [23421, 23423, 23424, 23425, 23426, 23427]
    assert ports.choose_http(old_record(0, "a"), found) == []


def test_a_listener_of_the_cluster_outside_the_block_is_found(monkeypatch):
    mark = f"{hostpaths.CLUSTER_MARK}={hostpaths.cluster_mark('a', platform.node())}".encode()
    environ = {10: [mark], 11: [mark], 12: [b"OTHER=1"]}
    monkeypatch.setattr(cluster, "environ", lambda pid: environ.get(pid, []))
    found = [listener(23420, 11), listener(41234, 11), listener(45000, 12), listener(46000, 10, os.getuid() + 1)]
    outside = cluster.outside_block("a", BLOCK, found)
    assert [e["port"] for e in outside] == [41234]  # not another program of the user's, not another user's
    assert cluster.outside_block("a", None, found) == []
    note = cluster.moved_http_note("a", [23420, 23421], outside, [], found + [listener(23421, uid=4242)], BLOCK)
    assert "127.0.0.1:41234" in note and "23400-23499" in note and "23421 by" in note and "down --env a" in note
    assert cluster.moved_http_note("a", [23420], outside, [11], found, BLOCK) is None  # the scheduler's: its own note


def test_a_running_cluster_says_which_of_its_listeners_are_outside():
    old = {"env": "a", "outside_block": ["127.0.0.1:41234"]}
    assert "earlier portal" in cluster.outside_note(old) and "41234" in cluster.outside_note(old)
    assert "taken by others" in cluster.outside_note(dict(old, http_ports=[23420, 23427]))
    assert cluster.outside_note({"env": "a", "outside_block": []}) is None


def test_workers_pids_of_this_and_the_earlier_record():
    assert cluster.workers_pids({"workers_pid": 5}) == [5]
    assert cluster.workers_pids({"workers_pid": 5, "workers_pids": [5, 6]}) == [5, 6]
    assert cluster.workers_pids({}) == []
    assert cluster.in_ranges(23425, slots.slot_ports(BLOCK["start"], 0))
    paths = hostpaths.cluster_paths("/s", "a")
    assert hostpaths.worker_pid_file(paths["workers_pid_file"], 0) in cluster.worker_pid_files(paths)


def test_the_start_counts_a_worker_whose_http_server_dask_moved_and_says_so(home, monkeypatch):
    """A co-user took a worker's HTTP port between planning and start: Dask serves it on a kernel port
    (with only a warning in the window); the wait counts that worker, records and names the stray port."""
    rec = dict(slots.slot_ports(BLOCK["start"], 0), http=[23420, 23421])
    paths = hostpaths.cluster_paths(common.server_path(), "a")
    pids = {paths["scheduler_pid_file"]: 10}  # the scheduler and the nannies: one `dask spec`
    mark = f"{hostpaths.CLUSTER_MARK}={hostpaths.cluster_mark('a', platform.node())}".encode()
    found = [listener(23400, 10), listener(23401, 10), listener(23404, 11), listener(23405, 12),
             listener(23412, 13), listener(23413, 14), listener(23420, 11), listener(41234, 12),
             listener(23421, uid=4242)]
    monkeypatch.setattr(cluster, "read_pid", lambda path: pids.get(path, 0))
    monkeypatch.setattr(cluster, "own", lambda pid: True)
    monkeypatch.setattr(cluster, "handshake", lambda *a, **k: True)
    monkeypatch.setattr(cluster, "_all_listen", lambda rec, n: True)  # the cheap look: every port listens
    monkeypatch.setattr(cluster, "_scheduler_address", lambda path: "tls://127.0.0.1:23400")
    monkeypatch.setattr(cluster, "served_dashboard", lambda path: 23401)
    monkeypatch.setattr(cluster, "listeners", lambda: found)
    monkeypatch.setattr(cluster, "environ", lambda pid: [mark] if pid in (10, 11, 12, 13, 14) else [])
    monkeypatch.setattr(cluster.share, "bind", lambda *a: True)
    monkeypatch.setattr(common, "user_name", lambda uid: f"bob (uid {uid})")
    state = cluster.wait({"key": "a", "paths": paths, "ports": rec, "workers": 2, "seconds": 2, "block": BLOCK,
                          "record": {"key": "a", "env": "a", "workers": 2, "threads": 1, "memory_limit": 1,
                                     "memory_budget": 2, "paths": paths}})
    assert state["workers_pids"] == [10] and state["workers_pid"] == 10 and state["http"] == [23420, 23421]
    assert state["http_ports"] == [23420, 23427] and state["block"] == BLOCK
    assert state["outside_block"] == ["127.0.0.1:41234"]
    assert len(state["notes"]) == 1 and "127.0.0.1:41234" in state["notes"][0] and "23421 by" in state["notes"][0]
    assert "taken by others" in cluster.outside_note(state)


def test_the_cheap_look_needs_the_scheduler_and_every_worker_and_nanny_listening(monkeypatch):
    rec = {"scheduler_port": 23400, "worker_ports": [23410, 23419], "nanny_ports": [23420, 23429]}
    uid = os.getuid()

    def rows(*listening, owner=uid):
        return [{"local": ("127.0.0.1", port), "remote": ("0.0.0.0", 0), "state": common.LISTEN, "uid": owner,
                 "inode": str(port)} for port in listening]

    for listening, expected in (((23400, 23410, 23411, 23420, 23421), True), ((23400, 23410, 23420, 23421), False),
                                ((23410, 23411, 23420, 23421), False)):
        monkeypatch.setattr(cluster, "listening_rows", lambda listening=listening: rows(*listening))
        assert cluster._all_listen(rec, 2) is expected, listening
    monkeypatch.setattr(cluster, "listening_rows", lambda: rows(23400, 23410, 23411, 23420, 23421, owner=uid + 1))
    assert cluster._all_listen(rec, 2) is False  # another user's listeners are not ours
