"""Benchmarks: ``python -m bench`` (or ``make bench``) runs them all and prints one table.

Each benchmark measures against a baseline taken in the same run, so the ratio does not depend
on the machine's speed. Results are figures to report, never assertions in the test suite.
"""
