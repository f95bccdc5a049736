"""The port plan and memory budget as data."""

from __future__ import annotations

import pytest

from portal_tasks import config, plan
from portal_tasks.errors import UsageError

GiB = 1024**3


@pytest.fixture
def settings() -> config.Settings:
    return config.resolve(None, "matagorda")


def test_block_from_uid(settings: config.Settings) -> None:
    assert plan.block_index(1000, 100) == 0
    assert plan.block_index(1234, 100) == 34
    block = plan.block_for(settings, plan.block_index(1234, settings.slots))
    assert (block.start, block.end) == (23400, 23499)
    assert block.end < 32768  # below Linux's ephemeral range
    assert 23450 in block and 23500 not in block


def test_block_base_configurable_per_host() -> None:
    s = config.resolve({"hosts": {"matagorda": {"port_base": 10000, "block_size": 60, "slots": 10}}}, "matagorda")
    assert plan.block_for(s, plan.block_index(1003, s.slots)) == plan.Block(3, 10180, 10239)
    assert plan.slots_per_block(60) == 2 and plan.slots_per_block(59) == 1


def test_env_slots_stay_inside_block(settings: config.Settings) -> None:
    block = plan.block_for(settings, 7)
    seen: set[int] = set()
    for slot in range(plan.slots_per_block(settings.block_size)):
        ports = plan.env_ports(block.start, slot)
        every = ports.all_ports()
        assert all(p in block for p in every)
        assert not seen & set(every), "slots overlap"
        seen |= set(every)
    first = plan.env_ports(block.start, 0)
    assert (first.scheduler_port, first.dashboard_port, first.jupyter_port) == (20700, 20701, 20702)
    for lo, hi in (first.worker_ports, first.nanny_ports, first.http_ports):  # each worker: worker, nanny, HTTP
        assert hi - lo + 1 == plan.MAX_WORKERS == 8
    assert len(set(first.all_ports())) == 3 + 3 * plan.MAX_WORKERS <= plan.SLOT_SIZE
    assert plan.EnvPorts.from_dict(first.as_dict()) == first


def test_next_free_skips_taken_and_wraps() -> None:
    block = plan.Block(0, 20000, 20009)
    assert plan.next_free(20003, block, set()) == 20003
    assert plan.next_free(20003, block, {20003, 20004}) == 20005
    assert plan.next_free(20009, block, {20009}) == 20000
    assert plan.next_free(20000, block, set(range(20000, 20010))) is None


def test_plan_payload_matches_layout(settings: config.Settings) -> None:
    payload = plan.plan_payload(settings, 1234)
    assert payload["first"] == 34 and payload["base"] == 20000 and payload["slot_size"] == plan.SLOT_SIZE
    assert payload["slots_per_block"] == 3 and payload["layout"]["http_ports"] == [20, 27]


@pytest.mark.parametrize("text, expected", [
    ("16GiB", ("bytes", 16 * GiB)), ("512MiB", ("bytes", 512 * 1024**2)), ("2GB", ("bytes", 2e9)),
    ("1.5 GiB", ("bytes", 1.5 * GiB)), ("25%", ("share", 0.25)), ("4096000000", ("bytes", 4096000000)),
])
def test_parse_memory(text: str, expected: tuple[str, float]) -> None:
    assert plan.parse_memory(text) == expected


@pytest.mark.parametrize("text", ["lots", "", "12 apples", "-4GiB", "0%", "100%", "150%", "10MiB"])
def test_parse_memory_refuses_garbage_naming_it(text: str) -> None:
    with pytest.raises(UsageError) as info:
        plan.parse_memory(text)
    assert repr(text) in info.value.line() and "\n" not in info.value.line()


def test_budget_and_split() -> None:
    host = 64 * GiB
    assert plan.memory_budget("25%", host) == 16 * GiB
    assert plan.memory_budget("4GiB", host) == 4 * GiB
    assert plan.split_memory(4 * GiB, 2) == 2 * GiB
    with pytest.raises(UsageError, match="more than 90%"):
        plan.memory_budget("64GiB", host)  # never the whole machine
    with pytest.raises(UsageError, match="unknown"):
        plan.memory_budget("25%", None)


@pytest.mark.parametrize("value", ["-3", "0", "many", "2.5", "2000"])
def test_counts_refused(value: str) -> None:
    with pytest.raises(UsageError) as info:
        plan.parse_count("workers", value, 1, plan.MAX_WORKERS)
    assert "--workers" in info.value.line() and value in info.value.line()


def test_env_key_is_tmux_safe() -> None:
    assert plan.env_key("a") == "a"
    key = plan.env_key("/opt/envs/my.env")
    assert "." not in key and ":" not in key and key != plan.env_key("/srv/envs/my.env")
