"""Runs searches on the store: pages, continue tokens, remainingItemCount, single gets.

The statements come from ``common.storage.sql.selects`` (pure); this module only executes them, in a
worker thread (SQLAlchemy Core is synchronous) so the event loop keeps serving, and turns rows into
``StoredObject``s and ``ListPage``s.

Paging, two kinds:
- keyset (kubectl's ``limit``/``continue``, ``--chunk-size``): the token carries the last row's
  values of the full order key; the next page is the rows strictly after it. Each page costs
  O(page) however deep, and an object present throughout a paged list is returned exactly once
  even while other rows are inserted, updated or deleted between pages (objects created or deleted
  meanwhile may or may not appear, as with kube-apiserver's continue).
- offset (the ``size``/``offset`` search conditions): LIMIT/OFFSET; a continue token (the next
  offset) only when the request asks ``withContinue``.
One row more than the page is fetched to know whether there is a next page.

``ListPage.resource_version``: member clusters have unrelated resourceVersions, so the list's is an
opaque marker — the highest object resourceVersion on the first page (``"0"`` when empty), carried in
the continue token so every page of one list reports the same value.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Sequence
from typing import Any

import anyio.to_thread
import msgspec
from sqlalchemy import Connection, Engine, Row

from apiserver.search import encode_continue, is_valid_name
from apiserver.types import Continue, ListPage, Search, StoredObject
from common.errors import BadRequest, NotFound
from common.storage.query import OrderBy, full_order
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
)


async def list_objects(engine: Engine, search: Search) -> ListPage:
    """One page of the objects matching ``search``. Raises BadRequest (a continue token that does not
    fit the request) and NotFound (``cluster "x" not found``: the path cluster or one of the
    ``clusters`` asked for is unknown to the store)."""
    return await anyio.to_thread.run_sync(list_objects_sync, engine, search)


async def get_object(
    engine: Engine, cluster: str, group: str, resource: str, namespace: str, name: str
) -> StoredObject:
    """One object by name; ``cluster`` "" looks in every cluster.

    Without a cluster, a name found in exactly one cluster is returned; a name found in several is a
    400 BadRequest naming those clusters — returning one of them would silently hide the others, and
    the seed tells users to name the cluster for details (``kubectl --cluster cluster-1 get ...``).
    Raises NotFound ``deployments.apps "x" not found`` / ``cluster "x" not found``."""
    return await anyio.to_thread.run_sync(get_object_sync, engine, cluster, group, resource, namespace, name)


def _group_resource(group: str, resource: str) -> str:
    return f"{resource}.{group}" if group else resource


def check_clusters(conn: Connection, names: Sequence[str]) -> None:
    """NotFound for the first of ``names`` the store knows nothing about."""
    wanted = list(dict.fromkeys(n for n in names if n))
    if not wanted:
        return
    known = set(conn.execute(known_clusters_statement(wanted)).scalars())
    for name in wanted:
        if name not in known:
            raise NotFound(f'cluster "{name}" not found', details={"name": name, "kind": "clusters"})


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
_label_index: weakref.WeakKeyDictionary[Engine, tuple[float, bool]] = weakref.WeakKeyDictionary()


def _uses_label_index(engine: Engine, conn: Connection) -> bool:
    """Whether the store's label table is complete (see ``label_index_ready``). Once it is, it stays
    so; until then (an upgrade backfilling it, or MySQL without the privilege for its triggers) it is
    asked again every ``LABEL_INDEX_RECHECK_SECONDS``, so API replicas pick it up without a restart."""
    now = time.monotonic()
    cached = _label_index.get(engine)
    if cached is not None and (cached[1] or now - cached[0] < LABEL_INDEX_RECHECK_SECONDS):
        return cached[1]
    ready = label_index_ready(conn)
    _label_index[engine] = (now, ready)
    return ready


DRIVE_LABEL_ROWS = 2_000
"""A positive label requirement matching fewer label rows than this is where a statement starts
(``LabelIndex.drive``); above it, a page is read in order, probing each row's labels, and stops
once full. Counting up to this bound is an index-only range read (about a millisecond)."""


def label_plan(engine: Engine, conn: Connection, search: Search) -> LabelIndex | None:
    """How this search's label requirements are answered (None: from the stored objects)."""
    if not search.labels or not _uses_label_index(engine, conn):
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


