"""Shared test setup. The portal test-server plugin itself comes from the `pytest11` entry point."""

from __future__ import annotations

import os

import pytest

pytest_plugins = ["pytester"]  # tests/e2e/test_plugin.py runs the plugin in an inner pytest


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """Workers for `-n auto` (pyproject.toml's addopts): one more than the cores. The e2e tests wait on ssh,
    tmux and Dask starts, so a worker more than the cores keeps them busy; each worker starts a test server
    (and SLURM, conda users) of its own, so more than that costs more than it saves (2 cores: 3 workers)."""
    return (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1) + 1
