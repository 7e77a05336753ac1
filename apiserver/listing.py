"""Runs searches on the store: pages, continue tokens, remainingItemCount (implementation follows)."""

from __future__ import annotations

from sqlalchemy import Engine

from apiserver.types import ListPage, Search, StoredObject


async def list_objects(engine: Engine, search: Search) -> ListPage:
    """One page of the objects matching ``search``. Raises BadRequest (bad continue token) and
    NotFound (``cluster "x" not found``)."""
    raise NotImplementedError


async def get_object(
    engine: Engine, cluster: str, group: str, resource: str, namespace: str, name: str
) -> StoredObject:
    """One object; ``cluster`` "" searches all clusters. Raises NotFound (``deployments.apps "x" not
    found``, ``cluster "x" not found``) or BadRequest (a name found in several clusters)."""
    raise NotImplementedError
