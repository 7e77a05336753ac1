"""The stores and queue the benchmark runs against, in databases of their own.

PostgreSQL, MariaDB and Redis are the project's loopback instances started by ``hack/services.sh``
(URLs in ``$CLUSTERPEDIA_CACHE/services/env``). The benchmark never touches the test databases:
it creates ``cpbench`` beside them and drops its tables between scenarios; Redis gets db 63.
SQLite is a file in the run's scratch directory.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import redis
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from common.settings import env_value
from common.storage.engine import create_schema, make_engine, normalise_url
from common.storage.schema import metadata

REPO = Path(__file__).resolve().parent.parent
BENCH_DB = "cpbench"
BENCH_REDIS_DB = 63
STORES = ("sqlite", "postgresql", "mysql")


def cache_dir() -> Path:
    explicit = env_value("CLUSTERPEDIA_CACHE")
    if explicit:
        return Path(explicit)
    xdg = env_value("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "clusterpedia-py"


def service_urls(start: bool = True) -> dict[str, str]:
    """postgresql/mysql/redis base URLs of the project's services (started when ``start``)."""
    env_file = cache_dir() / "services" / "env"
    if start and not env_file.exists():
        subprocess.run(["bash", str(REPO / "hack" / "services.sh"), "start"], check=True)
    urls: dict[str, str] = {}
    for line in env_file.read_text().splitlines():
        if "=" not in line or line.startswith("#"):
            continue
        key, value = line.split("=", 1)
        for kind in ("POSTGRES", "MYSQL", "REDIS"):
            if key == f"CLUSTERPEDIA_TEST_{kind}":
                urls[{"POSTGRES": "postgresql", "MYSQL": "mysql", "REDIS": "redis"}[kind]] = value
    return urls


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


def bench_store(kind: str, scratch: Path) -> Store:
    """The benchmark's own database of ``kind`` (created when missing)."""
    if kind == "sqlite":
        return Store(kind, f"sqlite:///{scratch / 'bench.db'}")
    base = service_urls()[kind]
    server = create_engine(normalise_url(base), isolation_level="AUTOCOMMIT")
    try:
        with server.connect() as conn:
            if kind == "postgresql":
                exists = conn.execute(
                    text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": BENCH_DB}
                ).first()
                if exists is None:
                    conn.execute(text(f'CREATE DATABASE "{BENCH_DB}"'))
            else:
                conn.execute(text(f"CREATE DATABASE IF NOT EXISTS `{BENCH_DB}` CHARACTER SET utf8mb4"))
    finally:
        server.dispose()
    url = make_url(base).set(database=BENCH_DB).render_as_string(hide_password=False)
    return Store(kind, url)


def bench_redis_url() -> str:
    base = make_url(service_urls()["redis"])
    return f"redis://{base.host}:{base.port}/{BENCH_REDIS_DB}"


def flush_bench_redis() -> None:
    client = redis.Redis.from_url(bench_redis_url())
    try:
        client.flushdb()
    finally:
        client.close()


def server_versions() -> dict[str, str]:
    """Versions of the PostgreSQL, MariaDB and Redis servers answering on loopback."""
    out: dict[str, str] = {}
    urls = service_urls()
    for kind, query in (("postgresql", "SHOW server_version"), ("mysql", "SELECT VERSION()")):
        try:
            engine = create_engine(normalise_url(urls[kind]))
            with engine.connect() as conn:
                out[kind] = str(conn.execute(text(query)).scalar())
            engine.dispose()
        except Exception as exc:
            out[kind] = f"unavailable ({type(exc).__name__})"
    try:
        client = redis.Redis.from_url(urls["redis"])
        out["redis"] = str(client.info("server")["redis_version"])
        client.close()
    except Exception as exc:
        out["redis"] = f"unavailable ({type(exc).__name__})"
    return out
