"""Runs searches on a SQL store: pages, counts, gets, the catalog, readiness.

The statements come from ``selects`` (pure); this module only executes them (synchronously: the
store runs it in a worker thread) and turns rows into ``StoredObject``s and ``ListPage``s, with the
paging rules of ``common.storage.paging`` that every backend shares. Label selectors are planned
here (``label_plan``): which requirement a statement starts from depends on how many label rows
match, which only the store can tell.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
from sqlalchemy import Connection, Engine, Row

from common.storage.base import (
    Change,
    Expired,
    ListPage,
    ServedResource,
    StorageRejected,
    StoredObject,
    UnknownCluster,
)
from common.storage.grouping import GroupCount, TooManyGroups, sorted_groups
from common.storage.matching import NO_LABELS, labels_of
from common.storage.paging import Key, list_page, page_query, stored_object
from common.storage.query import GroupResource, Search
from common.storage.relations import resolve
from common.storage.sql.dialects import Dialect
from common.storage.sql.engine import label_index_ready
from common.storage.sql.grouping import group_statement, group_value, may_merge
from common.storage.sql.relations import SqlLookups
from common.storage.sql.selects import (
    LabelIndex,
    changes_statement,
    count_statement,
    fingerprint_statement,
    get_statement,
    is_positive,
    known_clusters_statement,
    label_rows_statement,
    list_statement,
    ping_statement,
    served_resources_statement,
    window_statement,
)
from common.storage.sql.upserts import head_revision

LIST_HEAD = "cp_list_head"
LIST_TOTAL = "cp_list_total"
"""Extra columns of a one-statement list page (``SqlReader._list_in_one_statement``)."""


def check_clusters(conn: Connection, names: Sequence[str], rows: Sequence[Any] = ()) -> None:
    """UnknownCluster for the first of ``names`` the store knows nothing about. Asked after the rows
    were read: a cluster some of ``rows`` belong to is known, so a read that found something costs
    no second statement (a statement less per get or page: 0.85 -> 0.35 ms per get, issue 16)."""
    seen = {r.cluster for r in rows}
    wanted = list(dict.fromkeys(n for n in names if n and n not in seen))
    if not wanted:
        return
    known = set(conn.execute(known_clusters_statement(wanted)).scalars())
    for name in wanted:
        if name not in known:
            raise UnknownCluster(name)


LABEL_INDEX_RECHECK_SECONDS = 30.0

DRIVE_LABEL_ROWS = 2_000
"""A positive label requirement matching fewer label rows than this is where a statement starts
(``LabelIndex.drive``); above it, a page is read in order, probing each row's labels, and stops
once full. Counting up to this bound is an index-only range read (about a millisecond)."""


def _labels(obj: str | bytes) -> Mapping[str, str]:
    try:
        return labels_of(obj.encode() if isinstance(obj, str) else obj)
    except msgspec.DecodeError:
        return NO_LABELS


def _json_list(text: str) -> tuple[str, ...]:
    try:
        value = json.loads(text) if text else []
    except ValueError:
        return ()
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


class SqlReader:
    """The reads of one SQL store (blocking; ``SqlStore`` runs them in a worker thread)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        # A list reads the head revision and its rows in one snapshot, so a watch from the list's
        # resourceVersion neither misses nor repeats a change: PostgreSQL needs REPEATABLE READ for
        # that; MySQL/MariaDB (InnoDB) read at one snapshot per transaction by default; SQLite
        # reads each statement at its own unless a transaction is begun explicitly.
        pg = Dialect.of(self.dialect).jsonb
        self._embedded = Dialect.of(self.dialect).embedded
        self._snapshot = engine.execution_options(isolation_level="REPEATABLE READ") if pg else engine
        # Reads of one statement (gets, counts, the catalog) need no transaction: on PostgreSQL,
        # autocommit saves psycopg's BEGIN and the pool's ROLLBACK round trips (a get 0.68 -> 0.33
        # ms). Not on MariaDB: PyMySQL begins implicitly, and switching autocommit on and back off
        # for the pool costs a round trip more than the ROLLBACK it saves (0.53 -> 0.64 ms).
        self._single = engine.execution_options(isolation_level="AUTOCOMMIT") if pg else engine
        self._single_statement_lists = pg
        """Lists as one statement (``_list_in_one_statement``): PostgreSQL."""
        self._label_index: tuple[float, bool] | None = None  # (checked at, ready)

    def _uses_label_index(self, conn: Connection) -> bool:
        """Whether the store's label table is complete (see ``label_index_ready``). Once it is, it
        stays so; until then (an upgrade backfilling it, or MySQL without the privilege for its
        triggers) it is asked again every ``LABEL_INDEX_RECHECK_SECONDS``, so API replicas pick it up
        without a restart."""
        now = time.monotonic()
        cached = self._label_index
        if cached is not None and (cached[1] or now - cached[0] < LABEL_INDEX_RECHECK_SECONDS):
            return cached[1]
        ready = label_index_ready(conn)
        self._label_index = (now, ready)
        return ready

    def label_plan(self, conn: Connection, search: Search) -> LabelIndex | None:
        """How this search's label requirements are answered (None: from the stored objects)."""
        if not search.labels or not self._uses_label_index(conn):
            return None
        best: tuple[int, int] | None = None  # (label rows, index in search.labels)
        for i, req in enumerate(search.labels):
            if is_positive(req):
                rows = int(conn.execute(label_rows_statement(req, DRIVE_LABEL_ROWS)).scalar_one())
                best = min(best or (rows, i), (rows, i))
        if best is None:
            return LabelIndex()
        # A whole list (no page size) reads every match anyway: start from the rarest label.
        page_drive = best[1] if best[0] < DRIVE_LABEL_ROWS or search.page_size is None else None
        return LabelIndex(drive=page_drive, rarest=best[1])

    def list_objects(self, search: Search) -> ListPage:
        if self._single_statement_lists and (
            search.relation is None or search.relation.alternatives is not None
        ):
            page = self._list_in_one_statement(search)
            if page is not None:
                return page
        dialect = self.dialect
        with self._snapshot.connect() as conn:
            if self._embedded:
                conn.exec_driver_sql("BEGIN")  # one read snapshot for the statements below
            head = self._head(conn)
            search = resolve(search, SqlLookups(conn))  # a relation becomes plain conditions
            labels = self.label_plan(conn, search)
            counting = labels.for_count() if labels is not None else None

            def fetch(after: Key | None, limit: int | None, offset: int | None) -> list[Row[Any]]:
                stmt = list_statement(
                    search, dialect, after=after, limit=limit, offset=offset, label_index=labels
                )
                return list(conn.execute(stmt))

            def count(after: Key | None) -> int:
                stmt = count_statement(search, dialect, after=after, label_index=counting)
                return int(conn.execute(stmt).scalar_one())

            rows, nxt, remaining, rv = list_page(search, fetch, count, head=head)
            check_clusters(conn, [search.single_cluster, *(search.clusters.include or ())], rows)
        items = [stored_object(r, search.only_metadata) for r in rows]
        return ListPage(items=items, next=nxt, remaining_item_count=remaining, resource_version=rv)

    def _list_in_one_statement(self, search: Search) -> ListPage | None:
        """PostgreSQL: the page, the head revision and the count behind remainingItemCount in one
        statement (uncorrelated scalar subqueries, computed once), in autocommit: one statement
        reads one snapshot, so the head is exactly the revision the rows were read at, as the
        REPEATABLE READ transaction of the general path makes it (BEGIN, head, page, count,
        ROLLBACK: five round trips, here one). None when the page is empty: an empty answer
        carries no head, and the general path reads it."""
        q = page_query(search)
        extra = [head_revision().scalar_subquery().label(LIST_HEAD)]
        if q.counts:
            extra.append(
                count_statement(search, self.dialect, after=q.after).scalar_subquery().label(LIST_TOTAL)
            )
        with self._single.connect() as conn:
            if search.labels and self._uses_label_index(conn):
                return None  # planned per label requirement: the general path
            stmt = list_statement(search, self.dialect, after=q.after, limit=q.limit, offset=q.offset)
            rows = list(conn.execute(stmt.add_columns(*extra)))
            if not rows:
                return None
            first = rows[0]._mapping
            total = int(first[LIST_TOTAL]) if q.counts else 0

            def fetch(after: Key | None, limit: int | None, offset: int | None) -> list[Row[Any]]:
                return rows

            def count(after: Key | None) -> int:
                return total

            rows, nxt, remaining, rv = list_page(search, fetch, count, head=int(first[LIST_HEAD]))
            check_clusters(conn, [search.single_cluster, *(search.clusters.include or ())], rows)
        items = [stored_object(r, search.only_metadata) for r in rows]
        return ListPage(items=items, next=nxt, remaining_item_count=remaining, resource_version=rv)

    def count_objects(self, search: Search) -> int:
        with self._single.connect() as conn:
            check_clusters(conn, [search.single_cluster, *(search.clusters.include or ())])
            search = resolve(search, SqlLookups(conn))
            labels = self.label_plan(conn, search)
            counting = labels.for_count() if labels is not None else None
            return int(conn.execute(count_statement(search, self.dialect, label_index=counting)).scalar_one())

    def count_groups(self, search: Search, max_groups: int) -> list[GroupCount]:
        """Group-by counts (``common.storage.sql.grouping``): one statement, at most one group
        beyond the bound read (a second, exact one when raw JSON texts may have merged)."""
        with self.engine.connect() as conn:
            check_clusters(conn, [search.single_cluster, *(search.clusters.include or ())])
            search = resolve(search, SqlLookups(conn))  # a relation becomes plain conditions
            labels = self.label_plan(conn, search)
            counting = labels.for_count() if labels is not None else None
            exact = False
            while True:
                stmt = group_statement(
                    search, self.dialect, label_index=counting, limit=max_groups + 1, exact=exact
                )
                rows = conn.execute(stmt).all()
                if exact or len(rows) <= max_groups or not may_merge(search, self.dialect):
                    break
                exact = True
        counts: dict[tuple[str, ...], int] = {}
        for r in rows:
            key = tuple(
                group_value(f, self.dialect, v, exact=exact)
                for f, v in zip(search.group_by, r[:-1], strict=True)
            )
            counts[key] = counts.get(key, 0) + int(r[-1])
        try:
            return sorted_groups(counts.items(), max_groups)
        except TooManyGroups as e:
            raise StorageRejected(str(e)) from e

    def get_objects(
        self, cluster: str, group: str, resource: str, namespace: str, name: str
    ) -> list[StoredObject]:
        with self._single.connect() as conn:
            rows = list(conn.execute(get_statement(cluster, group, resource, namespace, name)))
            check_clusters(conn, [cluster], rows)
        return [stored_object(r) for r in rows]

    def resource_types(self) -> list[ServedResource]:
        with self._single.connect() as conn:
            rows = conn.execute(served_resources_statement()).all()
        return [
            ServedResource(
                cluster=r.cluster,
                group=r.api_group,
                version=r.version,
                resource=r.resource,
                kind=r.kind,
                namespaced=bool(r.namespaced),
                short_names=_json_list(r.short_names),
                verbs=_json_list(r.verbs),
                storage_version=r.storage_version,
                printer_columns=r.printer_columns or "",
            )
            for r in rows
        ]

    def fingerprint(self, group: str, resources: Sequence[str]) -> str:
        with self.engine.connect() as conn:
            count, total, latest = conn.execute(fingerprint_statement(group, resources)).one()
        return f"{count}:{total or 0}:{latest}"

    def _head(self, conn: Connection) -> int:
        return int(conn.execute(head_revision()).scalar_one())

    def window(self) -> tuple[int, int]:
        with self.engine.connect() as conn:
            floor, head = conn.execute(window_statement()).one()
        return int(floor), int(head)

    def changes(
        self, after: int, upto: int, group_resources: Sequence[GroupResource] | None, limit: int
    ) -> list[Change]:
        with self.engine.connect() as conn:
            rows = list(conn.execute(changes_statement(after, upto, group_resources, limit)))
            # The floor is read after the rows: tombstone expiry raises it before deleting, so a
            # change missing from these rows for that reason is always noticed.
            floor = int(conn.execute(window_statement()).one()[0])
        if after < floor:
            raise Expired(f"revision {after} is older than the changes kept (from {floor})")
        return [
            Change(
                object=stored_object(r),
                deleted=bool(r.deleted),
                created_revision=int(r.created_revision),
                uid=r.uid,
                owner_uid=r.owner_uid,
                labels=_labels(r.object),
            )
            for r in rows
        ]

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(ping_statement()).scalar_one()
