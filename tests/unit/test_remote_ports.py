"""The host-side port plan on this machine: block claims in a sticky dir, env slots, squatted ports moved."""

from __future__ import annotations

import json
import os
import stat

import pytest

from portal_tasks import config, plan
from portal_tasks.remote import common, hostconfig, ports


@pytest.fixture
def payload() -> dict:
    return plan.plan_payload(config.resolve(None, "h"), 1234)


def test_block_claimed_once_and_foreign_claim_skipped(tmp_path, payload):
    claims = str(tmp_path / "claims")
    notes: list[str] = []
    data: dict = {}
    block = ports.ensure_block(data, payload, notes, claims)
    assert block == {"index": 34, "start": 23400, "end": 23499} and not notes
    assert stat.S_IMODE(os.stat(claims).st_mode) == 0o1777
    assert ports.ensure_block(data, payload, notes, claims) == block  # still ours
    if os.getuid() != 0:
        pytest.skip("a claim by another uid needs root to fake")
    other = tmp_path / "claims2"
    other.mkdir(mode=0o1777)
    os.chmod(other, 0o1777)
    (other / "block-34").write_text("4242\n")
    os.chown(other / "block-34", 4242, 4242)
    got = ports.ensure_block({}, payload, notes, str(other))
    assert got["index"] == 35 and "claimed by another user" in notes[0]


def test_env_slots_and_squatted_port_moves(monkeypatch, payload):
    block = {"index": 34, "start": 23400, "end": 23499}
    data: dict = {"block": block}
    a = ports.ensure_env(data, payload, "a", "a", block)
    b = ports.ensure_env(data, payload, "b", "/opt/b", block)
    assert (a["slot"], b["slot"]) == (0, 1) and b["scheduler_port"] == 23430 and b["http_ports"] == [23450, 23457]
    squat = {"addr": "127.0.0.1", "port": 23400, "uid": os.getuid() + 1, "pid": None, "cmdline": []}
    monkeypatch.setattr(ports, "listeners", lambda: [squat])
    notes: list[str] = []
    ports.check_ports(data, a, "a", block, ["scheduler_port", "dashboard_port"], [], notes)
    assert a["scheduler_port"] not in ports.used_ports(data["envs"], skip="a") | {23400}
    assert block["start"] <= a["scheduler_port"] <= block["end"]
    assert "held by another user" in notes[0] and str(a["scheduler_port"]) in notes[0]


def _hostile(tmp_path, kind):
    """A claims directory as a co-user (uid 4242) or a mistake could leave it; None: cannot be made here."""
    path = tmp_path / "claims"
    if kind == "co-user 1755":
        path.mkdir()
        os.chmod(path, 0o1755)
        os.chown(path, 4242, 4242)
    elif kind == "co-user 1777":
        path.mkdir()
        os.chmod(path, 0o1777)
        os.chown(path, 4242, 4242)
    elif kind == "regular file":
        path.write_text("not a directory\n")
    elif kind == "symlink":
        (tmp_path / "elsewhere").mkdir(mode=0o1777)
        path.symlink_to(tmp_path / "elsewhere")
    elif kind == "not sticky":
        path.mkdir()
        os.chmod(path, 0o777)
    return str(path)


@pytest.mark.parametrize("kind, why", [
    ("co-user 1755", "belongs to uid 4242"), ("co-user 1777", "belongs to uid 4242"),
    ("regular file", "is not a directory"), ("symlink", "is a symbolic link"), ("not sticky", "is not sticky"),
])
def test_an_untrusted_claims_dir_is_one_note_and_ports_by_owner_checks(tmp_path, payload, kind, why):
    """With no root-owned sticky place either (tests/unit/test_block_claims.py has the place)."""
    if kind.startswith("co-user") and os.getuid() != 0:
        pytest.skip("a directory of another uid needs root to make")
    claims = _hostile(tmp_path, kind)
    before = sorted(os.listdir(tmp_path))
    notes: list[str] = []
    data: dict = {}
    block = ports.ensure_block(data, payload, notes, claims, places=())
    assert block == {"index": 34, "start": 23400, "end": 23499} == data["block"]  # the uid's first choice
    assert len(notes) == 1 and claims in notes[0] and why in notes[0] and "\n" not in notes[0], notes
    assert sorted(os.listdir(tmp_path)) == before and not os.path.exists(tmp_path / "elsewhere" / "block-34")
    recorded = {"block": {"index": 40, "start": 24000, "end": 24099}, "envs": {"a": {"slot": 0}}}
    assert ports.ensure_block(recorded, payload, [], claims, places=())["index"] == 40 and recorded["envs"]  # kept


def test_own_and_root_sticky_claims_dirs_are_trusted(tmp_path, payload):
    made = str(tmp_path / "made")
    fd, problem = ports.open_claims(made)
    assert problem is None and stat.S_IMODE(os.fstat(fd).st_mode) == 0o1777
    os.close(fd)
    notes: list[str] = []
    assert ports.ensure_block({}, payload, notes, made)["index"] == 34 and not notes
    assert os.stat(os.path.join(made, "block-34")).st_uid == os.getuid()


def test_the_claims_dir_comes_from_the_user_then_the_admin_then_the_default(tmp_path, payload):
    admin = str(tmp_path / "portal.yaml")
    with open(admin, "w") as fh:
        fh.write("# set by the admins\nclaims_dir: '/srv/portal-ports'  # root-made, 1777\nother: x\n")
    assert ports.claims_path(dict(payload, claims_dir="/var/tmp/mine"), admin) == "/var/tmp/mine"
    assert ports.claims_path(payload, admin) == "/srv/portal-ports"
    assert ports.claims_path(payload, str(tmp_path / "missing.yaml")) == "/tmp/portal-ports"  # share registrations
    assert ports.configured_claims(payload, str(tmp_path / "missing.yaml")) is None  # blocks: /var/tmp, /tmp


def test_host_config_reads_flat_lines_only():
    assert hostconfig.parse_host_config("a: 1\nclaims_dir: \"/x y\"\n  # c\nnot a line\n") == {"claims_dir": "/x y"}
    assert hostconfig.parse_host_config("hosts:\n  h:\n    claims_dir: /nested\n") == {}
    assert hostconfig.parse_host_config("") == {}


def test_state_files_are_replaced_whole(tmp_path):
    path = tmp_path / "ports.json"
    common.write_json(str(path), {"block": 1})
    common.write_json(str(path), {"block": 2})
    assert json.loads(path.read_text()) == {"block": 2} and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert os.listdir(tmp_path) == ["ports.json"]  # no temporary file left
