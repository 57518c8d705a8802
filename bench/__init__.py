"""Benchmarks: offerletters end to end against the tools people reach for today.

Run the whole suite with `python -m bench.run` (see docs/benchmarks.md for the
exact command and what every column means).
"""
