"""Test databases on the project's own PostgreSQL, MariaDB and Redis (started by hack/services.sh).

Every test module gets a clean database: a fresh ``test_<random>`` database in PostgreSQL and
MariaDB (dropped afterwards), a Redis database number claimed for the module (several pytest
sessions share one Redis, so a number is claimed atomically in DB 0 before it is used and flushed
before and after), and a temporary SQLite file.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pymysql
import redis

from harness.paths import HACK, REPO_ROOT, cache_dir

ENV_NAMES = ("CLUSTERPEDIA_TEST_POSTGRES", "CLUSTERPEDIA_TEST_MYSQL", "CLUSTERPEDIA_TEST_REDIS")
DEFAULT_URLS = {
    "CLUSTERPEDIA_TEST_POSTGRES": "postgresql://clusterpedia:clusterpedia@127.0.0.1:55432/clusterpedia",
    "CLUSTERPEDIA_TEST_MYSQL": "mysql://clusterpedia:clusterpedia@127.0.0.1:53306/clusterpedia",
    "CLUSTERPEDIA_TEST_REDIS": "redis://127.0.0.1:56379/0",
}
_REDIS_CLAIM_PREFIX = "clusterpedia-test:db-claim:"
_REDIS_CLAIM_SECONDS = 6 * 3600


def services_env_file() -> Path:
    return cache_dir() / "services" / "env"


def service_urls() -> dict[str, str]:
    """The base URLs, from $CLUSTERPEDIA_CACHE/services/env; the process environment overrides."""
    urls = dict(DEFAULT_URLS)
    env_file = services_env_file()
    if env_file.exists():
        for line in env_file.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and key.strip() in urls:
                urls[key.strip()] = value.strip()
    for name in ENV_NAMES:
        if os.environ.get(name):
            urls[name] = os.environ[name]
    return urls


def answers(url: str) -> bool:
    """Does something listen at the URL's host and port?"""
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), timeout=1):
            return True
    except OSError:
        return False


def ensure_services() -> dict[str, str]:
    """Make sure PostgreSQL, MariaDB and Redis answer; run hack/services.sh start if one does not.

    Raises RuntimeError with the script's output when they cannot be started (never skips)."""
    urls = service_urls()
    if all(answers(u) for u in urls.values()):
        return urls
    proc = subprocess.run(
        ["bash", str(HACK / "services.sh"), "start"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    urls = service_urls()
    down = [name for name, u in urls.items() if not answers(u)]
    if proc.returncode != 0 or down:
        raise RuntimeError(
            f"hack/services.sh start failed (exit {proc.returncode}; not answering: {down}):\n"
            f"{proc.stdout}{proc.stderr}"
        )
    return urls


def _with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


def new_database_name() -> str:
    """``test_<unix seconds>_<random>``: the time lets a later session drop what a killed one left."""
    return f"test_{int(time.time())}_{secrets.token_hex(4)}"


def _stale(name: str, max_age_seconds: float) -> bool:
    parts = name.split("_")
    if len(parts) != 3 or parts[0] != "test" or not parts[1].isdigit():
        return False
    return time.time() - int(parts[1]) > max_age_seconds


STALE_DATABASE_SECONDS = 6 * 3600


def drop_stale_databases(urls: dict[str, str], max_age_seconds: float = STALE_DATABASE_SECONDS) -> list[str]:
    """Drop test databases older than ``max_age_seconds`` (left by sessions that were killed)."""
    dropped: list[str] = []
    with psycopg.connect(urls["CLUSTERPEDIA_TEST_POSTGRES"], autocommit=True) as conn:
        names = [r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'test\\_%'")]
        for name in names:
            if _stale(name, max_age_seconds):
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                dropped.append(name)
    conn2 = _mysql_connect(urls["CLUSTERPEDIA_TEST_MYSQL"])
    try:
        with conn2.cursor() as cur:
            cur.execute("SHOW DATABASES LIKE 'test\\_%'")
            for (name,) in cur.fetchall():
                if _stale(name, max_age_seconds):
                    cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
                    dropped.append(name)
    finally:
        conn2.close()
    return dropped


@contextlib.contextmanager
def postgres_database(base_url: str) -> Iterator[str]:
    """A fresh PostgreSQL database owned by the test user; dropped (forcefully) on exit."""
    name = new_database_name()
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _with_database(base_url, name)
    finally:
        drop_postgres_database(base_url, name)


def drop_postgres_database(base_url: str, name: str, timeout: float = 60.0) -> None:
    """DROP DATABASE, ending our own leftover sessions (FORCE). An autovacuum worker busy in the
    database (after a bulk load) runs as the bootstrap superuser, which FORCE may not terminate
    for a non-superuser; a plain DROP asks autovacuum to leave, so that is retried meanwhile."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(base_url, autocommit=True) as conn:
        while True:
            try:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                return
            except psycopg.errors.InsufficientPrivilege:
                try:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
                    return
                except psycopg.errors.ObjectInUse:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(1.0)


def _mysql_connect(url: str) -> Any:
    parts = urlsplit(url)
    return pymysql.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 3306,
        user=parts.username or "",
        password=parts.password or "",
        autocommit=True,
    )


@contextlib.contextmanager
def mysql_database(base_url: str) -> Iterator[str]:
    """A fresh MariaDB database (utf8mb4); dropped on exit."""
    name = new_database_name()
    conn = _mysql_connect(base_url)
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    finally:
        conn.close()
    try:
        yield _with_database(base_url, name)
    finally:
        conn = _mysql_connect(base_url)
        try:
            with conn.cursor() as cur:
                # connections a test leaked would make DROP wait on metadata locks: end them first
                cur.execute(
                    "SELECT id FROM information_schema.processlist WHERE db = %s AND id <> CONNECTION_ID()",
                    (name,),
                )
                for (pid,) in cur.fetchall():
                    with contextlib.suppress(pymysql.MySQLError):
                        cur.execute(f"KILL {int(pid)}")
                cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        finally:
            conn.close()


@contextlib.contextmanager
def redis_database(base_url: str) -> Iterator[str]:
    """A Redis database number claimed for the caller, empty on entry and flushed on exit."""
    parts = urlsplit(base_url)
    admin = redis.Redis(host=parts.hostname or "127.0.0.1", port=parts.port or 6379, db=0)
    try:
        config: Any = admin.config_get("databases")
        databases = int(config.get("databases") or 16)
        owner = f"{socket.gethostname()}:{os.getpid()}:{time.time():.0f}"
        number = None
        for candidate in range(1, databases):
            if admin.set(f"{_REDIS_CLAIM_PREFIX}{candidate}", owner, nx=True, ex=_REDIS_CLAIM_SECONDS):
                number = candidate
                break
        if number is None:
            raise RuntimeError(
                f"all {databases - 1} Redis test databases are claimed (keys {_REDIS_CLAIM_PREFIX}*)"
            )
        url = urlunsplit((parts.scheme, parts.netloc, f"/{number}", parts.query, parts.fragment))
        db = redis.Redis(host=parts.hostname or "127.0.0.1", port=parts.port or 6379, db=number)
        try:
            db.flushdb()
            yield url
        finally:
            db.flushdb()
            db.close()
            admin.delete(f"{_REDIS_CLAIM_PREFIX}{number}")
    finally:
        admin.close()
