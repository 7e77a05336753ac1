"""The storage interface: what the tiers may ask of a store, and the few errors it answers with.

Tiers hand the store parsed requests (a ``Search``, a batch of events) and get back pages, objects,
counts and these errors; they never see SQL, a connection or a driver exception (DESIGN section 7).
The reader is asyncio code (the API tier serves many requests on one loop: a backend that blocks
runs its work in a worker thread, as the SQL one does); the writer is plain blocking code (a writer
is a loop around a transaction), like the queue's consumer.

Guarantees every backend keeps (DESIGN section 5), whatever it stores in:

* An older event never overwrites a newer object: an upsert applies when its resourceVersion is
  above the stored one, or equal to it on a live object (a re-delivery: only the epoch moves, and
  the epoch never goes back). A delete leaves a tombstone at its resourceVersion, so a late older
  upsert cannot resurrect the object; ``list_done`` tombstones what a list did not return. Several
  writers may apply one queue at once, each event possibly twice.
* Reads never return tombstones. A list is in the search's total order (``query.full_order``);
  keyset pages (``Search.limit`` and a keyset ``Continue``) return each object present throughout
  a paged list exactly once while other objects change between pages.
* A backend may decline a search condition it cannot serve: :class:`StorageRejected` with a clear
  message, which the API tier answers as a 400.
* A search with a relation (``Search.relation``) is resolved with ``relations.resolve`` before any
  read of it (lists, counts), on the reader's snapshot.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from common.events import Delete, ListDone, PurgeCluster, ResourceType, Upsert
from common.storage.grouping import GroupCount
from common.storage.query import Continue, GroupResource, Search

EVENT_RESOURCES: tuple[GroupResource, ...] = (
    GroupResource("", "events"),
    GroupResource("events.k8s.io", "events"),
)
"""The resources ``StoreWriter.expire_events`` bounds: core/v1 and events.k8s.io/v1 Events."""


class StorageError(Exception):
    """A store failure a tier can act on; the message says what happened in the user's words."""


class StorageUnavailable(StorageError):
    """The store does not answer or failed transiently (down, connection lost, deadlock, pool
    exhausted): retrying later may succeed. The API tier answers 503."""


class StorageRejected(StorageError):
    """The store refuses this data or request (a value it cannot hold, a search condition it cannot
    serve, a continue token that does not fit): retrying cannot help. The API tier answers 400;
    a writer drops the event (logged)."""


class UnknownCluster(StorageError):
    """A search names a cluster the store knows nothing about (the API tier answers 404)."""

    def __init__(self, name: str) -> None:
        super().__init__(f'cluster "{name}" not found')
        self.name = name


@dataclass(frozen=True, slots=True)
class StoredObject:
    """One object as stored: its identity and the raw JSON (never parsed by the store).

    ``object`` already carries the cluster annotation ``shadow.clusterpedia.io/cluster-name`` and has
    no managedFields. With ``Search.only_metadata`` it holds only ``apiVersion``, ``kind`` and
    ``metadata``."""

    cluster: str
    group: str
    version: str
    resource: str
    kind: str
    namespace: str  # "" for cluster-scoped objects
    name: str
    resource_version: int
    """The member's resourceVersion (as an integer): the writers' guard."""
    created_at: dt.datetime | None  # naive UTC
    object: bytes
    revision: int = 0
    """The store's global revision of this row (``metadata.resourceVersion`` of ``object`` when the
    backend keeps revisions, see :class:`ChangeFeed`); 0 for a backend without them."""


@dataclass(frozen=True, slots=True)
class ListPage:
    """One page of a list.

    ``next``: where the next page starts, None on the last page (and, for offset paging, when the
    search did not ask ``with_continue``); the API tier encodes it as the continue token.
    ``remaining_item_count``: objects after this page, only when the search asked
    ``with_remaining_count`` and there is a next page. ``resource_version``: the list's
    ``metadata.resourceVersion``, repeated from the continue token on later pages: with a change
    feed, the store's head revision the first page was read at (a watch position); without one, an
    opaque marker (the highest member resourceVersion of the first page, ``"0"`` when empty)."""

    items: list[StoredObject]
    next: Continue | None = None
    remaining_item_count: int | None = None
    resource_version: str = "0"


