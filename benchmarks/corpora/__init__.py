"""Benchmark corpora built on demand (never committed)."""
