"""The host-side port plan on this machine: block claims in a sticky dir, env slots, squatted ports moved."""

from __future__ import annotations

import os
import stat

import pytest

from portal_tasks import config, plan
from portal_tasks.remote import ports


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
    ports.claim_dir(str(other))
    (other / "block-34").write_text("4242\n")
    os.chown(other / "block-34", 4242, 4242)
    got = ports.ensure_block({}, payload, notes, str(other))
    assert got["index"] == 35 and "claimed by another user" in notes[0]


def test_env_slots_and_squatted_port_moves(monkeypatch, payload):
    block = {"index": 34, "start": 23400, "end": 23499}
    data: dict = {"block": block}
    a = ports.ensure_env(data, payload, "a", "a", block)
    b = ports.ensure_env(data, payload, "b", "/opt/b", block)
    assert (a["slot"], b["slot"]) == (0, 1) and b["scheduler_port"] == 23420
    squat = {"addr": "127.0.0.1", "port": 23400, "uid": os.getuid() + 1, "pid": None, "cmdline": []}
    monkeypatch.setattr(ports, "listeners", lambda: [squat])
    notes: list[str] = []
    ports.check_ports(data, a, "a", block, ["scheduler_port", "dashboard_port"], [], notes)
    assert a["scheduler_port"] not in ports.used_ports(data["envs"], skip="a") | {23400}
    assert block["start"] <= a["scheduler_port"] <= block["end"]
    assert "held by another user" in notes[0] and str(a["scheduler_port"]) in notes[0]
