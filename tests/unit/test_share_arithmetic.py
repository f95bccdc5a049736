"""The fair share of one server: caps, what is free, the default budget, the refusal line, registrations on disk."""

from __future__ import annotations

import json
import os
import platform
import time

import pytest

from portal_tasks.remote import share
from portal_tasks.remote.common import Failure

GiB = 1024**3


def limits(**admin: str) -> dict:
    return share.caps(admin, 20 * GiB, 8)


def row(uid: int, user: str, memory: int, cores: int = 0) -> dict:
    return {"uid": uid, "user": user, "memory": memory, "cores": cores}


def test_caps_default_to_90_percent_and_four_fair_users():
    c = limits()
    assert c["memory_total"] == int(20 * GiB * 0.9) and c["memory_per_user"] == c["memory_total"]
    assert c["fair_users"] == 4 and c["cores_total"] is None and c["cores_per_user"] is None


def test_admin_caps_as_sizes_shares_and_counts():
    c = limits(memory_total="50%", memory_per_user="4GiB", cores_total="6", cores_per_user="10", fair_users="3")
    assert c["memory_total"] == 10 * GiB and c["memory_per_user"] == 4 * GiB
    assert c["cores_total"] == 6 and c["cores_per_user"] == 6  # never above the total
    assert limits(memory_per_user="30GiB")["memory_per_user"] == limits()["memory_total"]


@pytest.mark.parametrize("name, value", [("memory_total", "lots"), ("memory_total", "150%"), ("cores_total", "0"),
                                         ("fair_users", "-1")])
def test_a_broken_admin_setting_is_one_line_naming_it(name, value):
    with pytest.raises(Failure) as info:
        limits(**{name: value})
    assert name in info.value.message and "/etc/portal/portal.yaml" in info.value.message and info.value.kind == "ConfigError"


def test_per_user_rows_add_up_clusters_and_clamp_to_the_user_cap():
    c = limits(memory_per_user="4GiB")
    held = [{"uid": 1, "user": "alice", "memory": 3 * GiB, "cores": 2}, {"uid": 1, "user": "alice", "memory": 3 * GiB, "cores": 2},
            {"uid": 2, "user": "bob", "memory": GiB, "cores": 4}]
    rows = share.per_user(held, c)
    assert rows == [row(1, "alice", 4 * GiB, 4) | {"clusters": 2}, row(2, "bob", GiB, 4) | {"clusters": 1}]


def test_three_users_with_defaults_stay_within_the_total_cap():
    c = limits(memory_total="12GiB")  # fair: 12 GiB / 4 users
    rows: list[dict] = []
    got = []
    for uid, name in ((1, "alice"), (2, "bob"), (3, "carol")):
        budget = share.fair_default(c, rows, uid)
        assert share.refusal(c, rows, uid, budget, 4) is None
        rows.append(row(uid, name, budget))
        got.append(budget)
    assert got == [3 * GiB] * 3 and sum(got) <= 12 * GiB


def test_the_default_grows_the_group_past_fair_users_and_takes_only_what_is_free():
    c = limits(memory_total="12GiB", fair_users="2")
    rows = [row(1, "alice", 6 * GiB), row(2, "bob", 5 * GiB)]
    assert share.fair_default(c, rows, 3) == GiB  # a third of 12 is 4, but only 1 GiB is free
    assert share.fair_default(c, [row(3, "carol", 6 * GiB)], 3) == 0  # carol already holds her fair share


def test_an_oversize_request_names_who_holds_how_much():
    c = limits(memory_total="12GiB")
    rows = [row(1, "alice", 3 * GiB), row(2, "bob", 5 * GiB)]
    line = share.refusal(c, rows, 3, 6 * GiB, 4)
    assert line == ("--memory 6 GiB is more than is free: portal clusters may use 12 GiB together on this server; "
                    "held now: bob 5 GiB, alice 3 GiB (4 GiB free).")
    assert share.refusal(c, rows, 3, 4 * GiB, 4) is None
    assert "\n" not in line


def test_per_user_cap_and_cores_caps_refuse_too():
    c = limits(memory_per_user="4GiB", cores_total="8")
    assert "memory_per_user" in share.refusal(c, [row(1, "alice", 3 * GiB)], 1, 2 * GiB, 1)
    line = share.refusal(c, [row(2, "bob", GiB, 6)], 1, GiB, 4)
    assert line.startswith("4 cores (workers x threads) are more than are free: 2 of the cores cap") and "bob 6 cores" in line


# -- on disk, in a directory standing in for the claims directory -----------------------------------

@pytest.fixture
def registry(tmp_path, monkeypatch):
    claims = tmp_path / "claims"
    monkeypatch.setattr(share, "limits_here", lambda: limits(memory_total="12GiB"))
    return {"plan": {"claims_dir": str(claims)}, "dir": claims}


