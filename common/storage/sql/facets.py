"""The facet columns on the SQL stores (``common.storage.facets``): filling them on upgrade.

A facet column holds the field selector's text of its path, or NULL where the object's JSON must
be read (a value no column holds exactly, or a row not yet filled by the upgrade). Every read is
therefore ``column`` where it is not NULL and the JSON path's text otherwise, written so that the
planners use the column's index for the rows that have it: an equality is ``col = v OR (col IS
NULL AND <json> = v)`` (two index ranges), a group-by a ``UNION ALL`` of the rows with the column
and the (few) rows without (``common.storage.sql.grouping``).
"""

from __future__ import annotations

from sqlalchemy import TextClause, text

from common.storage.facets import FACET_LENGTH, FACET_PATHS
from common.storage.sql.dialects import Dialect

FACET_BATCH_ROWS = 5000
"""Row ids per transaction of the upgrade's backfill."""


def _pg_facet(path: tuple[str, ...]) -> str:
    arr = "'{" + ",".join(path) + "}'"
    v = f"(object #>> {arr})"
    t = f"jsonb_typeof(object #> {arr})"
    return (
        f"CASE WHEN {t} IS NULL OR {t} = 'null' THEN ''"
        f" WHEN {t} = 'string' AND length({v}) <= {FACET_LENGTH} AND {v} NOT LIKE '% ' THEN {v} END"
    )


def _sqlite_facet(path: tuple[str, ...]) -> str:
    p = "'$" + "".join(f'."{seg}"' for seg in path) + "'"
    t, v = f"json_type(object, {p})", f"json_extract(object, {p})"
    return (
        f"CASE WHEN NOT json_valid(object) THEN NULL WHEN {t} IS NULL OR {t} = 'null' THEN ''"
        f" WHEN {t} = 'text' AND length({v}) <= {FACET_LENGTH} AND {v} NOT LIKE '% '"
        f" AND instr({v}, char(0)) = 0 THEN {v} END"
    )


def _mysql_facet(path: tuple[str, ...]) -> str:
    p = "'$" + "".join(f'."{seg}"' for seg in path) + "'"
    e = f"JSON_EXTRACT(object, {p})"
    v = f"JSON_UNQUOTE({e})"
    return (
        f"CASE WHEN NOT JSON_VALID(object) THEN NULL WHEN {e} IS NULL OR JSON_TYPE({e}) = 'NULL' THEN ''"
        f" WHEN JSON_TYPE({e}) = 'STRING' AND CHAR_LENGTH({v}) <= {FACET_LENGTH}"
        f" AND {v} NOT LIKE '% ' AND INSTR({v}, CHAR(0)) = 0 THEN {v} END"
    )


_FACET_SQL = {Dialect.POSTGRESQL: _pg_facet, Dialect.SQLITE: _sqlite_facet, Dialect.MYSQL: _mysql_facet}


def backfill_facets(dialect: str) -> TextClause:
    """UPDATE of the facets of the rows with ``:low <= id < :high`` that have none yet, computed
    from their object with the meaning of ``common.storage.facets.facet_value``.
    Only this module's constants go into the text."""
    facet = _FACET_SQL[Dialect.of(dialect)]
    assignments = ", ".join(f"{column} = {facet(path)}" for path, column in FACET_PATHS.items())
    unfilled = " AND ".join(f"{column} IS NULL" for column in FACET_PATHS.values())
    return text(
        f"UPDATE resources SET {assignments} WHERE id >= :low AND id < :high AND {unfilled}"  # noqa: S608
    )
