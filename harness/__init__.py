"""The real-component test harness: databases, Redis and Kubernetes control planes on loopback.

Everything here starts real processes (see docs/testing.md); ``tests/conftest.py`` wraps it in
pytest fixtures, and ``python -m harness up`` keeps clusters up for manual poking.
"""
