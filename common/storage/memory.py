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
from common.storage import relations
from common.storage.base import (
    EVENT_RESOURCES,
    Change,
    Expired,
    ListPage,
    ServedResource,
    StorageRejected,
    Store,
    StoredObject,
    StoreOptions,
    UnknownCluster,
)
from common.storage.facets import FACET_PATHS, NO_FACETS, Facets, facets_of
from common.storage.grouping import COLUMN_PATHS, GroupCount, TooManyGroups, path_value, sorted_groups
from common.storage.matching import NO_LABELS, condition, labels_of, owners
from common.storage.paging import NULL_CREATED_AT, Key, key_value, list_page, stored_object
from common.storage.query import GroupResource, OrderBy, Search, full_order
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
    revision: int
    created_revision: int
    facets: Facets = NO_FACETS


def _labels(event: Upsert) -> Mapping[str, str]:
    try:
        return labels_of(event.object)
    except msgspec.DecodeError as e:
        raise StorageRejected(
            f"writing a batch: the object {event.namespace}/{event.name} is not JSON: {e}"
        ) from e


_FACET_INDEX = {path: i for i, path in enumerate(FACET_PATHS)}

_Bucket = dict[tuple[str, str, str], _Row]  # (cluster, namespace, name) -> row, of one group/resource


