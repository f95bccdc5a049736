"""Shared test setup. The portal test-server plugin itself comes from the `pytest11` entry point."""

from __future__ import annotations

import os

import pytest

pytest_plugins = ["pytester"]  # tests/e2e/test_plugin.py runs the plugin in an inner pytest


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """Workers for `-n auto` (pyproject.toml's addopts): one a core (2 cores: 2 workers). Each worker starts a
    test server (and SLURM, conda users) of its own; with one more than the cores, a loaded run went slower and
    the tests that still wait on a clock failed more (docs/DECISIONS.md)."""
    return (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
