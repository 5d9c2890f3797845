"""Benchmarks: figures, and ratios to a reference measured in the same run (``make bench``)."""