def list_objects_sync(engine: Engine, search: Search) -> ListPage:
    dialect = engine.dialect.name
    page_size = search.page_size
    fetch = page_size + 1 if page_size is not None else None
    token = search.continue_token
    with engine.connect() as conn:
        check_clusters(conn, [search.single_cluster, *(search.clusters.include or ())])
        labels = label_plan(engine, conn, search)
        counting = labels.for_count() if labels is not None else None
        if search.offset_paging:
            offset = token.offset if token is not None and token.offset is not None else (search.offset or 0)
            rows = list(
                conn.execute(list_statement(search, dialect, limit=fetch, offset=offset, label_index=labels))
            )
            more = page_size is not None and len(rows) > page_size
            rows = rows[:page_size] if page_size is not None else rows
            rv = token.resource_version if token is not None and token.resource_version else _max_rv(rows)
            cont = ""
            if more and search.with_continue:
                cont = encode_continue(Continue(offset=offset + len(rows), resource_version=rv))
            remaining = None
            if more and search.with_remaining_count:
                total = conn.execute(count_statement(search, dialect, label_index=counting)).scalar_one()
                remaining = max(0, int(total) - offset - len(rows))
        else:
            order = full_order(search)
            after = _token_key(token, order) if token is not None else None
            rows = list(
                conn.execute(list_statement(search, dialect, after=after, limit=fetch, label_index=labels))
            )
            more = page_size is not None and len(rows) > page_size
            rows = rows[:page_size] if page_size is not None else rows
            rv = token.resource_version if token is not None and token.resource_version else _max_rv(rows)
            cont = ""
            remaining = None
            if more:
                last = _row_key(rows[-1], order)
                cont = encode_continue(Continue(key=last, order=order_names(order), resource_version=rv))
                if search.with_remaining_count:
                    remaining = int(
                        conn.execute(
                            count_statement(search, dialect, after=last, label_index=counting)
                        ).scalar_one()
                    )
    items = [_to_object(r, search.only_metadata) for r in rows]
    return ListPage(items=items, continue_token=cont, remaining_item_count=remaining, resource_version=rv)


def _token_key(token: Continue, order: Sequence[OrderBy]) -> tuple[str | int, ...]:
    if token.order != order_names(order):
        raise BadRequest(
            "invalid continue token: it was issued for a different orderby; repeat the first request's"
            " orderby or start again without continue"
        )
    try:
        for o, v in zip(order, token.key, strict=True):
            key_value(o.field, v)
    except ValueError:
        raise BadRequest("invalid continue token: bad key") from None
    return token.key


def get_object_sync(
    engine: Engine, cluster: str, group: str, resource: str, namespace: str, name: str
) -> StoredObject:
    gr = _group_resource(group, resource)
    if cluster and not is_valid_name(cluster):
        raise NotFound(f'cluster "{cluster}" not found')
    if not is_valid_name(name) or (namespace and not is_valid_name(namespace)):
        raise NotFound(f'{gr} "{name}" not found')
    with engine.connect() as conn:
        check_clusters(conn, [cluster])
        rows = list(conn.execute(get_statement(cluster, group, resource, namespace, name)))
    if not rows:
        raise NotFound(f'{gr} "{name}" not found', details={"name": name, "group": group, "kind": resource})
    if len(rows) > 1:
        clusters = ", ".join(r.cluster for r in rows)
        raise BadRequest(
            f'{gr} "{name}" exists in several clusters ({clusters}): name the cluster, e.g.'
            f" kubectl --cluster {rows[0].cluster} get {gr} {name}"
        )
    return _to_object(rows[0])
