"""Benchmarks of portal against the netns test server: `python -m bench` prints and writes the table."""
