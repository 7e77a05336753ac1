"""Executes the writer's steps on a SQL store (the thin I/O edge around ``upserts``).

Each method is one unit of commit: ``apply`` is one transaction, ``list_done`` one statement,
``purge`` and ``collect_tombstones`` a series of small transactions (chunks), so a cluster with
millions of rows never holds one giant transaction or lock set.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Engine, Select, Update

from common.events import Delete, ListDone, PurgeCluster, ResourceType, Upsert
from common.storage.base import EVENT_RESOURCES
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
        self._take_returning = bool(engine.dialect.update_returning)
        """PostgreSQL and SQLite move the head and read it in one statement; MariaDB in two."""
        pg = Dialect.of(self.dialect) is Dialect.POSTGRESQL
        self._upsert_one = sql.upsert_one_taking_revision() if pg else None
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT") if pg else None

    def apply(
        self, upserts: Sequence[Upsert], deletes: Sequence[Delete], resource_types: Sequence[ResourceType]
    ) -> None:
        now = utc_now()
        type_rows = [sql.resource_type_row(e, now) for e in resource_types]
        upsert_rows = [sql.upsert_row(e, now, 0, jsonb=self._jsonb) for e in upserts]
        tombstone_rows = [sql.tombstone_row(e, now, 0) for e in deletes]
        lone = len(upsert_rows) == 1 and not tombstone_rows and not type_rows
        if lone and self._upsert_one is not None and self._autocommit is not None:
            with self._autocommit.connect() as conn:  # one statement, one round trip
                conn.execute(self._upsert_one, upsert_rows[0])
            return
        with self.engine.begin() as conn:
            # Revisions first: this holds the store's head until commit (``schema.store_revision``),
            # so nothing else is done meanwhile but numbering the rows and writing them.
            base = self._take(conn, len(upsert_rows) + len(tombstone_rows))
            for i, row in enumerate((*upsert_rows, *tombstone_rows), start=base + 1):
                row["revision"] = row["created_revision"] = i
            if upsert_rows:
                conn.execute(self._upsert, upsert_rows)
            if tombstone_rows:
                conn.execute(self._tombstone, tombstone_rows)
            if type_rows:
                conn.execute(self._resource_type, type_rows)

    def _take(self, conn: Connection, n: int) -> int:
        """Take ``n`` revisions in this transaction; the last revision before them. (A write that
        its guard skips leaves its revision unused: revisions are increasing, not dense.)"""
        if n == 0:
            return 0
        if self._take_returning:  # one round trip on the path of every change
            return int(conn.execute(sql.take_revisions(returning=True), {"n": n}).scalar_one()) - n
        conn.execute(sql.take_revisions(), {"n": n})
        return int(conn.execute(sql.head_revision()).scalar_one()) - n

    def list_done(self, event: ListDone) -> int:
        """Tombstone what the list of ``event.epoch`` did not return, each at its own revision,
        chunk by chunk; the number of rows."""
        key = (event.cluster, event.group, event.resource, event.epoch)
        return self._tombstone_chunks(
            sql.unlisted_rows(*key, limit=self.chunk_rows), sql.tombstone_unlisted(*key)
        )

    def _tombstone_chunks(self, ids_stmt: Select[Any], tombstone: Update) -> int:
        """Tombstone the rows ``ids_stmt`` picks (at most ``chunk_rows``: run again until it picks
        fewer), each at its own revision, one transaction per chunk; the number of rows."""
        total = 0
        while True:
            with self.engine.begin() as conn:
                ids = list(conn.execute(ids_stmt).scalars())
                if not ids:
                    return total
                base = self._take(conn, len(ids))
                now = utc_now()
                params = [{"row_id": i, "rev": base + n, "now": now} for n, i in enumerate(ids, start=1)]
                total += int(conn.execute(tombstone, params).rowcount)
            if len(ids) < self.chunk_rows:
                return total

    def expire_events(self, max_age_seconds: float, max_per_cluster: int) -> int:
        """Tombstone events past the retention bounds (``StoreWriter.expire_events``), chunk by chunk."""
        tombstone = sql.tombstone_row_at()
        total = 0
        for group, resource in EVENT_RESOURCES:
            if max_age_seconds > 0:
                cutoff = utc_now() - dt.timedelta(seconds=max_age_seconds)
                stmt = sql.events_created_before(group, resource, cutoff, limit=self.chunk_rows)
                total += self._tombstone_chunks(stmt, tombstone)
            if max_per_cluster > 0:
                with self.engine.connect() as conn:
                    serving = list(conn.execute(sql.clusters_serving(group, resource)).scalars())
                    clusters = [
                        c
                        for c in serving
                        if conn.execute(sql.live_count(group, resource, c)).scalar_one() > max_per_cluster
                    ]
                for cluster in clusters:
                    stmt = sql.events_beyond(group, resource, cluster, max_per_cluster, limit=self.chunk_rows)
                    total += self._tombstone_chunks(stmt, tombstone)
        return total

    def purge(self, event: PurgeCluster) -> int:
        """Delete a cluster's rows (or one group/resource's), chunk by chunk; the number of rows.
        The removed rows leave no change to watch: the feed's floor moves past them (watches older
        than the purge end with Expired and their clients relist)."""
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
            conn.execute(sql.raise_floor(self._take(conn, 1) + 1))
        return total

    def refresh_statistics(self) -> int | None:
        """The planner's statistics refreshed (``StoreWriter.refresh_statistics``): the estimated
        rows of ``resources`` afterwards, None where the server keeps them itself."""
        statements = sql.refresh_statistics(self.dialect)
        if not statements:
            return None
        # PostgreSQL's VACUUM runs outside a transaction; SQLite's ANALYZE in one.
        context = self._autocommit.connect() if self._autocommit is not None else self.engine.begin()
        with context as conn:
            for stmt in statements[:-1]:
                conn.execute(stmt)
            rows = conn.execute(statements[-1]).scalar()
        # PostgreSQL: a float, -1 before the first ANALYZE; SQLite: "rows per-index-figures..."
        return max(0, int(float(str(rows).split()[0]))) if rows is not None else 0

    def collect_tombstones(self, ttl_seconds: float) -> int:
        """Delete tombstones older than ``ttl_seconds``; the number of rows. The feed's floor first
        moves past the newest of them (a watch that has not yet seen one of them ends with Expired)."""
        cutoff = utc_now() - dt.timedelta(seconds=ttl_seconds)
        with self.engine.begin() as conn:
            newest = conn.execute(sql.expiring_revision(cutoff)).scalar()
            if newest is not None:
                conn.execute(sql.raise_floor(int(newest)))
        total = 0
        while True:
            stmt = sql.expired_tombstones(self.dialect, cutoff, limit=self.chunk_rows)
            with self.engine.begin() as conn:
                n = int(conn.execute(stmt).rowcount)
            total += n
            if n < self.chunk_rows:
                return total
