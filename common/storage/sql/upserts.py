"""The writers' statements: guarded batched upserts, tombstones, list barriers, purges, GC.

Pure builders: each function returns a SQLAlchemy statement for one dialect, executed by the writer
with bound parameters (``executemany`` over row dicts for the batched ones). Keeping the SQL here
lets every guard be unit-tested by compiling it per dialect.

Why the guards look the way they do (several writers apply one queue in parallel, so events of one
object can arrive out of order, and any of them twice):

* Upsert applies when ``incoming.rv > stored.rv`` or (``incoming.rv == stored.rv`` and the stored
  row is not a tombstone). The equal case is a re-delivery or a relist of an unchanged object: the
  content is identical, only the epoch moves. ``epoch`` never goes backwards (the larger of stored
  and incoming): a re-delivered entry of an older list must not drag a row back under the epoch a
  later ``ListDone`` purges.
* Delete writes a tombstone (``deleted`` = true, rv = the deletion's rv) when ``incoming.rv >=
  stored.rv``; when the row is absent the tombstone is inserted, so a late older Upsert finds it.
* PostgreSQL and SQLite express the guard as ``ON CONFLICT .. DO UPDATE .. WHERE``. MySQL/MariaDB
  have no such WHERE: every assignment is ``col = CASE WHEN guard THEN new ELSE col END``, and MySQL
  evaluates assignments left to right with later ones seeing earlier results, so the columns the
  guard reads go last: ``deleted``, then ``resource_version``.
* Deletes of many rows (purge, GC) are chunked by the caller: each statement removes at most
  ``limit`` rows, so a huge cluster never holds one giant transaction.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    Delete,
    Insert,
    Select,
    Update,
    and_,
    bindparam,
    case,
    delete,
    false,
    func,
    or_,
    select,
    text,
    true,
    update,
)
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.sql.elements import ColumnElement, TextClause

from common.events import Delete as DeleteEvent
from common.events import ResourceType, Upsert
from common.storage.facets import FACET_PATHS, NO_FACETS, facets_of
from common.storage.sql.dialects import Dialect
from common.storage.sql.schema import resource_types, resources, store_revision
from common.storage.times import parse_timestamp

RESOURCE_KEY = ("cluster", "api_group", "resource", "namespace", "name")
"""Columns of the unique key of ``resources`` (``uq_resources_key``)."""

UPSERT_COLUMNS = (
    "cluster",
    "api_group",
    "version",
    "resource",
    "kind",
    "namespace",
    "name",
    "uid",
    "owner_uid",
    "resource_version",
    "epoch",
    "created_at",
    "synced_at",
    "deleted",
    "phase",
    "node_name",
    "object",
    "revision",
    "created_revision",
)
"""Parameters of each row passed to :func:`upsert_resources` (all required)."""

"""Parameters of each row passed to :func:`tombstone_resources`; only the key, rv and synced_at
matter when the row exists, the rest fills an inserted tombstone."""

FACET_COLUMNS = tuple(FACET_PATHS.values())
"""Facets (``common.storage.facets``): written with the object they are taken from, and only then."""

RESOURCE_TYPE_COLUMNS = tuple(c.name for c in resource_types.columns)

_INSERTS = {Dialect.POSTGRESQL: postgresql.insert, Dialect.SQLITE: sqlite.insert, Dialect.MYSQL: mysql.insert}


def _dialect_insert(dialect: str, table: Any) -> Any:
    return _INSERTS[Dialect.of(dialect)](table)


def _on_duplicate_key(dialect: str) -> bool:
    return Dialect.of(dialect).on_duplicate_key


def _upsert_guard(new_rv: ColumnElement[Any]) -> ColumnElement[bool]:
    cur = resources.c
    return or_(new_rv > cur.resource_version, and_(new_rv == cur.resource_version, cur.deleted == false()))


def _max_epoch(new_epoch: ColumnElement[Any]) -> ColumnElement[Any]:
    cur = resources.c
    return case((new_epoch > cur.epoch, new_epoch), else_=cur.epoch)


def upsert_resources(dialect: str) -> Insert:
    """INSERT of live objects, guarded on conflict (see module docstring).

    Execute with a list of row dicts (keys: ``UPSERT_COLUMNS``), at most one row per key. A
    re-delivery (same resourceVersion) moves only the epoch: the row keeps its revision and object,
    so watchers see no change; a newer version takes the row's new revision, and a row revived from
    a tombstone starts a new incarnation (``created_revision``)."""
    stmt = _dialect_insert(dialect, resources)
    cur = resources.c
    content = [c for c in UPSERT_COLUMNS if c not in RESOURCE_KEY and c not in _KEPT]
    if _on_duplicate_key(dialect):
        new = stmt.inserted
        guard = _upsert_guard(new.resource_version)
        newer = new.resource_version > cur.resource_version
        ordered: list[tuple[str, Any]] = []
        for col in content:
            if col == "deleted":
                continue
            ordered.append((col, case((guard, new[col]), else_=cur[col])))
        ordered.append(("epoch", case((guard, _max_epoch(new.epoch)), else_=cur.epoch)))
        # These read `deleted` and `resource_version`, as the guard does: assign those two last.
        ordered.append(("object", case((and_(guard, newer), new.object), else_=cur.object)))
        ordered += [(c, case((and_(guard, newer), new[c]), else_=cur[c])) for c in FACET_COLUMNS]
        ordered.append(
            (
                "created_revision",
                case((and_(guard, cur.deleted == true()), new.created_revision), else_=cur.created_revision),
            )
        )
        ordered.append(("revision", case((and_(guard, newer), new.revision), else_=cur.revision)))
        ordered.append(("deleted", case((guard, new.deleted), else_=cur.deleted)))
        ordered.append(("resource_version", case((guard, new.resource_version), else_=cur.resource_version)))
        return stmt.on_duplicate_key_update(ordered)  # type: ignore[no-any-return]
    return _on_conflict_guarded(stmt, content)


def upsert_one_taking_revision() -> Insert:
    """PostgreSQL: one object's guarded upsert that takes its revision in the same statement.

    ``WITH rev AS (UPDATE store_revision SET head = head + 1 .. RETURNING head) INSERT INTO
    resources .. SELECT <the row>, rev.head, rev.head FROM rev ON CONFLICT ..``: run in autocommit,
    the statement is its own transaction, holding the store's head from the revision it takes until
    it commits, as the general path's transaction does (``schema.store_revision``). One round trip
    where the general path makes four (BEGIN, the revision, the upsert, COMMIT): the writer uses
    it for a lone change, the idle case where its latency is the whole of a change's delay.
    Execute with one row dict of ``UPSERT_COLUMNS`` (``revision`` and ``created_revision`` are
    ignored)."""
    rev = (
        update(store_revision)
        .where(store_revision.c.id == 1)
        .values(head=store_revision.c.head + 1)
        .returning(store_revision.c.head)
        .cte("rev")
    )
    given = [c for c in UPSERT_COLUMNS if c not in ("revision", "created_revision")]
    row = select(
        *[bindparam(c, type_=resources.c[c].type) for c in given], rev.c.head, rev.c.head
    ).select_from(rev)
    stmt = postgresql.insert(resources).from_select([*given, "revision", "created_revision"], row)
    content = [c for c in UPSERT_COLUMNS if c not in RESOURCE_KEY and c not in _KEPT]
    return _on_conflict_guarded(stmt, content)


_KEPT = ("resource_version", "epoch", "revision", "created_revision", "object", *FACET_COLUMNS)
"""Columns an upsert assigns by rule (the guard's, the epoch's, a newer object's), not as given."""


def _on_conflict_guarded(stmt: Any, content: Sequence[str]) -> Insert:
    """``stmt`` (PostgreSQL's or SQLite's INSERT) guarded on conflict with the stored row."""
    cur = resources.c
    exc = stmt.excluded
    newer = exc.resource_version > cur.resource_version
    set_: dict[str, Any] = {col: exc[col] for col in content}
    set_["resource_version"] = exc.resource_version
    set_["epoch"] = _max_epoch(exc.epoch)
    set_["object"] = case((newer, exc.object), else_=cur.object)
    for c in FACET_COLUMNS:  # the facets of the object kept
        set_[c] = case((newer, exc[c]), else_=cur[c])
    set_["revision"] = case((newer, exc.revision), else_=cur.revision)
    set_["created_revision"] = case((cur.deleted == true(), exc.created_revision), else_=cur.created_revision)
    return stmt.on_conflict_do_update(  # type: ignore[no-any-return]
        index_elements=[cur[c] for c in RESOURCE_KEY],
        set_=set_,
        where=_upsert_guard(exc.resource_version),
    )


def tombstone_resources(dialect: str) -> Insert:
    """INSERT of tombstones for deleted objects: marks the row deleted at the deletion's rv when
    ``incoming.rv >= stored.rv``, keeping the old object (a watcher's DELETED event carries it) and
    taking the row's new revision (a tombstone written again keeps its revision); inserts the
    tombstone when absent.

    Execute with a list of row dicts (keys: ``UPSERT_COLUMNS``, ``deleted`` true)."""
    stmt = _dialect_insert(dialect, resources)
    cur = resources.c
    if _on_duplicate_key(dialect):
        new = stmt.inserted
        guard = new.resource_version >= cur.resource_version
        ordered = [
            ("synced_at", case((guard, new.synced_at), else_=cur.synced_at)),
            ("revision", case((and_(guard, cur.deleted == false()), new.revision), else_=cur.revision)),
            ("deleted", case((guard, true()), else_=cur.deleted)),
            ("resource_version", case((guard, new.resource_version), else_=cur.resource_version)),
        ]
        return stmt.on_duplicate_key_update(ordered)  # type: ignore[no-any-return]
    exc = stmt.excluded
    return stmt.on_conflict_do_update(  # type: ignore[no-any-return]
        index_elements=[cur[c] for c in RESOURCE_KEY],
        set_={
            "deleted": true(),
            "resource_version": exc.resource_version,
            "synced_at": exc.synced_at,
            "revision": case((cur.deleted == false(), exc.revision), else_=cur.revision),
        },
        where=exc.resource_version >= cur.resource_version,
    )


def unlisted_rows(cluster: str, group: str, resource: str, epoch: int, *, limit: int) -> Select[Any]:
    """ListDone: ids of at most ``limit`` rows of one resource of one cluster that the list of
    ``epoch`` did not return (see :func:`tombstone_unlisted`)."""
    cur = resources.c
    return select(cur.id).where(*_unlisted(cluster, group, resource, epoch)).order_by(cur.id).limit(limit)


def _unlisted(cluster: str, group: str, resource: str, epoch: int) -> list[ColumnElement[bool]]:
    cur = resources.c
    return [
        cur.cluster == cluster,
        cur.api_group == group,
        cur.resource == resource,
        cur.epoch < epoch,
        cur.resource_version <= epoch,
        cur.deleted == false(),
    ]


def tombstone_unlisted(cluster: str, group: str, resource: str, epoch: int) -> Update:
    """ListDone: one row (bound ``row_id``) not seen by the list of ``epoch`` becomes a tombstone at
    its own revision (bound ``revision``), if it still qualifies.

    ``epoch`` is the list's resourceVersion L. Only rows at or below L are judged: a row with a
    newer rv came from a watch event after L (e.g. from the previous owner during a lease handover)
    and the list cannot speak for it. A judged row was absent at L, so its tombstone takes rv = L:
    any later event at or below L is stale and must not revive it."""
    cur = resources.c
    return (
        update(resources)
        .where(cur.id == bindparam("row_id"), *_unlisted(cluster, group, resource, epoch))
        .values(deleted=True, resource_version=epoch, synced_at=bindparam("now"), revision=bindparam("rev"))
    )


def events_created_before(group: str, resource: str, older_than: dt.datetime, *, limit: int) -> Select[Any]:
    """Event retention by age: ids of at most ``limit`` live rows of an event resource created
    before ``older_than`` (the ``(api_group, resource, created_at)`` index bounds the scan)."""
    cur = resources.c
    return (
        select(cur.id)
        .where(cur.api_group == group, cur.resource == resource, cur.created_at < older_than)
        .where(cur.deleted == false())
        .order_by(cur.id)
        .limit(limit)
    )


def events_beyond(group: str, resource: str, cluster: str, keep: int, *, limit: int) -> Select[Any]:
    """Event retention by count: ids of at most ``limit`` live rows of an event resource of
    ``cluster`` after its ``keep`` most recently written ones (highest revisions)."""
    cur = resources.c
    return (
        select(cur.id)
        .where(cur.cluster == cluster, cur.api_group == group, cur.resource == resource)
        .where(cur.deleted == false())
        .order_by(cur.revision.desc())
        .offset(keep)
        .limit(limit)
    )


def live_count(group: str, resource: str, cluster: str) -> Select[Any]:
    """How many live rows of a resource a cluster has (``ix_resources_epoch`` leads with cluster): the
    count pass reads past the kept ones only for a cluster above its bound."""
    cur = resources.c
    return (
        select(func.count())
        .select_from(resources)
        .where(cur.cluster == cluster, cur.api_group == group, cur.resource == resource)
        .where(cur.deleted == false())
    )


def clusters_serving(group: str, resource: str) -> Select[Any]:
    """The clusters whose catalog holds this resource (a handful of rows)."""
    rt = resource_types.c
    return select(rt.cluster).where(rt.api_group == group, rt.resource == resource)


def tombstone_row_at() -> Update:
    """Retention: one live row (bound ``row_id``) becomes a tombstone at its own resourceVersion and
    the revision bound as ``rev`` (a re-delivery of that version stays dead; a newer one revives it)."""
    cur = resources.c
    return (
        update(resources)
        .where(cur.id == bindparam("row_id"), cur.deleted == false())
        .values(deleted=True, synced_at=bindparam("now"), revision=bindparam("rev"))
    )


def take_revisions(*, returning: bool = False) -> Update:
    """Move the store's head by ``n`` (bound): the first statement of every writing transaction,
    which then holds the row until it commits (see ``schema.store_revision``); ``returning``: the
    statement also gives the new head (where the database can: ``dialect.update_returning``).
    Built once: constructing it cost ~0.3 ms on the path of every change."""
    return _TAKE_RETURNING if returning else _TAKE


def head_revision() -> Select[Any]:
    return _HEAD


_TAKE = (
    update(store_revision).where(store_revision.c.id == 1).values(head=store_revision.c.head + bindparam("n"))
)
_TAKE_RETURNING = _TAKE.returning(store_revision.c.head)
_HEAD = select(store_revision.c.head).where(store_revision.c.id == 1)


def raise_floor(floor: int) -> Update:
    """Changes at or below ``floor`` are no longer readable (never lowers it)."""
    return (
        update(store_revision)
        .where(store_revision.c.id == 1, store_revision.c.floor < floor)
        .values(floor=floor)
    )


def expiring_revision(older_than: dt.datetime) -> Select[Any]:
    """The highest revision among the tombstones that expire before ``older_than`` (None: none)."""
    return select(func.max(resources.c.revision)).where(
        resources.c.deleted == true(), resources.c.synced_at < older_than
    )


SQLITE_ANALYSIS_LIMIT = 1000
"""Rows SQLite's ANALYZE reads per index (``PRAGMA analysis_limit``): an estimate in milliseconds
instead of a pass over every index of a large table (that would hold the store's one write lock)."""


def refresh_statistics(dialect: str) -> tuple[TextClause, ...]:
    """Statements that refresh the planner's statistics of the stored objects (the labels too where
    they have a table), then read back the estimated number of rows of ``resources``; () where the
    server keeps them itself: InnoDB recalculates a table's persistent statistics in the background
    once 10% of its rows changed (``innodb_stats_auto_recalc``).

    On PostgreSQL that is ``VACUUM (ANALYZE)`` (run outside a transaction), which besides the
    statistics
    - merges the pending lists of the GIN indexes (labels, trigram names) into the indexes: rows
      written since the last VACUUM sit in an unordered list every search of the index reads
      through, until autovacuum comes by. Right after a sync of 20,000 pods a label selector took
      89.6 ms that way, 1.3 ms merged (bench/notes.md, issue 16);
    - sets the visibility map of the pages written, without which a count reads every row from
      the heap instead of from an index alone: 50,000 pods, 5.9 -> 2.3 ms (bench/notes.md, session
      7). VACUUM skips the pages already all-visible, so a refresh costs in proportion to what was
      written since the last one (0.2 s after 20,000 new rows, 0.7 s after 200,000)."""
    d = Dialect.of(dialect)
    if d is Dialect.POSTGRESQL:
        return (
            text("VACUUM (ANALYZE) resources"),
            text("SELECT CAST(reltuples AS BIGINT) FROM pg_class WHERE oid = CAST('resources' AS regclass)"),
        )
    if d is Dialect.SQLITE:
        return (
            text(f"PRAGMA analysis_limit = {SQLITE_ANALYSIS_LIMIT}"),
            text("ANALYZE resources"),
            text("ANALYZE resource_labels"),
            # each index's row of sqlite_stat1 starts with the table's estimated row count
            text("SELECT stat FROM sqlite_stat1 WHERE tbl = 'resources' LIMIT 1"),
        )
    return ()


def _chunked_delete(dialect: str, conditions: Sequence[ColumnElement[bool]], limit: int) -> Delete:
    if _on_duplicate_key(dialect):
        return delete(resources).where(*conditions).with_dialect_options(mysql_limit=limit)
    ids = select(resources.c.id).where(*conditions).limit(limit).scalar_subquery()
    return delete(resources).where(resources.c.id.in_(ids))


def purge_resources(
    dialect: str, cluster: str, group: str | None, resource: str | None, *, limit: int
) -> Delete:
    """Delete at most ``limit`` rows of a cluster (or of one group / resource of it); repeat until
    fewer than ``limit`` rows go."""
    conds: list[ColumnElement[bool]] = [resources.c.cluster == cluster]
    if group is not None:
        conds.append(resources.c.api_group == group)
    if resource is not None:
        conds.append(resources.c.resource == resource)
    return _chunked_delete(dialect, conds, limit)


def purge_resource_types(cluster: str, group: str | None, resource: str | None) -> Delete:
    """Forget what a cluster serves (a handful of rows per cluster: one statement)."""
    stmt = delete(resource_types).where(resource_types.c.cluster == cluster)
    if group is not None:
        stmt = stmt.where(resource_types.c.api_group == group)
    if resource is not None:
        stmt = stmt.where(resource_types.c.resource == resource)
    return stmt


def expired_tombstones(dialect: str, older_than: dt.datetime, *, limit: int) -> Delete:
    """Delete at most ``limit`` tombstones last written before ``older_than``."""
    return _chunked_delete(
        dialect, [resources.c.deleted == true(), resources.c.synced_at < older_than], limit
    )


def upsert_resource_types(dialect: str) -> Insert:
    """INSERT of resource types (keys: ``RESOURCE_TYPE_COLUMNS``), replacing the row on conflict."""
    stmt = _dialect_insert(dialect, resource_types)
    key = [c.name for c in resource_types.primary_key.columns]
    rest = [c for c in RESOURCE_TYPE_COLUMNS if c not in key]
    if _on_duplicate_key(dialect):
        return stmt.on_duplicate_key_update([(c, stmt.inserted[c]) for c in rest])  # type: ignore[no-any-return]
    return stmt.on_conflict_do_update(  # type: ignore[no-any-return]
        index_elements=[resource_types.c[c] for c in key],
        set_={c: stmt.excluded[c] for c in rest},
    )


# -- rows: event -> bound parameters of the statements above


_JSON_NUL = re.compile(rb"(?<!\\)((?:\\\\)*)\\u0000")


def strip_json_nul(obj: bytes) -> bytes:
    """Drop ``\\u0000`` escapes from a JSON text (keeping escaped backslashes before them).

    Kubernetes accepts NUL characters in strings; PostgreSQL's JSONB cannot hold them and would
    reject the whole object. Dropping the character is the least surprising loss."""
    if b"\\u0000" not in obj:
        return obj
    return _JSON_NUL.sub(rb"\1", obj)


def upsert_row(event: Upsert, now: dt.datetime, revision: int, *, jsonb: bool = False) -> dict[str, Any]:
    """``revision``: the one this write takes if it applies. ``jsonb``: the store keeps objects as
    JSONB (``Dialect.jsonb``), which cannot hold NUL."""
    obj = strip_json_nul(event.object) if jsonb else event.object
    phase, node_name = facets_of(obj)
    return {
        "cluster": event.cluster,
        "api_group": event.group,
        "version": event.version,
        "resource": event.resource,
        "kind": event.kind,
        "namespace": event.namespace,
        "name": event.name,
        "uid": event.uid,
        "owner_uid": event.owner_uid,
        "resource_version": event.resource_version,
        "epoch": event.epoch,
        "created_at": parse_timestamp(event.created_at),
        "synced_at": now,
        "deleted": False,
        "phase": phase,
        "node_name": node_name,
        "object": obj.decode(),
        "revision": revision,
        "created_revision": revision,
    }


def tombstone_row(event: DeleteEvent, now: dt.datetime, revision: int) -> dict[str, Any]:
    """A tombstone; when inserted (the object was never stored) it has no content: ``{}``."""
    return {
        "cluster": event.cluster,
        "api_group": event.group,
        "version": event.version,
        "resource": event.resource,
        "kind": "",
        "namespace": event.namespace,
        "name": event.name,
        "uid": "",
        "owner_uid": "",
        "resource_version": event.resource_version,
        "epoch": 0,
        "created_at": None,
        "synced_at": now,
        "deleted": True,
        "phase": NO_FACETS[0],
        "node_name": NO_FACETS[1],
        "object": "{}",
        "revision": revision,
        "created_revision": revision,
    }


def resource_type_row(event: ResourceType, now: dt.datetime) -> dict[str, Any]:
    return {
        "cluster": event.cluster,
        "api_group": event.group,
        "resource": event.resource,
        "version": event.version,
        "kind": event.kind,
        "namespaced": event.namespaced,
        "short_names": json.dumps(event.short_names),
        "verbs": json.dumps(event.verbs),
        "storage_version": event.storage_version,
        "printer_columns": event.printer_columns.decode(),
        "updated_at": now,
    }
