"""Tables of the store, identical in meaning on SQLite, PostgreSQL and MySQL/MariaDB.

One row per object per cluster (``resources``), whatever API version it was synced in; deleted
objects stay as tombstones (``deleted``) for a while so that a late update from a reordered queue
entry cannot resurrect them (see writer/). ``resource_types`` records what each cluster serves, for
discovery and table printing in the API tier.

The schema is versioned: ``schema_version`` holds one row; ``create_schema`` creates or upgrades.
The version moves only for a change an older release could not live with (a column, a meaning):
added indexes do not move it, so a rolling update or a rollback across such releases keeps working
(an older release refuses a store whose version is newer than its own). ``create_schema`` (``clusterpedia
migrate`` or any tier's start) builds every index of ``metadata`` the store lacks, at any version:
the trigram index on names (PostgreSQL with ``pg_trgm``) and the labels GIN index reach stores
created before them that way.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    cast,
    literal_column,
    text,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Dialect as SaDialect
from sqlalchemy.schema import SchemaItem
from sqlalchemy.sql.compiler import DDLCompiler
from sqlalchemy.sql.ddl import BaseDDLElement
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import TypeEngine, UserDefinedType

from common.storage.facets import FACET_LENGTH
from common.storage.sql.dialects import Dialect

SCHEMA_VERSION = 3
"""2: the global revision (``resources.revision``, ``created_revision``, ``store_revision``) for watch.
3: the facets ``resources.phase`` and ``resources.node_name`` (``common.storage.facets``)."""

PG_TRGM = "pg_trgm"
"""PostgreSQL extension whose trigram GIN index serves fuzzy-name search (``name LIKE '%x%'``)."""


class _PgRawJSONB(UserDefinedType[str]):
    """JSONB in PostgreSQL, bound and read as text so the object is never parsed in Python."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "JSONB"

    def bind_expression(self, bindvalue: Any) -> ColumnElement[Any]:
        return cast(bindvalue, _PgJSONBCast())

    def column_expression(self, col: Any) -> ColumnElement[Any]:
        return cast(col, Text())


class _PgJSONBCast(UserDefinedType[str]):
    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "JSONB"


def _name(length: int = 253) -> TypeEngine[str]:
    """Kubernetes names are ASCII; byte order everywhere (keyset paging and orderby agree on all stores).

    On MySQL the ASCII binary collation also keeps the composite unique key short enough."""
    return (
        String(length)
        .with_variant(mysql.VARCHAR(length, charset="ascii", collation="ascii_bin"), "mysql", "mariadb")
        .with_variant(String(length, collation="C"), "postgresql")
    )


def _facet_text() -> TypeEngine[str]:
    """A facet (``common.storage.facets``): any short string without NUL, NULL when the object's
    JSON must be read instead; byte order (PostgreSQL "C", MySQL utf8mb4_bin)."""
    return (
        String(FACET_LENGTH)
        .with_variant(
            mysql.VARCHAR(FACET_LENGTH, charset="utf8mb4", collation="utf8mb4_bin"), "mysql", "mariadb"
        )
        .with_variant(String(FACET_LENGTH, collation="C"), "postgresql")
    )


_id_type = BigInteger().with_variant(Integer(), "sqlite")
_object_type = (
    Text().with_variant(_PgRawJSONB(), "postgresql").with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
)

PG_LABELS = literal_column("(object -> 'metadata' -> 'labels')", _PgJSONBCast())
"""``metadata.labels`` of a stored object as JSONB, written exactly as the index expression below
(PostgreSQL matches an expression index only against the same expression)."""


def has_pg_trgm(conn: Connection) -> bool:
    """Whether the PostgreSQL database has the ``pg_trgm`` extension (the trigram index needs it)."""
    query = text("SELECT 1 FROM pg_extension WHERE extname = :name")
    return conn.execute(query, {"name": PG_TRGM}).first() is not None


def _when_pg_trgm(
    ddl: BaseDDLElement,
    target: SchemaItem | str,
    bind: Connection | None,
    tables: list[Table] | None = None,
    state: Any | None = None,
    *,
    dialect: SaDialect,
    compiler: DDLCompiler | None = None,
    checkfirst: bool = False,
) -> bool:
    return bind is not None and has_pg_trgm(bind)


