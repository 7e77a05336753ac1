"""What has been synced, per cluster: the ``resource_types`` rows the API tier serves from.

Discovery, routing (is this resource served? namespaced? which kind?) and table printing (CRD
printer columns) all read it, so it is loaded once and cached for a couple of seconds per process:
kubectl fires a burst of discovery requests before each command and the rows change rarely.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass

import anyio.to_thread
from sqlalchemy import Engine, select

from common.storage.sql.schema import resource_types


@dataclass(frozen=True, slots=True)
class ResourceType:
    cluster: str
    group: str
    version: str
    resource: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...]
    verbs: tuple[str, ...]
    storage_version: str
    printer_columns: str


def _json_list(text: str) -> tuple[str, ...]:
    try:
        value = json.loads(text) if text else []
    except ValueError:
        return ()
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


def _load(engine: Engine) -> list[ResourceType]:
    t = resource_types.c
    stmt = select(
        t.cluster,
        t.api_group,
        t.version,
        t.resource,
        t.kind,
        t.namespaced,
        t.short_names,
        t.verbs,
        t.storage_version,
        t.printer_columns,
    ).order_by(t.cluster, t.api_group, t.resource)
    with engine.connect() as conn:
        rows = conn.execute(stmt).all()
    return [
        ResourceType(
            cluster=r[0],
            group=r[1],
            version=r[2],
            resource=r[3],
            kind=r[4],
            namespaced=bool(r[5]),
            short_names=_json_list(r[6]),
            verbs=_json_list(r[7]),
            storage_version=r[8],
            printer_columns=r[9] or "",
        )
        for r in rows
    ]


class Catalog:
    """Cached view of ``resource_types``; ``ttl_seconds`` bounds how stale discovery may be."""

    def __init__(self, engine: Engine, ttl_seconds: float = 2.0) -> None:
        self._engine = engine
        self._ttl = ttl_seconds
        self._rows: list[ResourceType] = []
        self._loaded_at = -1e9

    async def rows(self, cluster: str = "") -> list[ResourceType]:
        """All rows, or one cluster's rows (empty when that cluster has synced nothing)."""
        if time.monotonic() - self._loaded_at > self._ttl:
            self._rows = await anyio.to_thread.run_sync(_load, self._engine)
            self._loaded_at = time.monotonic()
        if cluster:
            return [r for r in self._rows if r.cluster == cluster]
        return self._rows

    def invalidate(self) -> None:
        self._loaded_at = -1e9


def clusters_of(rows: Iterable[ResourceType]) -> list[str]:
    return sorted({r.cluster for r in rows})
