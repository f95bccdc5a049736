"""`--workers 0`: the scheduler alone on the host (a login node), its workers batch jobs or other servers'.

Accepted only with --jobs or --workers-on (else one line); the cluster window then types the scheduler alone,
the host registers no worker memory, and what `up`, `status` and the page say names where the workers are.
"""

from __future__ import annotations

import shlex
from typing import Any

import pytest

from portal_tasks import config, daskcmd, plan, tls
from portal_tasks.errors import UsageError
from portal_tasks.parts import cluster
from portal_tasks.remote import hostpaths
from portal_tasks.request import ClusterAsk, ClusterOptions

HOME = "/home/alice"


class _Target:
    host = "login"

    def __init__(self, **settings: Any) -> None:
        self.settings = config.resolve(settings, "login")


def _validate(ask: ClusterAsk, **settings: Any) -> ClusterOptions:
    return cluster.validate(_Target(**settings), ask)  # type: ignore[arg-type]


@pytest.mark.parametrize("ask, settings, named", [
    (ClusterAsk(workers=0), {}, "--workers 0"),
    (ClusterAsk(), {"workers": 0}, "workers: 0 (portal.yaml)"),
    (ClusterAsk(workers="0"), {"scheduler_interface": "ib0"}, "--workers 0"),  # type: ignore[arg-type]
])
def test_no_workers_anywhere_is_one_line_naming_what_brings_them(ask: ClusterAsk, settings: dict[str, Any],
                                                                 named: str) -> None:
    with pytest.raises(UsageError) as info:
        _validate(ask, **settings)
    line = info.value.line()
    assert line.startswith(f"login: {named} leaves the cluster no workers") and "\n" not in line
    assert "--jobs N" in line and "--workers-on HOSTS" in line and "--workers 1 to 8" in line


def test_zero_workers_with_jobs_is_the_scheduler_alone() -> None:
    options = _validate(ClusterAsk(workers=0, jobs=2), scheduler_interface="ib0")
    assert (options.workers, options.jobs) == (0, 2)
    assert _validate(ClusterAsk(jobs=2), scheduler_interface="ib0", workers=0).workers == 0  # the setting too
    with pytest.raises(UsageError, match="--workers -1 is out of range"):
        _validate(ClusterAsk(workers=-1, jobs=2), scheduler_interface="ib0")


def test_zero_workers_here_still_gives_the_other_servers_theirs() -> None:
    """--workers N is per server; with 0 on the host, each of --workers-on runs the `workers` setting's count."""
    alone = _validate(ClusterAsk(workers=0, workers_on="n1,n2"), scheduler_interface="ib0")
    assert alone.workers == 0 and alone.for_nodes().workers == config.DEFAULTS["workers"] == 2
    assert _validate(ClusterAsk(workers=0, workers_on="n1"), scheduler_interface="ib0",
                     workers=3).for_nodes().workers == 3
    assert _validate(ClusterAsk(workers_on="n1"), scheduler_interface="ib0", workers=0).for_nodes().workers == 2
    given = _validate(ClusterAsk(workers=1, workers_on="n1"), scheduler_interface="ib0")
    assert given.for_nodes().workers == 1 == given.workers  # a count given keeps meaning "on each server"


def test_the_host_registers_no_memory_or_cores_for_a_scheduler_alone() -> None:
    options = ClusterOptions(workers=0, threads=2, memory="4GiB", jobs=2)
    asked = cluster.share_request(_Target(), options)  # type: ignore[arg-type]
    assert asked == {"memory": 0, "cores": 0, "workers": 0}
    assert plan.split_memory(0, 0) == 0 and plan.split_memory(4096, 2) == 2048


@pytest.fixture
def alone() -> daskcmd.ClusterSpec:
    server = hostpaths.server_dir(HOME, "login")
    return daskcmd.ClusterSpec(key="a", mark=hostpaths.cluster_mark("a", "login"), ports=plan.env_ports(23400, 1),
                               tls=tls.paths(HOME), paths=hostpaths.cluster_paths(server, "a"), workers=0, threads=2,
                               memory_limit=plan.split_memory(0, 0), listen="10.0.0.1")