@dataclass(frozen=True, slots=True)
class ServedResource:
    """What one cluster serves of one resource (from its discovery): the catalog the API tier builds
    discovery, routing and table printing from. ``printer_columns``: a CRD's
    ``additionalPrinterColumns`` as JSON text, "" for built-in kinds."""

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


@dataclass(frozen=True, slots=True)
class StoreOptions:
    """Tuning a backend may use (or ignore); from the tiers' settings."""

    chunk_rows: int = 5000
    """Most rows one purge or tombstone-collection transaction removes."""
    pool_size: int = 5
    """Connections a backend with a pool keeps per process."""


class StoreReader(Protocol):
    """The API tier's view of the store."""

    async def resource_types(self) -> list[ServedResource]:
        """Every resource of every cluster, ordered by cluster, group, resource."""
        ...

    async def list_objects(self, search: Search) -> ListPage:
        """One page of the objects matching ``search`` (a collection when ``search.group_resources``
        is set). Raises UnknownCluster (the path cluster or one of ``search.clusters.include`` is
        unknown), StorageRejected (a continue token that does not fit the search), StorageUnavailable."""
        ...

    async def count_objects(self, search: Search) -> int:
        """How many objects match ``search`` (ignoring its paging)."""
        ...

    async def get_objects(
        self, cluster: str, group: str, resource: str, namespace: str, name: str
    ) -> list[StoredObject]:
        """The object named so in ``cluster``, or in every cluster that has one (``cluster`` ""),
        ordered by cluster; at most a few dozen. Raises UnknownCluster for an unknown ``cluster``."""
        ...

    async def fingerprint(self, group: str, resources: Sequence[str]) -> str:
        """A value that changes whenever an object of these resources is written or deleted in any
        cluster (an upsert that applies, a delete, a list barrier's tombstones, a purge, tombstone
        expiry), whatever the clusters' resourceVersions: the API tier re-reads the members' RBAC
        when it changes. Opaque; compare for equality only."""
        ...

    async def ping(self) -> None:
        """Return when the store answers (readiness); raise StorageUnavailable when it does not."""
        ...

    async def count_groups(self, search: Search, max_groups: int) -> list[GroupCount]:
        """How many objects match ``search`` (ignoring its paging and order) per distinct values of
        its ``group_by`` fields (``common.storage.grouping``), computed by the store, ordered by
        those values; groups without objects do not appear. Raises UnknownCluster as
        ``list_objects``, StorageRejected when there are more than ``max_groups`` groups (or a
        condition the store cannot serve), StorageUnavailable."""
        ...


