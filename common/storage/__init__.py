"""The storage layer: the one place that knows how synced objects are stored (DESIGN section 7).

Its face is small: the Protocols and errors of ``base`` (a reader for the API tier, a writer for the
writer tier), the storage-neutral ``Search`` of ``query``, and :func:`open_store`, which finds the
backend for a URL's scheme in the Python entry-point group ``clusterpedia.storage``. The project's
own SQL backend (``sql``: SQLite, PostgreSQL, MySQL/MariaDB) registers there like any third-party
one, so another backend is a ``pip install`` away (docs/storage.md).

Nothing here imports a backend: a tier that opens a store loads only the one its URL names.
"""

from __future__ import annotations

from importlib.metadata import entry_points

from common.storage.base import (
    EVENT_RESOURCES,
    Change,
    ChangeFeed,
    Expired,
    ListPage,
    ServedResource,
    StorageError,
    StorageRejected,
    StorageUnavailable,
    Store,
    StoredObject,
    StoreFactory,
    StoreOptions,
    StoreReader,
    StoreWriter,
    UnknownCluster,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "EVENT_RESOURCES",
    "Change",
    "ChangeFeed",
    "Expired",
    "ListPage",
    "ServedResource",
    "StorageError",
    "StorageRejected",
    "StorageUnavailable",
    "Store",
    "StoreOptions",
    "StoreReader",
    "StoreWriter",
    "StoredObject",
    "UnknownCluster",
    "backend_names",
    "load_backend",
    "open_store",
    "url_scheme",
]

ENTRY_POINT_GROUP = "clusterpedia.storage"


def url_scheme(url: str) -> str:
    """The backend name in a storage URL: ``postgresql+psycopg://...`` -> ``postgresql``."""
    scheme, sep, _ = url.partition("://")
    return scheme.partition("+")[0].lower() if sep else ""


def backend_names() -> list[str]:
    """The schemes of every installed backend."""
    return sorted({ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)})


def open_store(url: str, options: StoreOptions | None = None) -> Store:
    """The store at ``url``, opened by the backend registered for its scheme (no I/O yet).

    Raises ValueError when no installed backend serves the scheme, or several different ones do."""
    return load_backend(url)(url, options or StoreOptions())


def load_backend(url: str) -> StoreFactory:
    """The factory of the backend for ``url``'s scheme, its module imported (a tier calls this before
    it reports ready, so that importing a backend's driver is not left to its first request)."""
    scheme = url_scheme(url)
    found = {ep.value: ep for ep in entry_points(group=ENTRY_POINT_GROUP, name=scheme)} if scheme else {}
    if not found:
        raise ValueError(
            f"unsupported storage URL scheme {scheme or url.partition(':')[0]!r}: installed backends are"
            f" {', '.join(backend_names()) or 'none'} (entry-point group {ENTRY_POINT_GROUP})"
        )
    if len(found) > 1:
        raise ValueError(
            f"storage URL scheme {scheme!r} is registered by several backends: {', '.join(sorted(found))}"
        )
    (entry,) = found.values()
    factory: StoreFactory = entry.load()
    return factory
