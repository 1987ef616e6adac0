"""Benchmarks: each prints rates and ratios, never asserts a time."""
