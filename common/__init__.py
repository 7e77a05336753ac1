"""Shared by two or more tiers: settings, wire types, the queue and the storage schema.

Layering (enforced by import-linter, see pyproject.toml): ``apiserver``, ``synchro`` and ``writer``
import ``common``; ``common`` imports none of them.
"""
