"""What has been synced, per cluster: the store's resource types, as the API tier serves them.

Discovery, routing (is this resource served? namespaced? which kind?) and table printing (CRD
printer columns) all read it, so it is loaded once and cached for a couple of seconds per process:
kubectl fires a burst of discovery requests before each command and the rows change rarely.
"""

from __future__ import annotations

import time

from common.storage import ServedResource, StoreReader


class Catalog:
    """Cached view of the store's resource types; ``ttl_seconds`` bounds how stale discovery may be."""

    def __init__(self, store: StoreReader, ttl_seconds: float = 2.0) -> None:
        self._store = store
        self._ttl = ttl_seconds
        self._rows: list[ServedResource] = []
        self._loaded_at = -1e9

    async def rows(self, cluster: str = "") -> list[ServedResource]:
        """All rows, or one cluster's rows (empty when that cluster has synced nothing)."""
        if time.monotonic() - self._loaded_at > self._ttl:
            self._rows = await self._store.resource_types()
            self._loaded_at = time.monotonic()
        if cluster:
            return [r for r in self._rows if r.cluster == cluster]
        return self._rows
