"""The in-process store (``memory://``): every object in a dict, for a laptop, a demo, tests.

It keeps the guarantees of ``common.storage.base`` as the SQL stores do — the same guards (an older
event never overwrites a newer object, tombstones stop resurrection, list barriers, purges, tombstone
expiry) and every search condition with the same meaning (the SQL builders in
``common.storage.sql.selects`` are the reference: ``!=``/``notin`` labels match objects without the
label, field values compare as JSON text with a missing value as "", names in byte order) — and pages
with the shared rules of ``common.storage.paging``.

One store per URL per process (``memory://`` and ``memory://name`` are different stores), like the
in-process queue: the API tier, the synchro and the writers of one ``all-in-one`` process share it,
and ``close`` leaves it for the others. Nothing survives the process, and other processes (the tiers
of ``all-in-one --queue redis://``) cannot see it.

Rows are immutable and replaced on every write, so a search copies the references of one resource's
rows under the lock and filters and sorts them outside it; labels are parsed once per write, other
field paths per search (memory over speed: a search is a scan of the resource's rows).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import anyio.to_thread
import msgspec

from common.events import Delete, ListDone, PurgeCluster, ResourceType, Upsert
from common.storage.base import (
    ListPage,
    ServedResource,
    StorageRejected,
    Store,
    StoredObject,
    StoreOptions,
    UnknownCluster,
)
from common.storage.paging import NULL_CREATED_AT, Key, key_value, list_page, stored_object
from common.storage.query import (
    FieldRequirement,
    GroupResource,
    LabelRequirement,
    Operator,
    OrderBy,
    Search,
    SetFilter,
    full_order,
)
from common.storage.times import parse_timestamp, utc_now

GET_LIMIT = 50
"""At most this many clusters' copies of one name are returned by a get (as the SQL store)."""


@dataclasses.dataclass(frozen=True, slots=True)
class _Row:
    cluster: str
    api_group: str
    version: str
    resource: str
    kind: str
    namespace: str
    name: str
    uid: str
    owner_uid: str
    resource_version: int
    epoch: int
    created_at: dt.datetime | None
    synced_at: dt.datetime
    deleted: bool
    object: bytes
    labels: Mapping[str, str]


class _Metadata(msgspec.Struct):
    labels: dict[str, Any] = {}


class _Labelled(msgspec.Struct):
    metadata: _Metadata = msgspec.field(default_factory=_Metadata)


_labels_decoder = msgspec.json.Decoder(_Labelled)
_EMPTY: Mapping[str, str] = {}


def _labels(event: Upsert) -> Mapping[str, str]:
    """The string labels of an object (other values are not labels; the SQL stores skip them too)."""
    try:
        labels = _labels_decoder.decode(event.object).metadata.labels
    except msgspec.DecodeError as e:
        raise StorageRejected(
            f"writing a batch: the object {event.namespace}/{event.name} is not JSON: {e}"
        ) from e
    return {k: v for k, v in labels.items() if isinstance(v, str)} if labels else _EMPTY


_Bucket = dict[tuple[str, str, str], _Row]  # (cluster, namespace, name) -> row, of one group/resource


