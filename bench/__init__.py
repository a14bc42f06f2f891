"""Benchmarks: inspectord side by side with ironic-inspector 12.5.0 and the floor (Ironic alone).

Run ``make bench`` or ``python -m bench.run --help``.
"""
