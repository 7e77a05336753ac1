"""Benchmarks of clusterpedia-py: sync throughput, freshness, memory, query latency, writer scaling.

``python -m bench`` (``make bench``) runs every scenario for one size, prints a table and rewrites
``docs/performance.md``. Each figure is printed beside its physical reference (the raw list rate of
the member kube-apiserver, the raw bulk-insert rate of the store) so that a number means something
on whatever machine it was taken.
"""