class MemoryStore:
    """The store of one ``memory://`` URL (see the module docstring)."""

    name = "memory"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._types: dict[tuple[str, str, str], ServedResource] = {}
        self._head = 0
        self._floor = 0
        self._by_revision: dict[int, tuple[tuple[str, str], tuple[str, str, str]]] = {}
        """Latest revision of each row -> (bucket, key), in revision order (the change feed)."""

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
        return await anyio.to_thread.run_sync(lambda: len(self._matches(search)[0]))

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
        matches, head = self._matches(search)
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

        rows, nxt, remaining, rv = list_page(search, fetch, lambda key: len(after(key)), head=head)
        items = [stored_object(r, search.only_metadata) for r in rows]
        return ListPage(items=items, next=nxt, remaining_item_count=remaining, resource_version=rv)

    def _matches(self, search: Search) -> tuple[list[_Row], int]:
        """The live rows matching every condition of ``search`` (unordered), and the head revision
        they were read at."""
        grs = search.group_resources or (GroupResource(search.group, search.resource),)
        with self._lock:
            self._check_clusters([search.single_cluster, *(search.clusters.include or ())])
            rows = [r for gr in dict.fromkeys(grs) for r in self._buckets.get(gr, {}).values()]
            head = self._head
            everything = (
                [r for b in self._buckets.values() for r in b.values()]
                if search.owner_uid or search.owner_name or search.relation is not None
                else []
            )
        search = relations.resolve(search, relations.scan_lookups(everything))
        owner_uids = owners(search, everything) if search.owner_uid or search.owner_name else None
        test = condition(search, owner_uids)
        return [r for r in rows if test(r)], head

    # -- group-by counts (common/storage/grouping.py)

    async def count_groups(self, search: Search, max_groups: int) -> list[GroupCount]:
        return await anyio.to_thread.run_sync(self._count_groups, search, max_groups)

    def _count_groups(self, search: Search, max_groups: int) -> list[GroupCount]:
        rows, _ = self._matches(search)
        columns = [f.column or COLUMN_PATHS.get(f.path, "") for f in search.group_by]
        # a faceted path reads the row's facet (common/storage/facets.py) unless it is None
        facets = [
            _FACET_INDEX.get(f.path, -1) if not c else -1
            for c, f in zip(columns, search.group_by, strict=True)
        ]
        counts: dict[tuple[str, ...], int] = {}
        for r in rows:
            values = [r.facets[i] if i >= 0 else None for i in facets]
            needs_object = any(not c and v is None for c, v in zip(columns, values, strict=True))
            obj = msgspec.json.decode(r.object) if needs_object else None
            key = tuple(
                getattr(r, column) if column else value if value is not None else path_value(obj, f.path)
                for column, value, f in zip(columns, values, search.group_by, strict=True)
            )
            counts[key] = counts.get(key, 0) + 1
            if len(counts) > max_groups:
                break
        try:
            return sorted_groups(counts.items(), max_groups)
        except TooManyGroups as e:
            raise StorageRejected(str(e)) from e

    # -- writes

    def apply(
        self, upserts: Sequence[Upsert], deletes: Sequence[Delete], resource_types: Sequence[ResourceType]
    ) -> None:
        now = utc_now()
        # Everything that can refuse the data happens before anything is written: one transaction.
        prepared = [(u, _labels(u), parse_timestamp(u.created_at), facets_of(u.object)) for u in upserts]
        types = [_served(t) for t in resource_types]
        with self._lock:
            for u, labels, created, facets in prepared:
                gr, key = (u.group, u.resource), (u.cluster, u.namespace, u.name)
                cur = self._buckets.get(gr, {}).get(key)
                if cur is not None and not (
                    u.resource_version > cur.resource_version
                    or (u.resource_version == cur.resource_version and not cur.deleted)
                ):
                    continue
                epoch = max(u.epoch, cur.epoch) if cur is not None else u.epoch
                if cur is not None and u.resource_version == cur.resource_version:
                    # a re-delivery: only the epoch moves (no new revision, no change to watch)
                    self._buckets[gr][key] = dataclasses.replace(cur, epoch=epoch, synced_at=now)
                    continue
                revision = self._next()
                self._put(
                    gr,
                    key,
                    _Row(
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
                        epoch=epoch,
                        created_at=created,
                        synced_at=now,
                        deleted=False,
                        object=u.object,
                        labels=labels,
                        revision=revision,
                        created_revision=revision if cur is None or cur.deleted else cur.created_revision,
                        facets=facets,
                    ),
                    cur,
                )
            for d in deletes:
                gr, key = (d.group, d.resource), (d.cluster, d.namespace, d.name)
                cur = self._buckets.get(gr, {}).get(key)
                if cur is None:
                    self._put(gr, key, _tombstone(d, now, self._next()), None)
                elif d.resource_version >= cur.resource_version:
                    # a tombstone written again keeps its revision: no second DELETED to watch
                    revision = cur.revision if cur.deleted else self._next()
                    rv = d.resource_version
                    row = dataclasses.replace(
                        cur, deleted=True, resource_version=rv, synced_at=now, revision=revision
                    )
                    self._put(gr, key, row, cur)
            for t in types:
                self._types[(t.cluster, t.group, t.resource)] = t

    def _next(self) -> int:
        self._head += 1
        return self._head

    def _put(self, gr: tuple[str, str], key: tuple[str, str, str], row: _Row, old: _Row | None) -> None:
        """Store ``row`` (under the lock) and record its revision in the change feed."""
        self._buckets.setdefault(gr, {})[key] = row
        if old is not None:
            self._by_revision.pop(old.revision, None)
        self._by_revision[row.revision] = (gr, key)

    def _drop(self, gr: tuple[str, str], key: tuple[str, str, str]) -> _Row:
        row = self._buckets[gr].pop(key)
        self._by_revision.pop(row.revision, None)
        return row

    def list_done(self, event: ListDone) -> int:
        now = utc_now()
        n = 0
        with self._lock:
            gr = (event.group, event.resource)
            bucket = self._buckets.get(gr, {})
            for key, r in list(bucket.items()):
                if (
                    r.cluster == event.cluster
                    and r.epoch < event.epoch
                    and r.resource_version <= event.epoch
                    and not r.deleted
                ):
                    row = dataclasses.replace(
                        r, deleted=True, resource_version=event.epoch, synced_at=now, revision=self._next()
                    )
                    self._put(gr, key, row, r)
                    n += 1
        return n

    def purge(self, event: PurgeCluster) -> int:
        def chosen(group: str, resource: str) -> bool:
            return (event.group is None or group == event.group) and (
                event.resource is None or resource == event.resource
            )

        n = 0
        with self._lock:
            for gr, bucket in self._buckets.items():
                if chosen(*gr):
                    gone = [k for k in bucket if k[0] == event.cluster]
                    for k in gone:
                        self._drop(gr, k)
                    n += len(gone)
            for key in [k for k in self._types if k[0] == event.cluster and chosen(k[1], k[2])]:
                del self._types[key]
            # The removed objects get no DELETED events: every watch older than this ends (Expired).
            self._floor = self._next()
        return n

    def collect_tombstones(self, ttl_seconds: float) -> int:
        cutoff = utc_now() - dt.timedelta(seconds=ttl_seconds)
        n = 0
        with self._lock:
            for gr, bucket in self._buckets.items():
                expired = [k for k, r in bucket.items() if r.deleted and r.synced_at < cutoff]
                for k in expired:
                    self._floor = max(self._floor, self._drop(gr, k).revision)
                n += len(expired)
        return n

    def refresh_statistics(self) -> int | None:
        return None  # no query planner: nothing to keep

    def expire_events(self, max_age_seconds: float, max_per_cluster: int) -> int:
        cutoff = utc_now() - dt.timedelta(seconds=max_age_seconds) if max_age_seconds > 0 else None
        now = utc_now()
        n = 0
        with self._lock:
            for gr in EVENT_RESOURCES:
                bucket = self._buckets.get(gr, {})
                live = sorted(((r.revision, k) for k, r in bucket.items() if not r.deleted), reverse=True)
                doomed: set[tuple[str, str, str]] = set()
                if cutoff is not None:
                    doomed.update(k for _, k in live if (bucket[k].created_at or NULL_CREATED_AT) < cutoff)
                if max_per_cluster > 0:
                    kept: dict[str, int] = {}
                    for _, k in live:  # newest first
                        kept[k[0]] = kept.get(k[0], 0) + 1
                        if kept[k[0]] > max_per_cluster:
                            doomed.add(k)
                for k in sorted(doomed):
                    r = bucket[k]
                    self._put(
                        gr, k, dataclasses.replace(r, deleted=True, synced_at=now, revision=self._next()), r
                    )
                n += len(doomed)
        return n

    # -- the change feed

    async def window(self) -> tuple[int, int]:
        with self._lock:
            return self._floor, self._head

    async def changes(
        self, after: int, upto: int, group_resources: Sequence[GroupResource] | None, limit: int
    ) -> list[Change]:
        wanted = set(group_resources) if group_resources is not None else None
        found: list[_Row] = []
        with self._lock:
            if after < self._floor:
                raise Expired(f"revision {after} is older than the changes kept (from {self._floor})")
            for revision in reversed(self._by_revision):
                if revision <= after:
                    break
                if revision > upto:
                    continue
                gr, key = self._by_revision[revision]
                if wanted is None or gr in wanted:
                    found.append(self._buckets[gr][key])
        found.reverse()
        return [
            Change(
                object=stored_object(r),
                deleted=r.deleted,
                created_revision=r.created_revision,
                uid=r.uid,
                owner_uid=r.owner_uid,
                labels=r.labels,
            )
            for r in found[:limit]
        ]


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


def _tombstone(d: Delete, now: dt.datetime, revision: int) -> _Row:
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
        labels=NO_LABELS,
        revision=revision,
        created_revision=revision,
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