class MemoryStore:
    """The store of one ``memory://`` URL (see the module docstring)."""

    name = "memory"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._types: dict[tuple[str, str, str], ServedResource] = {}

    def migrate(self) -> None:
        """Nothing to create."""

    def close(self) -> None:
        """The store stays for the other tiers of this process."""

    # -- reads

    async def resource_types(self) -> list[ServedResource]:
        with self._lock:
            return [self._types[k] for k in sorted(self._types)]

    async def list_objects(self, search: Search) -> ListPage:
        return await anyio.to_thread.run_sync(self._list, search)

    async def count_objects(self, search: Search) -> int:
        return await anyio.to_thread.run_sync(lambda: len(self._matches(search)))

    async def get_objects(
        self, cluster: str, group: str, resource: str, namespace: str, name: str
    ) -> list[StoredObject]:
        with self._lock:
            self._check_clusters([cluster])
            bucket = self._buckets.get((group, resource), {})
            rows = [
                r
                for r in bucket.values()
                if r.namespace == namespace
                and r.name == name
                and not r.deleted
                and (not cluster or r.cluster == cluster)
            ]
        rows.sort(key=lambda r: r.cluster)
        return [stored_object(r) for r in rows[:GET_LIMIT]]

    async def fingerprint(self, group: str, resources: Sequence[str]) -> str:
        with self._lock:
            rows = [
                r for res in dict.fromkeys(resources) for r in self._buckets.get((group, res), {}).values()
            ]
        latest = max((r.synced_at for r in rows), default=None)
        return f"{len(rows)}:{sum(r.resource_version for r in rows)}:{latest}"

    async def ping(self) -> None:
        return None

    def _check_clusters(self, names: Iterable[str]) -> None:
        known = {k[0] for k in self._types}
        for name in dict.fromkeys(n for n in names if n):
            if name not in known:
                raise UnknownCluster(name)

    def _list(self, search: Search) -> ListPage:
        matches = self._matches(search)
        order = full_order(search)
        _sort(matches, order)

        def after(key: Key | None) -> list[_Row]:
            if key is None:
                return matches
            values = [key_value(o.field, v) for o, v in zip(order, key, strict=True)]
            return [r for r in matches if _is_after(r, values, order)]

        def fetch(key: Key | None, limit: int | None, offset: int | None) -> list[_Row]:
            rows = after(key)[offset or 0 :]
            return rows[:limit] if limit is not None else rows

        rows, nxt, remaining, rv = list_page(search, fetch, lambda key: len(after(key)))
        items = [stored_object(r, search.only_metadata) for r in rows]
        return ListPage(items=items, next=nxt, remaining_item_count=remaining, resource_version=rv)

    def _matches(self, search: Search) -> list[_Row]:
        """The live rows matching every condition of ``search`` (unordered)."""
        grs = search.group_resources or (GroupResource(search.group, search.resource),)
        with self._lock:
            self._check_clusters([search.single_cluster, *(search.clusters.include or ())])
            rows = [r for gr in dict.fromkeys(grs) for r in self._buckets.get(gr, {}).values()]
            everything = (
                [r for b in self._buckets.values() for r in b.values()]
                if search.owner_uid or search.owner_name
                else []
            )
        owners = _owners(search, everything) if search.owner_uid or search.owner_name else None
        test = _condition(search, owners)
        return [r for r in rows if test(r)]

    # -- writes

    def apply(
        self, upserts: Sequence[Upsert], deletes: Sequence[Delete], resource_types: Sequence[ResourceType]
    ) -> None:
        now = utc_now()
        # Everything that can refuse the data happens before anything is written: one transaction.
        prepared = [(u, _labels(u), parse_timestamp(u.created_at)) for u in upserts]
        types = [_served(t) for t in resource_types]
        with self._lock:
            for u, labels, created in prepared:
                bucket = self._buckets.setdefault((u.group, u.resource), {})
                key = (u.cluster, u.namespace, u.name)
                cur = bucket.get(key)
                if cur is not None and not (
                    u.resource_version > cur.resource_version
                    or (u.resource_version == cur.resource_version and not cur.deleted)
                ):
                    continue
                bucket[key] = _Row(
                    cluster=u.cluster,
                    api_group=u.group,
                    version=u.version,
                    resource=u.resource,
                    kind=u.kind,
                    namespace=u.namespace,
                    name=u.name,
                    uid=u.uid,
                    owner_uid=u.owner_uid,
                    resource_version=u.resource_version,
                    epoch=max(u.epoch, cur.epoch) if cur is not None else u.epoch,
                    created_at=created,
                    synced_at=now,
                    deleted=False,
                    object=u.object,
                    labels=labels,
                )
            for d in deletes:
                bucket = self._buckets.setdefault((d.group, d.resource), {})
                key = (d.cluster, d.namespace, d.name)
                cur = bucket.get(key)
                if cur is None:
                    bucket[key] = _tombstone(d, now)
                elif d.resource_version >= cur.resource_version:
                    bucket[key] = dataclasses.replace(
                        cur, deleted=True, resource_version=d.resource_version, synced_at=now
                    )
            for t in types:
                self._types[(t.cluster, t.group, t.resource)] = t

    def list_done(self, event: ListDone) -> int:
        now = utc_now()
        n = 0
        with self._lock:
            bucket = self._buckets.get((event.group, event.resource), {})
            for key, r in bucket.items():
                if (
                    r.cluster == event.cluster
                    and r.epoch < event.epoch
                    and r.resource_version <= event.epoch
                    and not r.deleted
                ):
                    bucket[key] = dataclasses.replace(
                        r, deleted=True, resource_version=event.epoch, synced_at=now
                    )
                    n += 1
        return n

    def purge(self, event: PurgeCluster) -> int:
        def chosen(group: str, resource: str) -> bool:
            return (event.group is None or group == event.group) and (
                event.resource is None or resource == event.resource
            )

        n = 0
        with self._lock:
            for (group, resource), bucket in self._buckets.items():
                if chosen(group, resource):
                    gone = [k for k in bucket if k[0] == event.cluster]
                    for k in gone:
                        del bucket[k]
                    n += len(gone)
            for key in [k for k in self._types if k[0] == event.cluster and chosen(k[1], k[2])]:
                del self._types[key]
        return n

    def collect_tombstones(self, ttl_seconds: float) -> int:
        cutoff = utc_now() - dt.timedelta(seconds=ttl_seconds)
        n = 0
        with self._lock:
            for bucket in self._buckets.values():
                expired = [k for k, r in bucket.items() if r.deleted and r.synced_at < cutoff]
                for k in expired:
                    del bucket[k]
                n += len(expired)
        return n