def test_the_window_starts_the_scheduler_alone_in_the_foreground(alone: daskcmd.ClusterSpec) -> None:
    lines = daskcmd.window_lines(alone, ["conda activate a"])
    assert not [line for line in lines if " worker " in line]
    last = lines[-1]
    assert not last.endswith("&")  # its log is what the window shows
    argv = shlex.split(last)
    assert argv[argv.index("dask"):] == daskcmd.cluster_argv(alone)
    assert list(daskcmd.servers(alone)) == ["scheduler"]  # no nanny
    assert "PORTAL_CLUSTER=a@login" in argv  # marked, so `down` finds it
    assert not [a for a in argv if a.startswith(hostpaths.WORKER_HTTP_PORTS)]  # no forkserver for no workers
    with_workers = daskcmd.window_lines(daskcmd.ClusterSpec(**{**alone.__dict__, "workers": 1}), ["conda activate a"])
    assert "distributed.Nanny" in with_workers[-1]
    record = daskcmd.record(alone, "a", 0)
    assert (record["workers"], record["memory_limit"], record["memory_budget"]) == (0, 0, 0)


def _state(**extra: Any) -> Any:  # a ClusterState / ClusterEntry as the host reports it
    return {"address": "tls://10.0.0.1:23430", "dashboard_port": 23431, "workers": 0, "workers_running": 0,
            "threads": 2, "memory_limit": 0, "scheduler_pid": 4242, **extra}


def test_what_up_status_and_the_page_say_of_a_scheduler_alone() -> None:
    assert cluster.summary(_state()) == ("tls://10.0.0.1:23430, dashboard port 23431, the scheduler alone on this "
                                         "host (its workers: batch jobs; scheduler pid 4242)")
    assert "(its workers: on n1, n2;" in cluster.summary(_state(workers_on=["n1", "n2"]))
    # `up --workers 0 --workers-on n1,n2 --jobs 2`: the jobs, submitted by the same call, are not in the state yet
    assert "(its workers: on n1, n2 and batch jobs;" in cluster.summary(_state(workers_on=["n1", "n2"]), jobs_asked=True)
    jobs = [{"workers": ["tls://10.0.0.3:23434"]}, {"workers": ["tls://10.0.0.3:23435"]}]
    assert cluster.alone_text(_state(jobs=jobs)) == "no workers on the host, 2 joined from its 2 jobs"
    assert cluster.alone_text(_state(jobs=[{"workers": []}])) == "no workers on the host, 0 joined from its 1 job"
    assert cluster.alone_text(_state(workers=2)) is None

    from portal_tasks.commands.status import service_lines
    from portal_tasks.page.view import services

    entry = dict(_state(jobs=[dict(j, id="7", name="portal-a-0", state="RUNNING") for j in jobs]), env="a",
                 env_key="a", pid=4242, healthy=True)
    report = {"host": "login", "sessions": [], "clusters": [entry], "jupyter": [], "forwards": []}
    (line,) = [line for line in service_lines(report) if line.startswith("  cluster a:")]
    assert "no workers on the host, 2 joined from its 2 jobs pid 4242 healthy" in line and "memory" not in line
    assert services(report)[0]["detail"].startswith("no workers on the host, 2 joined from its 2 jobs, scheduler ")


def test_scaling_a_scheduler_alone_to_no_jobs_says_it_has_no_workers_left() -> None:
    from portal_tasks.parts import jobs as jobs_step

    note = jobs_step.no_workers_note(_state(), 0, "a")
    assert note and "no workers" in note and "`portal scale --env a --jobs N`" in note and "`portal down --env a`" in note
    assert jobs_step.no_workers_note(_state(), 2, "a") is None  # jobs asked for: its workers come
    assert jobs_step.no_workers_note(_state(workers=2), 0, "a") is None  # its own workers stay
    assert jobs_step.no_workers_note(_state(workers_on=["n1"]), 0, "a") is None  # other servers' workers stay
