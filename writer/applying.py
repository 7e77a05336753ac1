"""Execute the writer's steps against the store (the thin I/O edge around ``common.storage.sql.upserts``).

Each method is one unit of commit: ``apply_writes`` is one transaction, ``apply_list_done`` one
statement, ``purge`` and ``collect_tombstones`` a series of small transactions (chunks), so a
cluster with millions of rows never holds one giant transaction or lock set.
"""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import Engine

from common.events import ListDone, PurgeCluster
from common.storage.sql import upserts as sql
from writer.batching import Writes

log = logging.getLogger("clusterpedia.writer")


class Applier:
    def __init__(self, engine: Engine, *, chunk_rows: int = 5000) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self.chunk_rows = chunk_rows
        self._upsert = sql.upsert_resources(self.dialect)
        self._tombstone = sql.tombstone_resources(self.dialect)
        self._resource_type = sql.upsert_resource_types(self.dialect)

    def apply_writes(self, writes: Writes) -> None:
        now = sql.utc_now()
        upserts = [sql.upsert_row(e, now, self.dialect) for e in writes.upserts()]
        deletes = [sql.tombstone_row(e, now) for e in writes.deletes()]
        types = [sql.resource_type_row(e, now) for e in writes.resource_types.values()]
        with self.engine.begin() as conn:
            if upserts:
                conn.execute(self._upsert, upserts)
            if deletes:
                conn.execute(self._tombstone, deletes)
            if types:
                conn.execute(self._resource_type, types)

    def apply_list_done(self, event: ListDone) -> int:
        """Tombstone what the list of ``event.epoch`` did not return; the number of rows."""
        stmt = sql.tombstone_older_epochs(
            event.cluster, event.group, event.resource, event.epoch, sql.utc_now()
        )
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
        cutoff = sql.utc_now() - dt.timedelta(seconds=ttl_seconds)
        total = 0
        while True:
            stmt = sql.expired_tombstones(self.dialect, cutoff, limit=self.chunk_rows)
            with self.engine.begin() as conn:
                n = int(conn.execute(stmt).rowcount)
            total += n
            if n < self.chunk_rows:
                return total
