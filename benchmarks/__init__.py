"""Benchmark scripts (run as `python benchmarks/<script>.py`) and the corpora they use; importable for tests."""
