"""Benchmark scripts (run them as files: ``python benchmarks/NAME.py``; the tests import them)."""
