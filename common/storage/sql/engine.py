"""Storage URL -> SQLAlchemy Engine, with the driver and pool settings each store needs.

Accepted URLs: ``sqlite:///path.db`` (the embedded default), ``postgresql://user:pw@host/db``
(psycopg 3) and ``mysql://user:pw@host/db`` (PyMySQL; MariaDB or MySQL).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, func, insert, inspect, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError, IntegrityError

from common.storage.base import StorageError
from common.storage.facets import FACET_PATHS
from common.storage.sql import facets
from common.storage.sql.dialects import Dialect
from common.storage.sql.schema import (
    FACETS_FEATURE,
    LABEL_BACKFILL,
    LABEL_TRIGGERS,
    LABELS_FEATURE,
    PG_TRGM,
    SCHEMA_VERSION,
    has_pg_trgm,
    label_dialect,
    metadata,
    resource_labels,
    resources,
    schema_version,
    store_features,
    store_revision,
)

log = logging.getLogger(__name__)

PING_IDLE_SECONDS = 1.0
"""A pooled connection idle longer than this is pinged before it is handed out (see ``_ping_idle``)."""


def normalise_url(url: str) -> str:
    """Pick our driver for bare ``postgresql://`` / ``mysql://`` URLs."""
    u = make_url(url)
    if "+" not in u.drivername:
        u = u.set(drivername=Dialect.of(u.drivername).driver)
    if Dialect.of(u.drivername) is Dialect.MYSQL and "charset" not in u.query:
        u = u.update_query_dict({"charset": "utf8mb4"})
    return u.render_as_string(hide_password=False)


def make_engine(url: str, *, pool_size: int = 5) -> Engine:
    url = normalise_url(url)
    embedded = Dialect.of(make_url(url).drivername).embedded
    kwargs: dict[str, Any] = {"future": True}
    if embedded:
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
    else:
        kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_recycle=1800)
    engine = create_engine(url, **kwargs)
    if not embedded:
        _ping_idle(engine)
    if embedded:

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            # WAL: readers (API tier) never block the writer and vice versa.
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

    return engine


def _ping_idle(engine: Engine) -> None:
    """Ping a pooled connection before handing it out only when it sat idle in the pool for more
    than ``PING_IDLE_SECONDS``: a dead one is then replaced before the caller sees it (a database
    restart or an idle timeout). A connection returned moments ago is handed out as is: pinging
    it (SQLAlchemy's ``pool_pre_ping``) cost one round trip per transaction, on the path of every
    change the writer commits and of every API read. Should the server have gone in that
    moment, the statement fails as a disconnect, the pool drops its connections and the caller's
    retry (the writer's) or next request (the API tier's) gets a new one."""
    dialect = engine.dialect

    @event.listens_for(engine, "connect")
    @event.listens_for(engine, "checkin")
    def _idle_since(_dbapi_conn: Any, record: Any) -> None:
        if record is not None:  # a brand-new connection counts as just used
            record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is not None and time.monotonic() - idle_since <= PING_IDLE_SECONDS:
            return
        try:
            dialect.do_ping(dbapi_conn)
        except Exception as exc:
            if isinstance(exc, dialect.loaded_dbapi.Error) and dialect.is_disconnect(exc, dbapi_conn, None):
                raise DisconnectionError(f"pooled connection is gone: {exc}") from exc
            raise


def create_schema(engine: Engine) -> None:
    """Create the tables (idempotent), or upgrade an older store, and record the schema version.

    Upgrades are additive: every version so far only added indexes, so an older store is brought up
    to date by creating the indexes of ``metadata`` it lacks (those of its dialect). The version row
    is read ``FOR UPDATE`` so that two processes upgrading at once take turns (PostgreSQL; MySQL
    commits each DDL statement itself, hence the per-index existence check)."""
    dialect = Dialect.of(engine.dialect.name)
    if dialect.jsonb:
        _try_pg_trgm(engine)
    metadata.create_all(engine, tables=_tables(engine.dialect.name), checkfirst=True)
    with engine.begin() as conn:
        row = conn.execute(select(schema_version.c.version).with_for_update()).first()
        if row is None:
            conn.execute(insert(schema_version).values(id=1, version=SCHEMA_VERSION))
        elif row[0] > SCHEMA_VERSION:
            raise StorageError(
                f"store schema version {row[0]} is newer than this release understands ({SCHEMA_VERSION}):"
                " run a release at least as new as the one that wrote it"
            )
        elif row[0] < SCHEMA_VERSION:
            if row[0] < 2:
                _add_revisions(conn)
            _add_facet_columns(conn)
            conn.execute(update(schema_version).values(version=SCHEMA_VERSION))
        if conn.execute(select(store_revision.c.head)).first() is None:
            head = conn.execute(select(func.coalesce(func.max(resources.c.revision), 0))).scalar_one()
            conn.execute(insert(store_revision).values(id=1, head=head, floor=0))
        # At any version: an index added by a later release, or one whose prerequisite arrived
        # later (pg_trgm created by a superuser, or by another process racing this one's
        # create_all), is built now.
        _add_missing_indexes(conn)
        if dialect.jsonb:
            _pg_lz4_objects(conn)
    _label_index(engine)
    _backfill_facets(engine)


