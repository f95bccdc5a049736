"""How long `up --jobs` and `scale` wait for worker jobs: the configured jobs_wait reaches the helper, whose
wait ends when every live job has a worker, or when jobs_wait is over with a job still pending. Counted in
looks at the queue, not in seconds (a busy machine makes every wait longer)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from portal_tasks import config
from portal_tasks.parts import jobs as laptop_jobs
from portal_tasks.remote import jobs as helper_jobs

RUNNING = {"id": "1", "name": "portal-a-0", "state": "RUNNING", "reason": "", "workers": ["tls://10.0.0.2:20020"]}
PENDING = {"id": "2", "name": "portal-a-1", "state": "PENDING", "reason": "Resources", "workers": []}
STARTING = {"id": "2", "name": "portal-a-1", "state": "RUNNING", "reason": "", "workers": []}


def looks(monkeypatch: pytest.MonkeyPatch, *answers: list[dict[str, Any]]) -> list[int]:
    """describe() answers these job lists in turn (the last one from then on); returns the count of looks."""
    count = [0]

    def describe(key: str, dashboard_port: Any = None, scheduler_pid: Any = None) -> dict[str, Any]:
        count[0] += 1
        return {"jobs": answers[min(count[0], len(answers)) - 1], "system": "slurm"}

    monkeypatch.setattr(helper_jobs, "describe", describe)
    monkeypatch.setattr(helper_jobs.time, "sleep", lambda seconds: None)
    return count


def test_a_pending_job_ends_the_wait_once_jobs_wait_is_over(monkeypatch: pytest.MonkeyPatch) -> None:
    count = looks(monkeypatch, [RUNNING, PENDING])
    reply = helper_jobs.wait({"key": "a", "seconds": 0})
    assert count[0] == 1 and [j["state"] for j in reply["jobs"]] == ["RUNNING", "PENDING"]


def test_the_wait_ends_as_soon_as_every_live_job_has_a_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    count = looks(monkeypatch, [RUNNING, STARTING], [RUNNING, STARTING], [RUNNING, dict(STARTING, workers=["w"])])
    reply = helper_jobs.wait({"key": "a", "seconds": 3600})
    assert count[0] == 3 and all(j["workers"] for j in reply["jobs"])


def test_ended_jobs_are_no_reason_to_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    count = looks(monkeypatch, [RUNNING, dict(PENDING, state="ended", reason="")])
    helper_jobs.wait({"key": "a", "seconds": 3600})
    assert count[0] == 1


def test_the_configured_jobs_wait_is_what_the_helper_is_asked_to_wait() -> None:
    settings = config.resolve({"hosts": {"h": {"jobs_wait": 3}}}, "h")
    asked: list[tuple[str, dict[str, Any], float]] = []

    def helper(verb: str, payload: dict[str, Any], timeout: float) -> dict[str, Any]:
        asked.append((verb, payload, timeout))
        return {"jobs": [PENDING]}

    target = SimpleNamespace(settings=settings, link=SimpleNamespace(helper=helper), host="h", say=lambda line: None)
    laptop_jobs.wait(target, {"key": "a"}, "")  # type: ignore[arg-type]
    assert [(verb, payload["seconds"]) for verb, payload, _ in asked] == [("jobs-wait", 3)]
