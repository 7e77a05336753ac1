"""A JSON-lines file store for Clusterpedia (``jsonl:///path/to/store.jsonl``): a sample plug-in.

It shows what a third-party storage backend needs: a factory registered under its URL scheme in the
entry-point group ``clusterpedia.storage`` (this package's ``pyproject.toml``), and a class that keeps
the guarantees of ``common.storage.base`` — which it gets by building on the project's memory backend:
the objects live in a :class:`common.storage.memory.MemoryStore` (reads, searches and guards are
its), and every change that store accepts is appended to the file as one line, then flushed and
synced before the call returns (the writer acks its queue entries only after that). ``migrate`` (or
the first write) replays the file, so a restarted process finds what it had.

A line is one unit of commit: the queue's own events (``common.events``, JSON with the object as
base64): the upserts, deletes and resource types of one ``apply``, or one ``ListDone``, or one
``PurgeCluster``. Replaying them through the same guards gives the same store, since the guards make
every write idempotent. A last line cut short by a crash (never acknowledged) is dropped at replay;
any other unreadable line stops the store with a StorageError.

Tombstone collections are not logged: at replay a tombstone's age restarts, so it is kept one TTL
longer after a restart, never shorter (a late older event still finds it). Event retention
(``expire_events``) is not logged either: events it tombstoned come back at replay and its next
pass tombstones them again. The file only grows; a
real backend would write a snapshot now and then and start a new log.

One process owns a file (an exclusive ``flock``); inside it, every tier that opens the same URL
shares one store, which is released when the last of them closes it.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO, TypeVar
from urllib.parse import unquote, urlsplit

import msgspec

from common.events import Delete, Event, ListDone, PurgeCluster, ResourceType, Upsert
from common.storage import (
    ListPage,
    ServedResource,
    StorageError,
    StorageUnavailable,
    StoredObject,
    StoreOptions,
)
from common.storage.grouping import GroupCount
from common.storage.memory import MemoryStore
from common.storage.query import Search

__all__ = ["JsonlStore", "open_jsonl_store"]

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(list[Event])
_E = TypeVar("_E", ListDone, PurgeCluster)


class JsonlStore(MemoryStore):
    """The store of one file (see the module docstring); open it with :func:`open_jsonl_store`."""

    name = "jsonl"

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self._log_lock = threading.Lock()  # one line at a time, in the order the changes were applied
        self._file: BinaryIO | None = None
        self._users = 0

    # -- opening and closing

    def migrate(self) -> None:
        """Replay the file (once; creating it and its directory when missing)."""
        self._loaded()

    def close(self) -> None:
        """Release this user's handle; the last one closes the file (a later open replays it)."""
        with _stores_lock:
            self._users -= 1
            if self._users > 0:
                return
            _stores.pop(self.path, None)
        with self._log_lock:
            if self._file is not None:
                self._file.close()  # also releases the flock
                self._file = None

    def _loaded(self) -> BinaryIO:
        f = self._file
        if f is not None:  # replayed already: reads do not wait for a write's fsync
            return f
        with self._log_lock:
            if self._file is None:
                self._file = self._replay()
            return self._file

    def _replay(self) -> BinaryIO:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            f = open(self.path, "a+b")  # noqa: SIM115 (kept open until close)
        except OSError as e:
            raise StorageUnavailable(f"opening {self.path}: {e.strerror}") from e
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            f.close()
            raise StorageUnavailable(f"{self.path} is open in another process") from e
        f.seek(0)
        good = 0  # the end of the last whole line
        for number, line in enumerate(f, start=1):
            try:
                events = _decoder.decode(line)
            except msgspec.DecodeError as e:
                if line.endswith(b"\n"):
                    f.close()
                    raise StorageError(f"{self.path}: line {number} is not a change record: {e}") from e
                break  # the last line, cut short by a crash before it was acknowledged
            self._redo(events)
            good += len(line)
        f.truncate(good)
        f.seek(good)
        return f

    def _redo(self, events: list[Event]) -> None:
        """Apply one line again, as it was applied the first time."""
        for e in events:
            if isinstance(e, ListDone):
                MemoryStore.list_done(self, e)
            elif isinstance(e, PurgeCluster):
                MemoryStore.purge(self, e)
        MemoryStore.apply(
            self,
            [e for e in events if isinstance(e, Upsert)],
            [e for e in events if isinstance(e, Delete)],
            [e for e in events if isinstance(e, ResourceType)],
        )

    def _append(self, events: Sequence[Event]) -> None:
        """Write one line and make it durable (the caller holds ``_log_lock``)."""
        f = self._file
        assert f is not None
        try:
            f.write(_encoder.encode(list(events)) + b"\n")
            f.flush()
            os.fsync(f.fileno())
        except OSError as e:
            # Applied in memory but not durable: the writer retries the batch (writes are idempotent).
            raise StorageUnavailable(f"appending to {self.path}: {e.strerror}") from e

    # -- writes: applied by the memory store (which refuses bad data before changing anything), then logged

    def apply(
        self, upserts: Sequence[Upsert], deletes: Sequence[Delete], resource_types: Sequence[ResourceType]
    ) -> None:
        self._loaded()
        with self._log_lock:
            super().apply(upserts, deletes, resource_types)
            self._append([*upserts, *deletes, *resource_types])

    def list_done(self, event: ListDone) -> int:
        return self._logged(super().list_done, event)

    def purge(self, event: PurgeCluster) -> int:
        return self._logged(super().purge, event)

    def _logged(self, write: Callable[[_E], int], event: _E) -> int:
        self._loaded()
        with self._log_lock:
            n = write(event)
            self._append([event])
        return n

    # -- reads: the memory store's, once the file has been replayed

    async def resource_types(self) -> list[ServedResource]:
        self._loaded()
        return await super().resource_types()

    async def list_objects(self, search: Search) -> ListPage:
        self._loaded()
        return await super().list_objects(search)

    async def count_objects(self, search: Search) -> int:
        self._loaded()
        return await super().count_objects(search)

    async def count_groups(self, search: Search, max_groups: int) -> list[GroupCount]:
        self._loaded()
        return await super().count_groups(search, max_groups)

    async def get_objects(
        self, cluster: str, group: str, resource: str, namespace: str, name: str
    ) -> list[StoredObject]:
        self._loaded()
        return await super().get_objects(cluster, group, resource, namespace, name)


_stores: dict[Path, JsonlStore] = {}
_stores_lock = threading.Lock()


def open_jsonl_store(url: str, options: StoreOptions | None = None) -> JsonlStore:
    """The store of the file in ``url`` (``jsonl:///var/lib/clusterpedia/store.jsonl``), shared by
    every user in this process until the last one closes it; the entry point of ``jsonl``. No I/O
    yet: ``migrate`` or the first request replays the file. ``options`` do not apply."""
    parts = urlsplit(url)
    if parts.netloc or not parts.path.startswith("/") or parts.query or parts.fragment:
        raise ValueError(f"a jsonl store URL is jsonl:///absolute/path/to/file.jsonl, not {url!r}")
    path = Path(unquote(parts.path))
    with _stores_lock:
        store = _stores.get(path)
        if store is None:
            store = _stores[path] = JsonlStore(path)
        store._users += 1
        return store