def _add_revisions(conn: Connection) -> None:
    """Schema 1 -> 2: the revision columns, each existing row numbered by its id (its revision and
    creation revision; objects are served with these at once, see ``common.storage.revisions``)."""
    present = {c["name"] for c in inspect(conn).get_columns("resources")}
    for column in ("revision", "created_revision"):
        if column not in present:
            conn.execute(text(f"ALTER TABLE resources ADD COLUMN {column} BIGINT NOT NULL DEFAULT 0"))
    conn.execute(update(resources).values(revision=resources.c.id, created_revision=resources.c.id))
    log.info("store upgrade: revisions given to every stored row (schema %d)", SCHEMA_VERSION)


def _add_facet_columns(conn: Connection) -> None:
    """Schema 2 -> 3: the facet columns, NULL (read the object's JSON) until ``_backfill_facets``
    fills them: adding a nullable column rewrites no row on any of the stores."""
    present = {c["name"] for c in inspect(conn).get_columns("resources")}
    for column in FACET_PATHS.values():
        if column not in present:
            ddl = resources.c[column].type.compile(dialect=conn.dialect)
            conn.execute(text(f"ALTER TABLE resources ADD COLUMN {column} {ddl} NULL"))


def _backfill_facets(engine: Engine) -> None:
    """Fill the facets of rows stored before schema 3, in SQL, ``FACET_BATCH_ROWS`` ids per transaction
    (a 1M-row store upgrades in small transactions that the writers interleave with), then record
    the capability so that later starts skip the scan. Until then the searches read those rows'
    JSON (a NULL facet), so serving never waits for it; a start interrupted midway starts over
    (the statement is idempotent: it computes the facets from the row's current object)."""
    with engine.connect() as conn:
        done = select(store_features.c.name).where(store_features.c.name == FACETS_FEATURE)
        if conn.execute(done).first() is not None:
            return
        low, high = conn.execute(select(func.min(resources.c.id), func.max(resources.c.id))).one()
    start, rows, batch_rows = time.monotonic(), 0, facets.FACET_BATCH_ROWS
    if low is not None:
        fill = facets.backfill_facets(engine.dialect.name)
        for first in range(int(low), int(high) + 1, batch_rows):
            with engine.begin() as conn:
                rows += conn.execute(fill, {"low": first, "high": first + batch_rows}).rowcount
    try:
        with engine.begin() as conn:
            conn.execute(insert(store_features).values(name=FACETS_FEATURE))
    except IntegrityError:
        return  # another process starting at the same time finished first
    if rows > 0:
        log.info("store upgrade: facets of %d rows filled in %.1f s", rows, time.monotonic() - start)


def _tables(dialect: str) -> list[Any]:
    """The tables of this dialect's store (PostgreSQL serves label selectors with GIN, no table)."""
    return [t for t in metadata.sorted_tables if t is not resource_labels or label_dialect(dialect)]


def label_index_ready(conn: Connection) -> bool:
    """Whether label selectors may be answered from ``resource_labels`` (SQLite, MySQL/MariaDB,
    once its triggers exist and the rows of older objects were backfilled)."""
    if label_dialect(conn.dialect.name) is None:
        return False
    query = select(store_features.c.name).where(store_features.c.name == LABELS_FEATURE)
    return conn.execute(query).first() is not None


def _label_triggers(conn: Connection) -> set[str]:
    if Dialect.of(conn.dialect.name) is Dialect.SQLITE:
        query = text("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'resources'")
    else:
        query = text(
            "SELECT trigger_name FROM information_schema.triggers"
            " WHERE trigger_schema = DATABASE() AND event_object_table = 'resources'"
        )
    return {str(name) for (name,) in conn.execute(query)}