def _served(t: ResourceType) -> ServedResource:
    return ServedResource(
        cluster=t.cluster,
        group=t.group,
        version=t.version,
        resource=t.resource,
        kind=t.kind,
        namespaced=t.namespaced,
        short_names=tuple(t.short_names),
        verbs=tuple(t.verbs),
        storage_version=t.storage_version,
        printer_columns=t.printer_columns.decode(),
    )


def _tombstone(d: Delete, now: dt.datetime) -> _Row:
    """The tombstone of an object never stored: no content, so a late older upsert finds it."""
    return _Row(
        cluster=d.cluster,
        api_group=d.group,
        version=d.version,
        resource=d.resource,
        kind="",
        namespace=d.namespace,
        name=d.name,
        uid="",
        owner_uid="",
        resource_version=d.resource_version,
        epoch=0,
        created_at=None,
        synced_at=now,
        deleted=True,
        object=b"{}",
        labels=_EMPTY,
    )


# -- searching: each condition as the SQL builders define it


def _order_value(row: _Row, field: str) -> Any:
    if field == "created_at":
        return row.created_at or NULL_CREATED_AT
    return getattr(row, field)


def _sort_key(field: str) -> Callable[[_Row], Any]:
    return lambda r: _order_value(r, field)


def _sort(rows: list[_Row], order: Sequence[OrderBy]) -> None:
    """In place, in ``order`` (mixed directions: one stable sort per field, the last field first)."""
    for o in reversed(order):
        rows.sort(key=_sort_key(o.field), reverse=o.desc)


def _is_after(row: _Row, key: Sequence[Any], order: Sequence[OrderBy]) -> bool:
    """Whether ``row`` comes strictly after the keyset ``key`` in ``order``."""
    for o, k in zip(order, key, strict=True):
        v = _order_value(row, o.field)
        if v != k:
            return bool(v < k) if o.desc else bool(v > k)
    return False


def _in_set(value: str, flt: SetFilter) -> bool:
    return (flt.include is None or value in flt.include) and value not in flt.exclude


def _in_values(value: str | None, op: Operator, values: tuple[str, ...]) -> bool:
    """``=``, ``in``, ``!=``, ``notin``: a missing value (None) matches only the negations."""
    if op == Operator.EQUALS:
        return value == values[0]
    if op == Operator.IN:
        return value in values
    if op == Operator.NOT_EQUALS:
        return value != values[0]
    return value not in values


