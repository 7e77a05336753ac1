"""Runs searches on a SQL store: pages, continue positions, remainingItemCount, gets, the catalog.

The statements come from ``selects`` (pure); this module only executes them (synchronously: the
store runs it in a worker thread) and turns rows into ``StoredObject``s and ``ListPage``s.

Paging, two kinds:
- keyset (kubectl's ``limit``/``continue``, ``--chunk-size``): the position carries the last row's
  values of the full order key; the next page is the rows strictly after it. Each page costs
  O(page) however deep, and an object present throughout a paged list is returned exactly once
  even while other rows are inserted, updated or deleted between pages (objects created or deleted
  meanwhile may or may not appear, as with kube-apiserver's continue).
- offset (the ``size``/``offset`` search conditions): LIMIT/OFFSET; a next position (the next
  offset) only when the search asks ``with_continue``.
One row more than the page is fetched to know whether there is a next page.

``ListPage.resource_version``: member clusters have unrelated resourceVersions, so the list's is an
opaque marker — the highest object resourceVersion on the first page (``"0"`` when empty), carried in
the continue position so every page of one list reports the same value.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import msgspec
from sqlalchemy import Connection, Engine, Row

from common.storage.base import ListPage, ServedResource, StorageRejected, StoredObject, UnknownCluster
from common.storage.query import Continue, OrderBy, Search, full_order
from common.storage.sql.engine import label_index_ready
from common.storage.sql.selects import (
    NULL_CREATED_AT,
    LabelIndex,
    count_statement,
    get_statement,
    is_positive,
    key_value,
    known_clusters_statement,
    label_rows_statement,
    list_statement,
    order_names,
    ping_statement,
    served_resources_statement,
)


def check_clusters(conn: Connection, names: Sequence[str]) -> None:
    """UnknownCluster for the first of ``names`` the store knows nothing about."""
    wanted = list(dict.fromkeys(n for n in names if n))
    if not wanted:
        return
    known = set(conn.execute(known_clusters_statement(wanted)).scalars())
    for name in wanted:
        if name not in known:
            raise UnknownCluster(name)


class _Metadata(msgspec.Struct):
    apiVersion: str = ""
    kind: str = ""
    metadata: msgspec.Raw = msgspec.Raw(b"{}")


_metadata_decoder = msgspec.json.Decoder(_Metadata)
_encoder = msgspec.json.Encoder()


def _only_metadata(raw: bytes) -> bytes:
    return _encoder.encode(_metadata_decoder.decode(raw))


def _to_object(row: Row[Any], only_metadata: bool = False) -> StoredObject:
    obj = row.object
    raw = obj.encode() if isinstance(obj, str) else bytes(obj)
    return StoredObject(
        cluster=row.cluster,
        group=row.api_group,
        version=row.version,
        resource=row.resource,
        kind=row.kind,
        namespace=row.namespace,
        name=row.name,
        resource_version=int(row.resource_version),
        created_at=row.created_at,
        object=_only_metadata(raw) if only_metadata else raw,
    )


def _row_key(row: Row[Any], order: Sequence[OrderBy]) -> tuple[str | int, ...]:
    key: list[str | int] = []
    for o in order:
        if o.field == "created_at":
            key.append((row.created_at or NULL_CREATED_AT).isoformat())
        elif o.field == "resource_version":
            key.append(int(row.resource_version))
        else:
            key.append(str(getattr(row, o.field)))
    return tuple(key)


def _max_rv(rows: Sequence[Row[Any]]) -> str:
    return str(max((int(r.resource_version) for r in rows), default=0))


LABEL_INDEX_RECHECK_SECONDS = 30.0

DRIVE_LABEL_ROWS = 2_000
"""A positive label requirement matching fewer label rows than this is where a statement starts
(``LabelIndex.drive``); above it, a page is read in order, probing each row's labels, and stops
once full. Counting up to this bound is an index-only range read (about a millisecond)."""


def _json_list(text: str) -> tuple[str, ...]:
    try:
        value = json.loads(text) if text else []
    except ValueError:
        return ()
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


def _token_key(token: Continue, order: Sequence[OrderBy]) -> tuple[str | int, ...]:
    if token.order != order_names(order):
        raise StorageRejected(
            "invalid continue token: it was issued for a different orderby; repeat the first request's"
            " orderby or start again without continue"
        )
    try:
        for o, v in zip(order, token.key, strict=True):
            key_value(o.field, v)
    except ValueError:
        raise StorageRejected("invalid continue token: bad key") from None
    return token.key


class SqlReader:
    """The reads of one SQL store (blocking; ``SqlStore`` runs them in a worker thread)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
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
        dialect = self.dialect
        page_size = search.page_size
        fetch = page_size + 1 if page_size is not None else None
        token = search.continue_token
        nxt: Continue | None = None
        remaining: int | None = None
        with self.engine.connect() as conn:
            check_clusters(conn, [search.single_cluster, *(search.clusters.include or ())])
            labels = self.label_plan(conn, search)
            counting = labels.for_count() if labels is not None else None
            if search.offset_paging:
                offset = (
                    token.offset if token is not None and token.offset is not None else (search.offset or 0)
                )
                stmt = list_statement(search, dialect, limit=fetch, offset=offset, label_index=labels)
                rows = list(conn.execute(stmt))
                more = page_size is not None and len(rows) > page_size
                rows = rows[:page_size] if page_size is not None else rows
                rv = token.resource_version if token is not None and token.resource_version else _max_rv(rows)
                if more and search.with_continue:
                    nxt = Continue(offset=offset + len(rows), resource_version=rv)
                if more and search.with_remaining_count:
                    total = conn.execute(count_statement(search, dialect, label_index=counting)).scalar_one()
                    remaining = max(0, int(total) - offset - len(rows))
            else:
                order = full_order(search)
                after = _token_key(token, order) if token is not None else None
                stmt = list_statement(search, dialect, after=after, limit=fetch, label_index=labels)
                rows = list(conn.execute(stmt))
                more = page_size is not None and len(rows) > page_size
                rows = rows[:page_size] if page_size is not None else rows
                rv = token.resource_version if token is not None and token.resource_version else _max_rv(rows)
                if more:
                    last = _row_key(rows[-1], order)
                    nxt = Continue(key=last, order=order_names(order), resource_version=rv)
                    if search.with_remaining_count:
                        count = count_statement(search, dialect, after=last, label_index=counting)
                        remaining = int(conn.execute(count).scalar_one())
        items = [_to_object(r, search.only_metadata) for r in rows]
        return ListPage(items=items, next=nxt, remaining_item_count=remaining, resource_version=rv)

    def count_objects(self, search: Search) -> int:
        with self.engine.connect() as conn:
            check_clusters(conn, [search.single_cluster, *(search.clusters.include or ())])
            labels = self.label_plan(conn, search)
            counting = labels.for_count() if labels is not None else None
            return int(conn.execute(count_statement(search, self.dialect, label_index=counting)).scalar_one())

    def get_objects(
        self, cluster: str, group: str, resource: str, namespace: str, name: str
    ) -> list[StoredObject]:
        with self.engine.connect() as conn:
            check_clusters(conn, [cluster])
            rows = list(conn.execute(get_statement(cluster, group, resource, namespace, name)))
        return [_to_object(r) for r in rows]

    def resource_types(self) -> list[ServedResource]:
        with self.engine.connect() as conn:
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

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(ping_statement()).scalar_one()
