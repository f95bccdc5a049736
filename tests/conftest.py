"""Shared test setup. The portal test-server plugin itself comes from the `pytest11` entry point."""

pytest_plugins = ["pytester"]  # tests/e2e/test_plugin.py runs the plugin in an inner pytest
