"""Host-side state on this machine: one directory per server, what an earlier layout left, damaged files."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import pytest

from portal_tasks.remote import cluster, common, hostpaths, ports, slots


def test_each_server_has_its_own_directory_and_shares_tls():
    a, b = hostpaths.server_dir("/home/u/", "matagorda"), hostpaths.server_dir("/home/u", "matagorda2")
    assert a == "/home/u/.portal/hosts/matagorda" and b == "/home/u/.portal/hosts/matagorda2"
    assert hostpaths.machine("../evil host") == "_evil_host" and hostpaths.machine("") == "unnamed"
    assert hostpaths.tls_dir("/home/u") == "/home/u/.portal/tls"
    paths = hostpaths.cluster_paths(a, "a-c282")
    assert all(p.startswith(a + "/") for p in paths.values()) and paths["scratch"] == a + "/scratch/a-c282"
    assert hostpaths.cluster_mark("a", "matagorda") != hostpaths.cluster_mark("a", "matagorda2")


def test_an_earlier_layout_is_adopted_once_with_this_machines_records_only(home):
    legacy = home / ".portal"
    plan = {"block": {"index": 3, "start": 20300, "end": 20399}, "envs": {}}
    (legacy / "ports.json").write_text(json.dumps(plan))
    (legacy / "clusters").mkdir()
    mine = {"key": "a", "hostname": platform.node(), "scheduler_pid": 1}
    (legacy / "clusters" / "a.json").write_text(json.dumps(mine))
    (legacy / "clusters" / "b.json").write_text(json.dumps({"key": "b", "hostname": "another-server"}))
    (legacy / "jupyter" / "j").mkdir(parents=True)
    (legacy / "jupyter" / "j" / "state.json").write_text(json.dumps({"port": 1, "socket": None}))  # answers nowhere
    server = Path(common.server_path())
    assert json.loads((server / "ports.json").read_text()) == plan
    assert json.loads((server / "clusters" / "a.json").read_text()) == mine
    assert not (legacy / "clusters" / "a.json").exists()  # moved: one record, in its server's directory
    assert (legacy / "clusters" / "b.json").exists() and not (server / "clusters" / "b.json").exists()
    assert not (server / "jupyter").exists() and (legacy / "ports.json").exists()  # other servers adopt it too
    assert oct(server.stat().st_mode & 0o777) == "0o700"
    (server / "ports.json").unlink()
    common.server_path()  # adopted once: the directory exists now, nothing comes back
    assert not (server / "ports.json").exists()


@pytest.mark.parametrize("content, problem", [
    ("", "is empty"), ('{"block": {"index": 3, "sta', "is not valid JSON"), ("nonsense", "is not valid JSON"),
    ("[1, 2]", "holds a JSON list"), ('{"block": 7}', "block that is not"),
    ('{"envs": {"a": {"slot": 0}}}', "env a without its ports"),
])
def test_a_damaged_port_plan_is_one_line_naming_it_and_replans_nothing(home, content, problem):
    path = Path(common.state_path("ports.json"))
    path.write_text(content)
    plan = {"base": 20000, "block_size": 100, "slots": 100, "first": 3, "slot_size": 20, "slots_per_block": 5,
            "layout": slots.LAYOUT, "claims_dir": str(home / "claims")}
    with pytest.raises(common.Failure) as info:
        ports.assign({"plan": plan, "key": "a", "env": "a"})
    assert info.value.kind == "StateError" and str(path) in info.value.message and problem in info.value.message
    assert "\n" not in info.value.message + info.value.hint and "mv " in info.value.hint
    assert path.read_text() == content  # left for the user to look at
    with pytest.raises(common.Failure):
        ports.report({"plan": plan})


@pytest.mark.parametrize("content, problem", [
    ("", "is empty"), ('{"key": "a", "sched', "is not valid JSON"), ('"a"', "holds a JSON str"),
    ('{"key": "a"}', "lacks env"),
])
def test_a_damaged_cluster_record_is_read_as_what_is_wrong(home, content, problem):
    Path(common.state_path("clusters", "a.json")).write_text(content)
    state, found = cluster.read_record("a")
    assert state is None and problem in found
    assert cluster.describe({}) == []  # listed by nobody; prepare and stop say it


def test_state_files_outlive_a_crash_midway(home, monkeypatch):
    path = common.state_path("ports.json")
    common.write_json(path, {"envs": {}})
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError(28, "No space left on device")))
    with pytest.raises(OSError):
        common.write_json(path, {"envs": {"a": {}}})
    assert json.loads(Path(path).read_text()) == {"envs": {}}  # the old file, whole
    assert sorted(os.listdir(os.path.dirname(path))) == ["ports.json"]  # no temporary file left
