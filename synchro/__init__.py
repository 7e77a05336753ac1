"""Synchro tier: list/watch member clusters' resources and publish them as queue events.

Entry point: :func:`synchro.manager.run_synchro`. ``python -m synchro`` runs one worker.
"""