class StoreWriter(Protocol):
    """The writer tier's view of the store; each method is one unit of commit (or a series of
    small ones), guarded as the module docstring says, so applying anything twice is harmless."""

    def apply(
        self, upserts: Sequence[Upsert], deletes: Sequence[Delete], resource_types: Sequence[ResourceType]
    ) -> None:
        """Write a batch in one transaction: at most one event per object, sorted by key (concurrent
        writers then lock in the same order). Raises StorageRejected when the store refuses the data
        of some event (the writer retries them one by one to find it), StorageUnavailable."""
        ...

    def list_done(self, event: ListDone) -> int:
        """Tombstone the live objects of the event's resource with an epoch below its epoch and a
        resourceVersion at or below it (the list did not return them); the number of objects."""
        ...

    def purge(self, event: PurgeCluster) -> int:
        """Remove a cluster's objects and resource types (or one group/resource's), tombstones
        included, in chunks of ``StoreOptions.chunk_rows``; the number of objects."""
        ...

    def collect_tombstones(self, ttl_seconds: float) -> int:
        """Remove tombstones last written more than ``ttl_seconds`` ago; the number removed."""
        ...

    def refresh_statistics(self) -> int | None:
        """Bring the query planner's statistics of the stored objects up to date (PostgreSQL's
        ANALYZE); the store's estimate of its rows afterwards, or None where the store keeps them
        itself (the writer then stops asking; ``writer/analyzing.py`` says when it asks)."""
        ...

    def expire_events(self, max_age_seconds: float, max_per_cluster: int) -> int:
        """Retention of the churning ``EVENT_RESOURCES``: tombstone the live events created more than
        ``max_age_seconds`` ago and, in each cluster, all but the ``max_per_cluster`` most recently
        written ones of each of those resources (0 turns either bound off); the number tombstoned.

        Each takes the next revision, as a delete does (watchers see DELETED, as when a member's
        event TTL removes one) and keeps its resourceVersion, so a re-delivery of the same event does
        not revive it while a newer version of it (the event recurs) does; the tombstones then go
        with ``collect_tombstones``."""
        ...


class Store(StoreReader, StoreWriter, Protocol):
    """A backend, as ``open_store(url)`` returns it."""

    name: str
    """For logs and metrics: ``sqlite``, ``postgresql``, ``mysql``, ..."""

    def migrate(self) -> None:
        """Create or upgrade what the store needs (idempotent; every tier runs it at start). Raises
        StorageUnavailable (also when several processes race to do it: retry), StorageError (a
        store this release cannot use, e.g. one written by a newer release)."""
        ...

    def close(self) -> None:
        """Release connections; the store is not used afterwards."""
        ...


class Expired(StorageError):
    """A watch position older than the changes the store still holds (the API tier answers 410 Gone,
    reason Expired, and the client relists)."""


@dataclass(frozen=True, slots=True)
class Change:
    """The state of one row after a write, as a change feed reports it.

    ``deleted``: the row is a tombstone (``object`` is the last state). ``created_revision``: the
    revision at which this incarnation of the object appeared (a watcher from R reports ADDED when it
    is above R, MODIFIED otherwise, and nothing for an object both created and deleted after R).
    ``labels``, ``uid`` and ``owner_uid`` serve the conditions a watcher filters on."""

    object: StoredObject
    deleted: bool
    created_revision: int
    uid: str
    owner_uid: str
    labels: Mapping[str, str]

    @property
    def revision(self) -> int:
        return self.object.revision


@runtime_checkable
class ChangeFeed(Protocol):
    """Watch support (DESIGN section 9), which a backend may offer besides ``StoreReader``.

    Every write of a row (an upsert that applies, a delete, a list barrier's tombstone) takes the
    next value of one store-wide revision, in commit order: once ``window()`` reports a head H, every
    change up to H is readable and no later write takes a revision at or below H. A list's
    ``resource_version`` is the head it read at; each served object's ``metadata.resourceVersion``
    is its row's revision. Changes after the oldest retained revision stay readable; removing
    tombstones (expiry) or whole clusters (purge) moves that floor up."""

    async def window(self) -> tuple[int, int]:
        """``(floor, head)``: changes after ``floor`` and up to ``head`` are readable."""
        ...

    async def changes(
        self, after: int, upto: int, group_resources: Sequence[GroupResource] | None, limit: int
    ) -> list[Change]:
        """The rows written after revision ``after`` up to ``upto`` (of these resources, or all), in
        revision order, at most ``limit``: each row's latest state, tombstones included. Raises
        Expired when ``after`` is below the floor."""
        ...


StoreFactory = Callable[[str, StoreOptions], Store]
"""What a backend registers in the entry-point group ``clusterpedia.storage``: ``factory(url,
options)`` opens the store at ``url`` (no I/O yet: ``migrate`` or the first request connects)."""