def _unless_postgresql(
    ddl: BaseDDLElement,
    target: SchemaItem | str,
    bind: Connection | None,
    tables: list[Table] | None = None,
    state: Any | None = None,
    *,
    dialect: SaDialect,
    compiler: DDLCompiler | None = None,
    checkfirst: bool = False,
) -> bool:
    return Dialect.of(dialect.name) is not Dialect.POSTGRESQL


metadata = MetaData()

resources = Table(
    "resources",
    metadata,
    Column("id", _id_type, primary_key=True, autoincrement=True),
    Column("cluster", _name(), nullable=False),
    Column("api_group", _name(), nullable=False),
    Column("version", _name(63), nullable=False),
    Column("resource", _name(), nullable=False),
    Column("kind", _name(), nullable=False),
    Column("namespace", _name(), nullable=False),  # "" for cluster-scoped objects
    Column("name", _name(), nullable=False),
    Column("uid", _name(64), nullable=False),
    Column("owner_uid", _name(64), nullable=False),  # controller ownerReference uid, "" if none
    Column("resource_version", BigInteger, nullable=False),
    Column("epoch", BigInteger, nullable=False),  # list generation, see common.events.ListDone
    Column("created_at", DateTime, nullable=True),  # metadata.creationTimestamp, UTC, naive
    Column("synced_at", DateTime, nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    # Facets of the object (common/storage/facets.py): status.phase and spec.nodeName, NULL where
    # the object's JSON is read instead. Before ``object``: SQLite reads them without the object.
    Column("phase", _facet_text(), nullable=True),
    Column("node_name", _facet_text(), nullable=True),
    Column("object", _object_type, nullable=False),
    # The store-wide revision of the row's last write, and of the write that created this
    # incarnation of the object (see ``store_revision``; DESIGN section 9).
    Column("revision", BigInteger, nullable=False, server_default="0"),
    Column("created_revision", BigInteger, nullable=False, server_default="0"),
    UniqueConstraint("cluster", "api_group", "resource", "namespace", "name", name="uq_resources_key"),
    Index("ix_resources_gr_ns_name", "api_group", "resource", "namespace", "name"),
    Index("ix_resources_gr_name", "api_group", "resource", "name"),
    Index("ix_resources_gr_created", "api_group", "resource", "created_at"),
    Index("ix_resources_epoch", "cluster", "api_group", "resource", "epoch"),
    Index("ix_resources_owner", "owner_uid"),
    Index("ix_resources_uid", "uid"),
    Index("ix_resources_tombstones", "deleted", "synced_at"),
    # Group-bys and field selectors on the facets (common/storage/sql/grouping.py, selects.py): the
    # live rows of a resource by phase (by node) with their cluster and namespace, so that a count
    # per phase reads this index alone where it can (SQLite, MySQL/MariaDB) and a field selector
    # `status.phase=Running` / `spec.nodeName=node-1` is a range of it (bench/notes.md).
    Index("ix_resources_gr_phase", "api_group", "resource", "deleted", "phase", "cluster", "namespace"),
    Index(
        "ix_resources_gr_node", "api_group", "resource", "deleted", "node_name", "cluster", "namespace"
    ),  # tombstone GC without a table scan
    # The change feed: every row written after a revision, in revision order, of all resources
    # (an API replica's one poll) or of a few (a watcher catching up).
    Index("ix_resources_revision", "revision"),
    Index("ix_resources_gr_revision", "api_group", "resource", "revision"),
    # SQLite and MySQL/MariaDB: the live rows of a resource in (cluster, namespace, name) order, with
    # the row id (InnoDB's secondary indexes carry the primary key; SQLite's the rowid): a count and
    # the rows an OFFSET page skips are read from this index alone. Without it both read every row
    # (MariaDB through `deleted` and the clustered index, SQLite through another index and the
    # table). 50,000 pods: count 75 -> 11 ms (MariaDB), 27-47 -> 2 ms (SQLite); a page at offset
    # 20,000 180 -> 9 ms, 27 -> 2 ms. PostgreSQL counts with a sequential scan of the narrow heap
    # (the objects are TOASTed) and skips along uq_resources_key about as fast (bench/notes.md).
    Index(
        "ix_resources_gr_live_key", "api_group", "resource", "deleted", "cluster", "namespace", "name"
    ).ddl_if(callable_=_unless_postgresql),
    # PostgreSQL: label selectors are `labels @> {...}` (common/storage/sql/selects.py); a GIN index on
    # the labels alone serves them without indexing (and slowing the writes of) whole objects.
    Index(
        "ix_resources_labels_gin",
        PG_LABELS.label("labels"),
        postgresql_using="gin",
        postgresql_ops={"labels": "jsonb_path_ops"},
    ).ddl_if(dialect="postgresql"),
    # PostgreSQL: fuzzy-name search is `name LIKE '%x%'`, which no B-tree serves; a trigram GIN
    # index finds the few matching rows instead of a scan of every row of the resource (1M pods:
    # ~200 ms -> ~15 ms). Only where the pg_trgm extension could be created (create_schema tries).
    Index(
        "ix_resources_name_trgm",
        "name",
        postgresql_using="gin",
        postgresql_ops={"name": "gin_trgm_ops"},
    ).ddl_if(dialect="postgresql", callable_=_when_pg_trgm),
)

resource_types = Table(
    "resource_types",
    metadata,
    Column("cluster", _name(), primary_key=True),
    Column("api_group", _name(), primary_key=True),
    Column("resource", _name(), primary_key=True),
    Column("version", _name(63), nullable=False),
    Column("kind", _name(), nullable=False),
    Column("namespaced", Boolean, nullable=False),
    Column("short_names", Text, nullable=False),  # JSON list
    Column("verbs", Text, nullable=False),  # JSON list
    Column("storage_version", _name(63), nullable=False),
    Column("printer_columns", Text, nullable=False),  # JSON list, "" for built-in kinds
    Column("updated_at", DateTime, nullable=False),
)

LABEL_KEY_LENGTH = 317  # DNS-1123 subdomain prefix (253) + "/" + name (63)
LABEL_VALUE_LENGTH = 63


def _label_text(length: int) -> TypeEngine[str]:
    """Label keys and values; utf8mb4 on MySQL so that no stored object can make its trigger fail."""
    return String(length).with_variant(
        mysql.VARCHAR(length, charset="utf8mb4", collation="utf8mb4_bin"), "mysql", "mariadb"
    )


resource_labels = Table(
    "resource_labels",
    metadata,
    Column("resource_id", _id_type, primary_key=True),
    Column("label_key", _label_text(LABEL_KEY_LENGTH), primary_key=True),
    Column("label_value", _label_text(LABEL_VALUE_LENGTH), nullable=False),
    Index("ix_resource_labels_kv", "label_key", "label_value", "resource_id"),
    sqlite_with_rowid=False,
)
"""SQLite and MySQL/MariaDB: one row per label of each ``resources`` row, kept by triggers on
``resources`` (``LABEL_TRIGGERS``), so that a label selector is an index lookup instead of parsing
every stored object of the resource (200,000 pods: 1.4 s -> ms on SQLite, see docs/performance.md).
PostgreSQL has no such table: its GIN index on the labels serves the same queries."""

store_features = Table(
    "store_features",
    metadata,
    Column("name", String(64), primary_key=True),
)
"""Named capabilities a store gained once their one-off work was complete (``resource_labels``:
the label rows of every object existing before the triggers were backfilled). Searches use a
capability only once its row is here."""

LABELS_FEATURE = "resource_labels"
FACETS_FEATURE = "facets"
"""Every row stored before schema 3 had its facets filled (the upgrade's backfill completed)."""


def _label_rows(kind: Dialect, row: str, source: str = "") -> str:
    """``INSERT .. SELECT`` of the label rows of ``row`` (``NEW`` in a trigger; ``r`` for every row
    of ``resources``, with ``source`` = its FROM item). Only this module's constants go in.
    INSERT OR IGNORE / INSERT IGNORE: a label that does not fit never fails the object's write
    (kube-apiserver validates labels, so that is for objects it never made)."""
    if kind is Dialect.SQLITE:
        return f"""
    INSERT OR IGNORE INTO resource_labels (resource_id, label_key, label_value)
    SELECT {row}.id, j.key, j.value FROM {source}json_each({row}.object, '$.metadata.labels') AS j
    WHERE j.type = 'text'"""  # noqa: S608
    return f"""
    INSERT IGNORE INTO resource_labels (resource_id, label_key, label_value)
    SELECT {row}.id, k.label_key,
           JSON_UNQUOTE(JSON_EXTRACT({row}.object, CONCAT('$.metadata.labels."', k.label_key, '"')))
    FROM {source}JSON_TABLE(JSON_KEYS({row}.object, '$.metadata.labels'), '$[*]'
                    COLUMNS (label_key VARCHAR({LABEL_KEY_LENGTH}) PATH '$')) AS k"""  # noqa: S608


LABEL_TRIGGERS: dict[Dialect, dict[str, str]] = {
    Dialect.SQLITE: {
        "resources_labels_insert": f"""
CREATE TRIGGER IF NOT EXISTS resources_labels_insert AFTER INSERT ON resources
BEGIN{_label_rows(Dialect.SQLITE, "NEW")};
END""",
        # An upsert that re-delivers the same object (relists, replays) leaves the labels alone.
        "resources_labels_update": f"""
CREATE TRIGGER IF NOT EXISTS resources_labels_update AFTER UPDATE OF object ON resources
WHEN OLD.object IS NOT NEW.object
BEGIN
    DELETE FROM resource_labels WHERE resource_id = OLD.id;{_label_rows(Dialect.SQLITE, "NEW")};
END""",  # noqa: S608
        "resources_labels_delete": """
CREATE TRIGGER IF NOT EXISTS resources_labels_delete AFTER DELETE ON resources
BEGIN
    DELETE FROM resource_labels WHERE resource_id = OLD.id;
END""",
    },
    Dialect.MYSQL: {
        "resources_labels_insert": f"""
CREATE TRIGGER resources_labels_insert AFTER INSERT ON resources FOR EACH ROW{
            _label_rows(Dialect.MYSQL, "NEW")
        }""",
        # ON DUPLICATE KEY UPDATE fires the update triggers even when the guard kept the row.
        "resources_labels_update": f"""
CREATE TRIGGER resources_labels_update AFTER UPDATE ON resources FOR EACH ROW
BEGIN
  IF NOT (OLD.object <=> NEW.object) THEN
    DELETE FROM resource_labels WHERE resource_id = OLD.id;{_label_rows(Dialect.MYSQL, "NEW")};
  END IF;
END""",  # noqa: S608
        "resources_labels_delete": """
CREATE TRIGGER resources_labels_delete AFTER DELETE ON resources FOR EACH ROW
    DELETE FROM resource_labels WHERE resource_id = OLD.id""",
    },
}

LABEL_BACKFILL: dict[Dialect, str] = {
    kind: _label_rows(kind, "r", "resources AS r, ") for kind in (Dialect.SQLITE, Dialect.MYSQL)
}
"""The label rows of objects stored before the triggers existed (a store made by an older release)."""


def label_dialect(dialect: str) -> Dialect | None:
    """Key of ``LABEL_TRIGGERS`` for a SQLAlchemy dialect name; None where labels use no table."""
    d = Dialect.of(dialect)
    return d if d.label_table else None


store_revision = Table(
    "store_revision",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("head", BigInteger, nullable=False),
    Column("floor", BigInteger, nullable=False),
)
"""One row (id 1): ``head``, the last revision taken, and ``floor``, below which changes are no
longer readable (expired tombstones, purged clusters). A writer takes its revisions by updating
``head`` first in its transaction, which holds the row until commit: revisions are taken in commit
order, so a reader that sees ``head`` = H also sees every row written at or below H."""

schema_version = Table(
    "schema_version",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("version", Integer, nullable=False),
)
