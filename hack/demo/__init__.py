"""`make demo`: a host cluster, three member clusters and every Clusterpedia tier on this machine.

``python -m demo up|down|status`` (run by hack/demo.sh with ``hack/`` and the repository root on
PYTHONPATH). ``up`` starts a detached supervisor process (``supervisor.py``) that owns every
process of the demo, and follows its progress until the demo is ready; ``down`` asks the
supervisor to stop everything and then sweeps for anything left.
"""
