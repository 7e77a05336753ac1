"""The storage seam: backends found by URL scheme through entry points, and SQLAlchemy errors
translated into the seam's few errors (nothing of SQLAlchemy reaches a tier)."""

from __future__ import annotations

import asyncio
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from sqlalchemy import exc as sa_exc

from common.storage import (
    ENTRY_POINT_GROUP,
    StorageError,
    StorageRejected,
    StorageUnavailable,
    StoreOptions,
    backend_names,
    load_backend,
    open_store,
    url_scheme,
)
from common.storage.memory import open_memory_store
from common.storage.sql.dialects import Dialect
from common.storage.sql.store import SqlStore, translated


def test_the_sql_backends_register_as_entry_points() -> None:
    names = {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}
    assert {"sqlite", "postgresql", "mysql"} <= names
    assert {"sqlite", "postgresql", "mysql"} <= set(backend_names())


@pytest.mark.parametrize(
    ("url", "scheme", "name"),
    [
        ("sqlite:///store.db", "sqlite", "sqlite"),
        ("postgresql://u:p@127.0.0.1:1/db", "postgresql", "postgresql"),
        ("postgresql+psycopg://u:p@127.0.0.1:1/db", "postgresql", "postgresql"),
        ("mysql://u:p@127.0.0.1:1/db", "mysql", "mysql"),
    ],
)
def test_open_store_picks_the_backend_by_scheme(tmp_path: Path, url: str, scheme: str, name: str) -> None:
    """Opening does no I/O: nothing listens on port 1."""
    assert url_scheme(url) == scheme
    store = open_store(url.replace("store.db", str(tmp_path / "store.db")), StoreOptions(chunk_rows=10))
    try:
        assert isinstance(store, SqlStore) and store.name == name
    finally:
        store.close()


def test_load_backend_returns_the_registered_factory() -> None:
    assert load_backend("sqlite:///x.db") is SqlStore
    assert load_backend("postgresql+psycopg://h/db") is SqlStore
    assert load_backend("memory://") is open_memory_store


@pytest.mark.parametrize("url", ["nope://x", "clusterpedia.db", "redis://127.0.0.1/0"])
def test_an_unknown_scheme_names_the_installed_backends(url: str) -> None:
    with pytest.raises(ValueError, match=r"unsupported storage URL scheme .*installed backends are .*sqlite"):
        open_store(url)


def test_a_store_that_does_not_answer_is_unavailable(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'missing' / 'store.db'}")  # its directory does not exist
    try:
        with pytest.raises(StorageUnavailable, match="unable to open database file"):
            store.migrate()
        with pytest.raises(StorageUnavailable, match="checking the store"):
            asyncio.run(store.ping())
    finally:
        store.close()


def _dbapi(cls: type[sa_exc.DBAPIError]) -> sa_exc.DBAPIError:
    return cls("INSERT INTO resources ... secret object", {"object": "x" * 1000}, Exception("boom\nline 2"))


@pytest.mark.parametrize(
    ("error", "rejectable", "expected"),
    [
        (_dbapi(sa_exc.OperationalError), True, StorageUnavailable),
        (_dbapi(sa_exc.InterfaceError), True, StorageUnavailable),
        (_dbapi(sa_exc.DataError), True, StorageRejected),
        (_dbapi(sa_exc.IntegrityError), True, StorageRejected),
        (_dbapi(sa_exc.IntegrityError), False, StorageUnavailable),  # schema creation: a race, retry
        (sa_exc.TimeoutError("QueuePool limit reached"), True, StorageUnavailable),
        (b"\xff".decode, True, StorageRejected),
        (sa_exc.ArgumentError("bad"), True, StorageError),
    ],
)
def test_sqlalchemy_errors_become_storage_errors(error: object, rejectable: bool, expected: type) -> None:
    with pytest.raises(expected) as info, translated("writing a batch", rejectable=rejectable):
        if callable(error):
            error()
        assert isinstance(error, BaseException)
        raise error
    assert type(info.value) is expected
    message = str(info.value)
    assert message.startswith("writing a batch: ")
    # the driver's first line only: never the statement or its parameters (whole objects)
    assert "secret object" not in message and "xxxx" not in message and "line 2" not in message


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("sqlite", Dialect.SQLITE),
        ("postgresql", Dialect.POSTGRESQL),
        ("postgresql+psycopg", Dialect.POSTGRESQL),
        ("postgres", Dialect.POSTGRESQL),
        ("mysql+pymysql", Dialect.MYSQL),
        ("mariadb", Dialect.MYSQL),
    ],
)
def test_dialect_names_map_to_one_dialect(name: str, expected: Dialect) -> None:
    assert Dialect.of(name) is expected
    assert Dialect.of(expected.driver) is expected


def test_an_unknown_dialect_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported SQL dialect 'oracle'"):
        Dialect.of("oracle")
