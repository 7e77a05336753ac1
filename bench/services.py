"""The stores and the queue the benchmark runs against, in databases of its own.

PostgreSQL, MariaDB and Redis are the project's loopback instances (``hack/services.sh``, started
when missing). Like a test module, a benchmark run takes a fresh database on each server and a
claimed Redis database number through the harness (``harness/stores.py``), so it never
touches another run's data and leaves nothing behind; between scenarios it drops and recreates
the project's tables. SQLite is a file in the run's scratch directory.
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import redis
from sqlalchemy import Engine, create_engine, text

from common.storage.sql.engine import create_schema, make_engine, normalise_url
from common.storage.sql.schema import metadata

REPO = Path(__file__).resolve().parent.parent
STORES = ("sqlite", "postgresql", "mysql")


@dataclass(frozen=True)
class Store:
    kind: str
    """sqlite, postgresql or mysql."""
    url: str
    """URL as the project's settings take it (``storage:``)."""

    def engine(self, *, pool_size: int = 5) -> Engine:
        return make_engine(self.url, pool_size=pool_size)

    def reset(self) -> None:
        """Drop and recreate the project's tables: an empty store."""
        engine = self.engine(pool_size=1)
        try:
            metadata.drop_all(engine)
            create_schema(engine)
        finally:
            engine.dispose()


class Services:
    """Databases and a Redis db for one run; all released on exit."""

    def __init__(self, scratch: Path) -> None:
        self.scratch = scratch
        self._stack = contextlib.ExitStack()
        self._stores: dict[str, Store] = {}
        self._redis = ""
        self.urls: dict[str, str] = {}

    def __enter__(self) -> Services:
        from harness.stores import ensure_services

        self.urls = ensure_services()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self._stack.close()
        except Exception as e:  # a teardown failure must not cost the run's results
            print(f"[bench] releasing the run's databases failed: {e!r}", file=sys.stderr, flush=True)

    def store(self, kind: str) -> Store:
        if kind not in self._stores:
            from harness.stores import mysql_database, postgres_database

            if kind == "sqlite":
                url = f"sqlite:///{self.scratch / 'bench.db'}"
            elif kind == "postgresql":
                url = self._stack.enter_context(postgres_database(self.urls["CLUSTERPEDIA_TEST_POSTGRES"]))
            elif kind == "mysql":
                url = self._stack.enter_context(mysql_database(self.urls["CLUSTERPEDIA_TEST_MYSQL"]))
            else:
                raise ValueError(f"unknown store {kind!r}")
            self._stores[kind] = Store(kind, url)
        return self._stores[kind]

    def redis_url(self) -> str:
        """``redis://host:port/N`` of the run's own Redis database."""
        if not self._redis:
            from harness.stores import redis_database

            self._redis = self._stack.enter_context(redis_database(self.urls["CLUSTERPEDIA_TEST_REDIS"]))
        return self._redis

    def delete_stream(self, stream: str) -> None:
        client = redis.Redis.from_url(self.redis_url())
        try:
            client.delete(stream)
        finally:
            client.close()

    def versions(self) -> dict[str, str]:
        """Versions of the PostgreSQL, MariaDB and Redis servers."""
        out: dict[str, str] = {}
        for kind, key, query in (
            ("postgresql", "CLUSTERPEDIA_TEST_POSTGRES", "SHOW server_version"),
            ("mysql", "CLUSTERPEDIA_TEST_MYSQL", "SELECT VERSION()"),
        ):
            try:
                engine = create_engine(normalise_url(self.urls[key]))
                with engine.connect() as conn:
                    out[kind] = str(conn.execute(text(query)).scalar())
                engine.dispose()
            except Exception as exc:
                out[kind] = f"unavailable ({type(exc).__name__})"
        try:
            client = redis.Redis.from_url(self.urls["CLUSTERPEDIA_TEST_REDIS"])
            out["redis"] = str(client.info("server")["redis_version"])
            client.close()
        except Exception as exc:
            out["redis"] = f"unavailable ({type(exc).__name__})"
        return out
