"""Benchmark scripts; each prints its figures for docs/benchmarks.md."""
