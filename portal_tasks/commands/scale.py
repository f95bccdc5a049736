"""`scale`: give the env's running cluster N worker jobs on the batch system (submit the missing, cancel the extra)."""

from __future__ import annotations

from typing import Any

from ..envs import env_key
from ..errors import ClusterError, UsageError
from ..request import JobSettings
from ..target import Explained, Target
from ..parts import cluster, jobs as jobs_step


def _running(target: Target, spec_text: str) -> dict[str, Any]:
    """The env's recorded cluster, healthy (else one line saying to `up` it first)."""
    key = env_key(spec_text)
    found = next((s for s in target.link.helper("cluster-list", {}) if s["key"] == key), None)
    if not found or not found.get("healthy"):
        raise ClusterError(f"no healthy cluster of env {spec_text} runs for you here.", host=target.host,
                           hint=f"Start it with `portal up --env {spec_text} --jobs N`.")
    return dict(found)


def _checked(target: Target, jobs: int | None, job: JobSettings) -> tuple[int, dict[str, Any]]:
    if jobs is None:
        raise UsageError("scale needs --jobs N (0 cancels the env's jobs).", host=target.host)
    return jobs_step.validate(target, jobs, job)


def run(target: Target, env: str | None = None, jobs: int | None = None, job: JobSettings = JobSettings()) -> None:
    count, given = _checked(target, jobs, job)
    spec_text = cluster.env_spec(target, env)
    jobs_step.scale(target, _running(target, spec_text), spec_text, count, given)


def explain(target: Target, env: str | None = None, jobs: int | None = None,
            job: JobSettings = JobSettings()) -> Explained:
    """The scripts of N worker jobs for the running cluster, each given to ``sbatch``."""
    count, given = _checked(target, jobs, job)
    spec_text = cluster.env_spec(target, env)
    state = _running(target, spec_text)
    return jobs_step.explain(target, spec_text, state["key"], state, count, given, state["address"])
