"""Benchmarks: latency, streams, training cost, power; JSON rows and plots."""
