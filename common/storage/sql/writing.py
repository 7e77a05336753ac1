"""Executes the writer's steps on a SQL store (the thin I/O edge around ``upserts``).

Each method is one unit of commit: ``apply`` is one transaction, ``list_done`` one statement,
``purge`` and ``collect_tombstones`` a series of small transactions (chunks), so a cluster with
millions of rows never holds one giant transaction or lock set.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import Engine

from common.events import Delete, ListDone, PurgeCluster, ResourceType, Upsert
from common.storage.sql import upserts as sql
from common.storage.sql.dialects import Dialect
from common.storage.times import utc_now


class SqlWriter:
    """The writes of one SQL store (blocking, as the writer tier is)."""

    def __init__(self, engine: Engine, *, chunk_rows: int = 5000) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self.chunk_rows = chunk_rows
        self._jsonb = Dialect.of(self.dialect).jsonb
        self._upsert = sql.upsert_resources(self.dialect)
        self._tombstone = sql.tombstone_resources(self.dialect)
        self._resource_type = sql.upsert_resource_types(self.dialect)

    def apply(
        self, upserts: Sequence[Upsert], deletes: Sequence[Delete], resource_types: Sequence[ResourceType]
    ) -> None:
        now = utc_now()
        upsert_rows = [sql.upsert_row(e, now, jsonb=self._jsonb) for e in upserts]
        tombstone_rows = [sql.tombstone_row(e, now) for e in deletes]
        type_rows = [sql.resource_type_row(e, now) for e in resource_types]
        with self.engine.begin() as conn:
            if upsert_rows:
                conn.execute(self._upsert, upsert_rows)
            if tombstone_rows:
                conn.execute(self._tombstone, tombstone_rows)
            if type_rows:
                conn.execute(self._resource_type, type_rows)

    def list_done(self, event: ListDone) -> int:
        """Tombstone what the list of ``event.epoch`` did not return; the number of rows."""
        stmt = sql.tombstone_older_epochs(event.cluster, event.group, event.resource, event.epoch, utc_now())
        with self.engine.begin() as conn:
            return int(conn.execute(stmt).rowcount)

    def purge(self, event: PurgeCluster) -> int:
        """Delete a cluster's rows (or one group/resource's), chunk by chunk; the number of rows."""
        total = 0
        while True:
            stmt = sql.purge_resources(
                self.dialect, event.cluster, event.group, event.resource, limit=self.chunk_rows
            )
            with self.engine.begin() as conn:
                n = int(conn.execute(stmt).rowcount)
            total += n
            if n < self.chunk_rows:
                break
        with self.engine.begin() as conn:
            conn.execute(sql.purge_resource_types(event.cluster, event.group, event.resource))
        return total

    def collect_tombstones(self, ttl_seconds: float) -> int:
        """Delete tombstones older than ``ttl_seconds``; the number of rows."""
        cutoff = utc_now() - dt.timedelta(seconds=ttl_seconds)
        total = 0
        while True:
            stmt = sql.expired_tombstones(self.dialect, cutoff, limit=self.chunk_rows)
            with self.engine.begin() as conn:
                n = int(conn.execute(stmt).rowcount)
            total += n
            if n < self.chunk_rows:
                return total
