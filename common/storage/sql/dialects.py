"""What differs between the three SQL stores, decided in one place.

The statement builders (``selects``, ``upserts``), the schema and the engine ask a :class:`Dialect`
what the store can do — "is the object JSONB?", "does it keep the label table?" — instead of
comparing dialect names each on its own (``mariadb`` and ``mysql`` are one dialect here, and a
URL's driver name, a SQLAlchemy dialect name or a plain ``postgresql`` all map to one member).
How each capability is written in SQL stays with the statement that uses it.
"""

from __future__ import annotations

from enum import StrEnum


class Dialect(StrEnum):
    SQLITE = "sqlite"
    POSTGRESQL = "postgresql"
    MYSQL = "mysql"
    """MySQL and MariaDB."""

    @classmethod
    def of(cls, name: str) -> Dialect:
        """A SQLAlchemy dialect name or URL driver name (``postgresql+psycopg``, ``mariadb``) -> Dialect."""
        base = name.partition("+")[0].lower()
        found = _NAMES.get(base)
        if found is None:
            raise ValueError(f"unsupported SQL dialect {name!r} (sqlite, postgresql or mysql)")
        return found

    @property
    def driver(self) -> str:
        """The SQLAlchemy driver this project uses: psycopg 3, PyMySQL, the standard sqlite3."""
        return _DRIVERS[self]

    @property
    def embedded(self) -> bool:
        """A file in this process (no server, no pool; WAL pragmas per connection)."""
        return self is Dialect.SQLITE

    @property
    def jsonb(self) -> bool:
        """Objects are JSONB: read with ``#>>``, label equality with ``@>`` served by a GIN index;
        JSONB cannot hold ``\\u0000``, which is stripped before writing."""
        return self is Dialect.POSTGRESQL

    @property
    def label_table(self) -> bool:
        """Labels are indexed in ``resource_labels`` rows kept by triggers (where there is no JSONB
        GIN index to serve label selectors)."""
        return self is not Dialect.POSTGRESQL

    @property
    def sql_json_values(self) -> bool:
        """``json_extract`` returns SQL values (booleans as 1/0, numbers as numbers), not JSON text."""
        return self is Dialect.SQLITE

    @property
    def row_value_keyset(self) -> bool:
        """A keyset page in one direction is a row-value comparison, which its B-tree serves as a
        range (SQLite's planner did better with the expanded form; see ``selects.after_key``)."""
        return self is Dialect.POSTGRESQL

    @property
    def on_duplicate_key(self) -> bool:
        """Upserts are ``ON DUPLICATE KEY UPDATE`` (no ``WHERE``: the guard goes into each
        assignment) and a chunked delete is ``DELETE .. LIMIT``, rather than ``ON CONFLICT .. DO
        UPDATE .. WHERE`` and ``DELETE .. WHERE id IN (SELECT .. LIMIT)``."""
        return self is Dialect.MYSQL


_NAMES = {
    "sqlite": Dialect.SQLITE,
    "postgresql": Dialect.POSTGRESQL,
    "postgres": Dialect.POSTGRESQL,
    "mysql": Dialect.MYSQL,
    "mariadb": Dialect.MYSQL,
}
_DRIVERS = {
    Dialect.SQLITE: "sqlite",
    Dialect.POSTGRESQL: "postgresql+psycopg",
    Dialect.MYSQL: "mysql+pymysql",
}
