"""The SQL backend as the tiers see it: one ``Store`` over SQLite, PostgreSQL or MySQL/MariaDB.

Registered in the entry-point group ``clusterpedia.storage`` under ``sqlite``, ``postgresql`` and
``mysql`` (pyproject.toml). SQLAlchemy Core is synchronous: reads run in a worker thread so the API
tier's event loop keeps serving; writes run in the writer's own thread.

Every SQLAlchemy and driver error is translated here, so none reaches a tier: data the store refuses
(``DataError``, ``IntegrityError``: a value out of range, a constraint; an object that is not UTF-8)
becomes ``StorageRejected``; a database that does not answer, a lost connection, a deadlock or an
exhausted pool becomes ``StorageUnavailable``; anything else of SQLAlchemy a plain ``StorageError``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import TypeVar

import anyio.to_thread
from sqlalchemy import exc as sa_exc

from common.events import Delete, ListDone, PurgeCluster, ResourceType, Upsert
from common.storage.base import (
    Change,
    ListPage,
    ServedResource,
    StorageError,
    StorageRejected,
    StorageUnavailable,
    StoredObject,
    StoreOptions,
)
from common.storage.grouping import GroupCount
from common.storage.query import GroupResource, Search
from common.storage.sql.engine import create_schema, make_engine
from common.storage.sql.reading import SqlReader
from common.storage.sql.writing import SqlWriter

T = TypeVar("T")


def _first_line(exc: BaseException) -> str:
    """The driver's own message (without SQLAlchemy's statement and parameters, which may hold whole
    objects), first line only."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@contextlib.contextmanager
def translated(what: str, *, rejectable: bool = True) -> Iterator[None]:
    """Turn SQLAlchemy and driver errors raised inside into the storage errors of the seam.

    ``rejectable`` False: a refusal is a race as well (creating the schema while another process
    does), so it is reported as StorageUnavailable, which callers retry."""
    try:
        yield
    except (sa_exc.DataError, sa_exc.IntegrityError) as e:
        if rejectable:
            raise StorageRejected(f"{what}: the store refused the data: {_first_line(e)}") from e
        raise StorageUnavailable(f"{what}: {_first_line(e)}") from e
    except sa_exc.DBAPIError as e:
        raise StorageUnavailable(f"{what}: the store failed or does not answer: {_first_line(e)}") from e
    except sa_exc.TimeoutError as e:  # the pool had no free connection in time
        raise StorageUnavailable(f"{what}: no free connection to the store: {e}") from e
    except UnicodeDecodeError as e:
        raise StorageRejected(f"{what}: an object is not UTF-8 JSON: {e}") from e
    except sa_exc.SQLAlchemyError as e:
        raise StorageError(f"{what}: {_first_line(e)}") from e


class SqlStore:
    """A SQL store at ``url`` (``sqlite:///path.db``, ``postgresql://...``, ``mysql://...``).

    ``engine`` is public for the store's own tests and benchmarks, never for tiers."""

    def __init__(self, url: str, options: StoreOptions | None = None) -> None:
        opts = options or StoreOptions()
        with translated("opening the store"):
            self.engine = make_engine(url, pool_size=opts.pool_size)
        self.name = self.engine.dialect.name
        self._reader = SqlReader(self.engine)
        self._writer = SqlWriter(self.engine, chunk_rows=opts.chunk_rows)

    def migrate(self) -> None:
        with translated("creating or upgrading the store's schema", rejectable=False):
            create_schema(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    # -- reads: in a worker thread

    async def _read(self, what: str, fn: Callable[[], T]) -> T:
        def run() -> T:
            with translated(what):
                return fn()

        return await anyio.to_thread.run_sync(run)

    async def resource_types(self) -> list[ServedResource]:
        return await self._read("reading the resource types", self._reader.resource_types)

    async def list_objects(self, search: Search) -> ListPage:
        return await self._read("listing", partial(self._reader.list_objects, search))

    async def count_objects(self, search: Search) -> int:
        return await self._read("counting", partial(self._reader.count_objects, search))

    async def count_groups(self, search: Search, max_groups: int) -> list[GroupCount]:
        return await self._read("counting groups", partial(self._reader.count_groups, search, max_groups))

    async def get_objects(
        self, cluster: str, group: str, resource: str, namespace: str, name: str
    ) -> list[StoredObject]:
        get = partial(self._reader.get_objects, cluster, group, resource, namespace, name)
        return await self._read("getting an object", get)

    async def fingerprint(self, group: str, resources: Sequence[str]) -> str:
        return await self._read("reading a fingerprint", partial(self._reader.fingerprint, group, resources))

    async def window(self) -> tuple[int, int]:
        return await self._read("reading the change feed", self._reader.window)

    async def changes(
        self, after: int, upto: int, group_resources: Sequence[GroupResource] | None, limit: int
    ) -> list[Change]:
        read = partial(self._reader.changes, after, upto, group_resources, limit)
        return await self._read("reading the change feed", read)

    async def ping(self) -> None:
        await self._read("checking the store", self._reader.ping)

    # -- writes: in the caller's thread

    def apply(
        self, upserts: Sequence[Upsert], deletes: Sequence[Delete], resource_types: Sequence[ResourceType]
    ) -> None:
        with translated("writing a batch"):
            self._writer.apply(upserts, deletes, resource_types)

    def list_done(self, event: ListDone) -> int:
        with translated("tombstoning what a list did not return"):
            return self._writer.list_done(event)

    def purge(self, event: PurgeCluster) -> int:
        with translated("purging a cluster"):
            return self._writer.purge(event)

    def collect_tombstones(self, ttl_seconds: float) -> int:
        with translated("collecting tombstones"):
            return self._writer.collect_tombstones(ttl_seconds)

    def refresh_statistics(self) -> int | None:
        with translated("refreshing the planner's statistics"):
            return self._writer.refresh_statistics()

    def expire_events(self, max_age_seconds: float, max_per_cluster: int) -> int:
        with translated("expiring events"):
            return self._writer.expire_events(max_age_seconds, max_per_cluster)