def _label_index(engine: Engine) -> None:
    """Create the triggers that keep ``resource_labels``, fill it for objects stored before them
    (a store made by an older release: logged with its duration), and record the capability.

    CREATE TRIGGER commits on its own (MySQL; pysqlite runs DDL outside a transaction), so the
    capability row is written only in the backfill's transaction: a start interrupted in between
    backfills again (INSERT IGNORE: idempotent). Where the triggers cannot be created (MySQL with
    binary logging wants TRIGGER and, without ``log_bin_trust_function_creators``, SUPER), label
    selectors keep working by reading the stored objects, slower; the next start tries again."""
    kind = label_dialect(engine.dialect.name)
    if kind is None:
        return
    with engine.connect() as conn:
        if label_index_ready(conn) and _label_triggers(conn) >= set(LABEL_TRIGGERS[kind]):
            return
    try:
        _create_label_triggers(engine, kind)
    except DBAPIError as e:
        _labels_unindexed(engine, str(e.orig).strip().splitlines()[0] if e.orig is not None else str(e))
        return
    with engine.connect() as conn:
        missing = set(LABEL_TRIGGERS[kind]) - _label_triggers(conn)
    if missing:  # a trigger of that name on another table (SQLite's IF NOT EXISTS skips then)
        _labels_unindexed(engine, f"trigger names taken: {', '.join(sorted(missing))}")
        return
    start = time.monotonic()
    try:
        with engine.begin() as conn:
            conn.execute(store_features.delete().where(store_features.c.name == LABELS_FEATURE))
            rows = conn.execute(text(LABEL_BACKFILL[kind])).rowcount
            conn.execute(insert(store_features).values(name=LABELS_FEATURE))
    except IntegrityError:
        return  # another process starting at the same time backfilled and recorded it first
    if rows > 0:
        log.info("store upgrade: %d label rows indexed in %.1f s", rows, time.monotonic() - start)


def _labels_unindexed(engine: Engine, reason: str) -> None:
    log.warning(
        "label selectors will read every stored object of the resource: cannot create the"
        " triggers that index labels (%s); grant TRIGGER (with binary logging also set"
        " log_bin_trust_function_creators=1), then run clusterpedia migrate",
        reason,
    )
    with engine.begin() as conn:
        conn.execute(store_features.delete().where(store_features.c.name == LABELS_FEATURE))


def _create_label_triggers(engine: Engine, kind: Dialect) -> None:
    for name, ddl in LABEL_TRIGGERS[kind].items():
        with engine.begin() as conn:
            if name in _label_triggers(conn):
                continue
            try:
                conn.execute(text(ddl))
            except DBAPIError:
                with engine.connect() as again:
                    if name in _label_triggers(again):
                        continue  # another process created it meanwhile
                raise


def _pg_lz4_objects(conn: Connection) -> None:
    """Compress new ``object`` values with lz4 instead of pglz (PostgreSQL >= 14 built with lz4).

    Objects are 3-8 KB of JSON, so every write goes through TOAST compression; with pglz that was
    the largest part of the server's CPU per row (bench/notes.md: 219 -> 140 µs per upserted row,
    same size on disk). Values already stored keep pglz and stay readable; without lz4 support the
    default stays."""
    if int(conn.execute(text("SHOW server_version_num")).scalar_one()) < 140000:
        return  # column compression methods arrived in PostgreSQL 14
    current = conn.execute(
        text(
            "SELECT attcompression FROM pg_attribute"
            " WHERE attrelid = 'resources'::regclass AND attname = 'object'"
        )
    ).scalar()
    if current == "l":
        return
    try:
        with conn.begin_nested():
            # ALTER TABLE waits for running reads and blocks new ones meanwhile: give up rather
            # than stall the API tier behind a long query (the next start tries again).
            conn.execute(text("SET LOCAL lock_timeout = '5s'"))
            conn.execute(text("ALTER TABLE resources ALTER COLUMN object SET COMPRESSION lz4"))
    except DBAPIError as e:
        log.info("objects keep PostgreSQL's default compression for now (%s)", e.orig)


def _try_pg_trgm(engine: Engine) -> None:
    """Create the ``pg_trgm`` extension if it is missing and we may (a trusted extension: the
    database owner may); without it fuzzy-name search still works, by scanning."""
    with engine.connect() as conn:
        if has_pg_trgm(conn):
            return
    try:
        with engine.begin() as conn:
            conn.execute(text(f"CREATE EXTENSION IF NOT EXISTS {PG_TRGM}"))
    except DBAPIError as e:
        with engine.connect() as conn:
            if has_pg_trgm(conn):
                return  # another process starting at the same time created it
        log.warning(
            "cannot create the PostgreSQL extension %s (%s): fuzzy-name search will scan every row"
            " of the resource; a superuser can run CREATE EXTENSION %s in this database, then"
            " clusterpedia migrate",
            PG_TRGM,
            str(e.orig).strip().splitlines()[0] if e.orig is not None else e,
            PG_TRGM,
        )


def _add_missing_indexes(conn: Connection) -> None:
    """Create every index of ``metadata`` the store lacks; on a large table this takes a while (the
    table is readable meanwhile, writes wait), so each one is logged with its duration."""
    for table in _tables(conn.dialect.name):
        for index in sorted(table.indexes, key=lambda i: str(i.name)):
            if conn.dialect.has_index(conn, table.name, str(index.name)):
                continue
            start = time.monotonic()
            index.create(
                conn, checkfirst=False
            )  # honours ddl_if: a PostgreSQL-only index elsewhere is skipped
            if not conn.dialect.has_index(conn, table.name, str(index.name)):
                continue
            log.info("store upgrade: index %s ready in %.1f s", index.name, time.monotonic() - start)
