"""Worker jobs on a batch system, the pure parts: job arguments and prologue, the env program's job
script (dask-jobqueue in this venv), settings in layers, and the one-line summary of the queue."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from portal_tasks import config, daskcmd
from portal_tasks.errors import ConfigError, UsageError
from portal_tasks.parts import jobs
from portal_tasks.request import JobSettings

ENV_PROGRAM = Path(__file__).parents[2] / "portal_tasks" / "remote" / "jobqueue_env.py"


def test_job_worker_args_stay_in_the_block_and_off_other_interfaces() -> None:
    args = daskcmd.job_worker_args((20020, 20049), (20050, 20079))
    assert args[:4] == ["--worker-port", "20020:20049", "--nanny-port", "20050:20079"]
    assert args[args.index("--dashboard-address") + 1] == "127.0.0.1:$PORTAL_HTTP"
    assert args[-2:] == ["--host", "$PORTAL_LISTEN"]
    assert "--host" not in daskcmd.job_worker_args((1, 2), (3, 4), listen=False)


def test_job_prologue_asks_the_route_to_the_scheduler_and_a_free_port_of_the_range() -> None:
    lines = daskcmd.job_prologue("tls://10.1.2.3:20010", (20020, 20049))
    assert lines[0] == "export DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION=True"
    assert lines[1].startswith("PORTAL_NET=$({python} -c ") and lines[1].endswith(" 10.1.2.3 20020 20049 {number})")


def test_the_probe_finds_this_machines_address_towards_a_peer_and_a_free_port() -> None:
    def probe(number: int) -> list[str]:
        return subprocess.run([sys.executable, "-c", daskcmd.JOB_NET_PROBE, "127.0.0.1", "20020", "20049", str(number)],
                              capture_output=True, text=True, timeout=30).stdout.split()

    first, second = probe(0), probe(1)
    assert first[0] == "127.0.0.1" and 20020 <= int(first[1]) <= 20049
    assert int(first[1]) != int(second[1])  # jobs starting side by side look in different places


def _script(settings: dict, defaults: dict | None = None, home: Path | None = None) -> dict:
    payload = {"system": "slurm", "scheduler": "tls://10.0.0.1:20010", "names": ["portal-a-0", "portal-a-1"],
               "tls": {"ca": "/h/ca.pem", "cert": "/h/cert.pem", "key": "/h/key.pem"},
               "worker_args": daskcmd.job_worker_args((20020, 20049), (20050, 20079)),
               "prologue": daskcmd.job_prologue("tls://10.0.0.1:20010", (20020, 20049)),
               "settings": settings, "defaults": defaults or {"cores": 2, "memory": "2GiB", "processes": 1}}
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home or "/nonexistent"), "DASK_CONFIG": str(home or "/nonexistent")}
    res = subprocess.run([sys.executable, "-c", ENV_PROGRAM.read_text()], input=json.dumps(payload) + "\n",
                         capture_output=True, text=True, timeout=120, env=env)
    return json.loads(res.stdout)


def test_dask_jobqueue_writes_a_tls_job_with_portal_defaults() -> None:
    pytest.importorskip("dask_jobqueue")
    reply = _script({"queue": "debug", "walltime": "00:10:00"})
    assert reply["ok"] and reply["submit"] == "sbatch" and reply["cancel"] == "scancel"
    first = reply["scripts"][0]
    assert "#SBATCH -J portal-a-0" in first and "#SBATCH -p debug" in first and "#SBATCH -t 00:10:00" in first
    assert "#SBATCH --cpus-per-task=2" in first and "--mem=2G" in first
    worker = next(line for line in first.splitlines() if "distributed.cli.dask_worker" in line)
    assert sys.executable in worker and "tls://10.0.0.1:20010" in worker and "--name portal-a-0" in worker
    for part in ("--tls-ca-file /h/ca.pem", "--tls-cert /h/cert.pem", "--tls-key /h/key.pem", "--protocol tls://",
                 "--worker-port 20020:20049", "--host $PORTAL_LISTEN"):
        assert part in worker
    assert "{python}" not in first and "PORTAL_NET=$(" + sys.executable in first
    assert first.split("PORTAL_NET=$(")[1].split(")")[-2].endswith(" 0") or " 20049 0)" in first
    assert "--name portal-a-1" in reply["scripts"][1]
    bash = subprocess.run(["bash", "-n"], input=first, capture_output=True, text=True, timeout=30)
    assert bash.returncode == 0, bash.stderr


def test_the_users_jobqueue_yaml_wins_over_portals_defaults_and_settings_over_it(tmp_path: Path) -> None:
    pytest.importorskip("dask_jobqueue")
    (tmp_path / "jobqueue.yaml").write_text("jobqueue:\n  slurm:\n    cores: 4\n    memory: 8GiB\n"
                                            "    account: physics\n")
    reply = _script({"queue": "long"}, home=tmp_path)
    first = reply["scripts"][0]
    assert "--cpus-per-task=4" in first and "--mem=8G" in first and "#SBATCH -A physics" in first
    assert "#SBATCH -p long" in first
    assert "-A chem" in _script({"account": "chem"}, home=tmp_path)["scripts"][0]


def test_a_setting_dask_jobqueue_refuses_is_one_line() -> None:
    pytest.importorskip("dask_jobqueue")
    reply = _script({"memory": "lots"})
    assert not reply["ok"] and reply["kind"] == "ConfigError" and "\n" not in reply["error"]


def test_jobqueue_settings_in_portal_yaml_are_checked() -> None:
    settings = config.resolve({"hosts": {"m": {"jobqueue": {"queue": "debug"}}}}, "m")
    assert settings.jobqueue == {"queue": "debug", "system": "slurm"}
    with pytest.raises(ConfigError, match="unknown jobqueue setting"):
        config.resolve({"jobqueue": {"partition": "x"}}, "m")
    with pytest.raises(ConfigError, match="not one portal submits to"):
        config.resolve({"jobqueue": {"system": "condor"}}, "m")


class _Settings:
    jobqueue = {"system": "slurm", "queue": "debug", "walltime": "01:00:00"}
    threads = 2


class _Target:
    settings = _Settings()
    host = "m"


def test_options_override_portal_yaml() -> None:
    count, given = jobs.validate(_Target(), 2, JobSettings(queue="long", job_cores=3))  # type: ignore[arg-type]
    assert count == 2
    assert jobs.job_settings(_Target(), given) == {"queue": "long", "walltime": "01:00:00", "cores": 3}  # type: ignore[arg-type]


def test_job_options_without_jobs_and_bad_counts_are_one_line() -> None:
    with pytest.raises(UsageError, match="--queue is a setting of batch jobs"):
        jobs.validate(_Target(), None, JobSettings(queue="long"))  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="--jobs 'x' is not a whole number"):
        jobs.validate(_Target(), "x", JobSettings())  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        jobs.validate(_Target(), 2, JobSettings(job_memory="much"))  # type: ignore[arg-type]


def test_summary_names_states_workers_and_reasons() -> None:
    running = {"state": "RUNNING", "reason": "", "workers": ["tls://10.0.0.3:20020"]}
    pending = {"state": "PENDING", "reason": "Resources", "workers": []}
    assert jobs.summary([running, dict(running), pending]) == \
        "2 jobs running, 2 workers joined; 1 job pending (reason: Resources)"
    assert jobs.summary([{"state": "ended", "reason": "", "workers": []}]) == "no worker jobs queued"