def _label_matches(labels: Mapping[str, str], req: LabelRequirement) -> bool:
    value = labels.get(req.key)
    if req.operator == Operator.EXISTS:
        return value is not None
    if req.operator == Operator.DOES_NOT_EXIST:
        return value is None
    return _in_values(value, req.operator, req.values)


_COLUMN_PATHS: dict[tuple[str, ...], Callable[[_Row], str]] = {
    ("metadata", "name"): lambda r: r.name,
    ("metadata", "namespace"): lambda r: r.namespace,
    ("metadata", "uid"): lambda r: r.uid,
}


def _json_text(value: Any) -> str:
    """A JSON value as the SQL stores compare it: strings as they are, others as JSON text, a
    missing value or JSON null as ""."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return msgspec.json.encode(value).decode()


def _field_text(row: _Row, path: tuple[str, ...], parsed: dict[int, Any]) -> str:
    column = _COLUMN_PATHS.get(path)
    if column is not None:
        return column(row)
    obj = parsed.get(id(row))
    if obj is None:
        obj = parsed[id(row)] = msgspec.json.decode(row.object)
    for seg in path:
        obj = obj.get(seg) if isinstance(obj, dict) else None
    return _json_text(obj)


def _field_matches(text: str, req: FieldRequirement) -> bool:
    if req.operator in (Operator.EXISTS, Operator.DOES_NOT_EXIST):
        raise StorageRejected(
            f"field selector on {'.'.join(req.path)}: operator {req.operator} is not supported"
        )
    return _in_values(text, req.operator, req.values)


def _owners(search: Search, rows: Sequence[_Row]) -> set[str]:
    """The uids whose objects a search's owner condition asks for (see ``selects._owner_condition``)."""
    cluster = search.one_cluster
    live = [r for r in rows if not r.deleted]
    if search.owner_uid:
        owners = {search.owner_uid}
    else:
        gr = search.owner_gr
        owners = {
            r.uid
            for r in live
            if r.name == search.owner_name
            and r.cluster == cluster
            and (gr is None or (r.api_group, r.resource) == (gr.group, gr.resource))
        }
    for _ in range(search.owner_seniority):
        owners = {r.uid for r in live if r.owner_uid in owners and (not cluster or r.cluster == cluster)}
    return owners


def _condition(search: Search, owners: set[str] | None) -> Callable[[_Row], bool]:
    """One predicate for every filter of ``search`` (no paging), tombstones excluded."""
    parsed: dict[int, Any] = {}  # rows decoded for field selectors, by id, during this search

    def test(r: _Row) -> bool:
        if r.deleted:
            return False
        if search.single_cluster and r.cluster != search.single_cluster:
            return False
        if search.namespace and r.namespace != search.namespace:
            return False
        if not (
            _in_set(r.cluster, search.clusters)
            and _in_set(r.namespace, search.namespaces)
            and _in_set(r.name, search.names)
        ):
            return False
        if search.since is not None and (r.created_at is None or r.created_at < search.since):
            return False
        if search.before is not None and (r.created_at is None or r.created_at >= search.before):
            return False
        if owners is not None and r.owner_uid not in owners:
            return False
        if search.fuzzy_name and search.fuzzy_name not in r.name:
            return False
        if not all(_label_matches(r.labels, req) for req in search.labels):
            return False
        if search.visibility is not None and not any(
            g.cluster == r.cluster
            and g.group == r.api_group
            and g.resource == r.resource
            and g.allows(r.namespace, r.name)
            for g in search.visibility
        ):
            return False
        return all(_field_matches(_field_text(r, req.path, parsed), req) for req in search.fields)

    return test


_stores: dict[str, MemoryStore] = {}
_stores_lock = threading.Lock()


def open_memory_store(url: str, options: StoreOptions | None = None) -> Store:
    """The process-wide store named by ``url`` (created on first use); the entry point of
    ``memory``. ``options`` do not apply (no pool, purges are one step)."""
    with _stores_lock:
        store = _stores.get(url)
        if store is None:
            store = _stores[url] = MemoryStore()
        return store