def test_register_bind_release(registry):
    plan = registry["plan"]
    got = share.register(plan, "a", None, 4, 2)
    assert got["memory"] == 3 * GiB and got["trusted"] and got["notes"] == []
    files = [p for p in registry["dir"].iterdir() if p.name.startswith("share-")]
    assert len(files) == 1 and oct(files[0].stat().st_mode & 0o777) == "0o644"
    assert "a" not in json.loads(files[0].read_text()).values()  # the env is not named for co-users
    assert share.bind(plan, "a", [os.getpid()])
    record = json.loads(files[0].read_text())
    assert record["procs"] == [[os.getpid(), share.start_time(os.getpid())]]
    assert share.report({"plan": plan})["held_memory"] == 3 * GiB
    with pytest.raises(Failure) as info:
        share.register(plan, "b", 10 * GiB, 4, 2)
    assert "held now: you 3 GiB (9 GiB free)" in info.value.message
    share.release(plan, "a")
    assert not [p for p in registry["dir"].iterdir() if p.name.startswith("share-")]
    assert share.register(plan, "b", 10 * GiB, 4, 2)["memory"] == 10 * GiB


def test_a_registration_whose_scheduler_is_gone_or_pending_too_long_does_not_count(registry):
    machine = platform.node()
    now = time.time()
    dead = {"machine": machine, "procs": [[os.getpid(), 1]], "memory": GiB}  # our pid, but another start time
    assert not share.counts(dead, os.getuid(), now, machine)
    alive = dict(dead, procs=[[os.getpid(), share.start_time(os.getpid())]])
    assert share.counts(alive, os.getuid(), now, machine)
    assert not share.counts(alive, os.getuid() + 1, now, machine)  # the pid is not the file owner's
    assert not share.counts(alive, os.getuid(), now, "elsewhere")
    assert share.counts({"machine": machine, "procs": [], "pending_until": now + 5}, os.getuid(), now, machine)
    assert not share.counts({"machine": machine, "procs": [], "pending_until": now - 5}, os.getuid(), now, machine)


def test_an_untrusted_claims_dir_counts_only_your_own(tmp_path, monkeypatch):
    monkeypatch.setattr(share, "limits_here", lambda: limits(memory_total="12GiB"))
    monkeypatch.setattr(share, "state_path", lambda *parts: str(tmp_path.joinpath("state", *parts)))
    (tmp_path / "state" / "share").mkdir(parents=True)
    bad = tmp_path / "notsticky"
    bad.mkdir(mode=0o755)
    os.chmod(bad, 0o755)
    got = share.register({"claims_dir": str(bad)}, "a", None, 4, 1)
    assert not got["trusted"] and "read from their running Dask workers" in got["notes"][0]
    assert str(bad) not in got["notes"][0]  # the claims directory's own note names it, once
    assert [p.name for p in (tmp_path / "state" / "share").iterdir() if p.name.startswith("share-")]


@pytest.mark.parametrize("argv, want", [
    (["/e/bin/python", "/e/bin/dask", "worker", "--nworkers", "2", "--nthreads", "3", "--memory-limit", "1073741824"],
     (2 * GiB, 6)),
    (["/e/bin/python3.11", "/e/bin/dask-worker", "tls://x:1", "--memory-limit=2GiB"], (2 * GiB, 1)),
    (["/e/bin/python", "/e/bin/dask", "worker", "--memory-limit", "auto"], None),
    (["/e/bin/python", "/e/bin/dask", "scheduler", "--memory-limit", "4GiB"], None),
    (["python", "-c", "from multiprocessing.spawn import spawn_main; spawn_main()"], None),
    (["vim", "worker", "--memory-limit", "4GiB"], None),
    # portal's own cluster: the scheduler and a nanny per worker in one `dask spec`
    (["/e/bin/python", "/e/bin/dask", "spec", "--spec", json.dumps(
        {"scheduler": {"cls": "distributed.Scheduler", "opts": {"port": 1}},
         "a-0": {"cls": "distributed.Nanny", "opts": {"memory_limit": 1073741824, "nthreads": 3}},
         "a-1": {"cls": "distributed.Nanny", "opts": {"memory_limit": "1GiB", "nthreads": 3}}})], (2 * GiB, 6)),
    (["/e/bin/python", "/e/bin/dask", "spec", "--spec", json.dumps(
        {"scheduler": {"cls": "distributed.Scheduler", "opts": {"port": 1}}})], None),  # --workers 0
    (["/e/bin/python", "/e/bin/dask", "spec", "--spec", json.dumps(
        {"a-0": {"cls": "distributed.Nanny", "opts": {"memory_limit": "auto"}}})], None),
    (["/e/bin/python", "/e/bin/dask", "spec", "--spec", "{not json"], None),
    (["/e/bin/python", "/e/bin/dask", "spec", "--spec-file", "/h/spec.yaml"], None),
])
def test_a_dask_worker_command_line_says_its_budget(argv, want):
    assert share.worker_budget(argv) == want


def test_the_tmp_a_process_sees_tells_servers_apart():
    root_only = "22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw\n30 22 0:5 / /proc rw - proc proc rw\n"
    own_tmp = root_only + "41 22 0:57 / /tmp rw,nosuid - tmpfs portal-matagorda-tmp rw\n"
    assert share.tmp_mount(root_only) == ("8:1", "/")
    assert share.tmp_mount(own_tmp) == ("0:57", "/")
    assert share.tmp_mount(own_tmp) != share.tmp_mount(own_tmp.replace("0:57", "0:58"))
