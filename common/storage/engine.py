"""Storage URL -> SQLAlchemy Engine, with the driver and pool settings each store needs.

Accepted URLs: ``sqlite:///path.db`` (the embedded default), ``postgresql://user:pw@host/db``
(psycopg 3) and ``mysql://user:pw@host/db`` (PyMySQL; MariaDB or MySQL).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event, insert, select
from sqlalchemy.engine import make_url

from common.storage.schema import SCHEMA_VERSION, metadata, schema_version


def normalise_url(url: str) -> str:
    """Pick our driver for bare ``postgresql://`` / ``mysql://`` URLs."""
    u = make_url(url)
    if u.drivername in ("postgresql", "postgres"):
        u = u.set(drivername="postgresql+psycopg")
    elif u.drivername in ("mysql", "mariadb"):
        u = u.set(drivername="mysql+pymysql")
        if "charset" not in u.query:
            u = u.update_query_dict({"charset": "utf8mb4"})
    return u.render_as_string(hide_password=False)


def make_engine(url: str, *, pool_size: int = 5) -> Engine:
    url = normalise_url(url)
    kwargs: dict[str, Any] = {"future": True}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
    else:
        kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True, pool_recycle=1800)
    engine = create_engine(url, **kwargs)
    if url.startswith("sqlite"):

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            # WAL: readers (API tier) never block the writer and vice versa.
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

    return engine


def create_schema(engine: Engine) -> None:
    """Create the tables (idempotent) and record the schema version."""
    metadata.create_all(engine, checkfirst=True)
    with engine.begin() as conn:
        row = conn.execute(select(schema_version.c.version)).first()
        if row is None:
            conn.execute(insert(schema_version).values(id=1, version=SCHEMA_VERSION))
        elif row[0] > SCHEMA_VERSION:
            raise RuntimeError(
                f"store schema version {row[0]} is newer than this release understands ({SCHEMA_VERSION})"
            )
