"""Group-by counts on the SQL stores: ``SELECT g0, g1, count(*) ... GROUP BY g0, g1`` (pure builder).

The grouped values are computed in a derived table (``SELECT <field expressions> FROM resources
WHERE <the search's conditions>``) and grouped outside it by their column names: a JSON path
reaches the database as a bound parameter, and PostgreSQL would not recognise ``object #>> $1`` in
the select list and ``object #>> $2`` in ``GROUP BY`` as the same expression. The planners merge
the derived table into the outer statement (one scan, one aggregate). Every condition of the
search applies as in a list (``selects.where_clause``, the caller's grants included); a JSON value
reads as a field selector reads it (``selects.json_text``; missing or null: ``""``). A faceted path
(``status.phase``, ``spec.nodeName``: ``common.storage.facets``) reads its column: the derived table
is then the ``UNION ALL`` of the rows whose facets are filled (the columns, which an index serves)
and of the others (their JSON), so that the answer is the JSON path's.

The statement asks for one group more than the bound, so that too many groups are told apart
from exactly enough without counting them all again; the groups are sorted by the caller (in
Python, so that every store answers in the same code point order whatever its collations).
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import ColumnElement, Select, func, or_, select, union_all

from common.storage.grouping import COLUMN_PATHS, GroupField
from common.storage.grouping import json_text as value_text
from common.storage.query import Search
from common.storage.sql.dialects import Dialect
from common.storage.sql.schema import resources
from common.storage.sql.selects import LabelIndex, facet_column, facet_text, json_text, where_clause


def _column(field: GroupField) -> str:
    return field.column or COLUMN_PATHS.get(field.path, "")


def _facet(field: GroupField) -> ColumnElement[Any] | None:
    """The facet column of a path (``common.storage.facets``): read where it is not NULL."""
    return None if _column(field) else facet_column(field.path)


def _raw_json(field: GroupField, dialect: str, exact: bool) -> bool:
    """Whether a path is grouped by the value's JSON text, read once per row, and decoded per group
    by :func:`group_value` (where ``selects.json_text`` reads the object twice per row: a type test
    and the value, each parsing the whole document).

    SQLite: ``object -> path``, with a missing value, a JSON null and ``""`` all as ``''``
    (nested functions evaluate the extraction once), so groups map one to one. MySQL/MariaDB:
    ``JSON_EXTRACT(object, path)`` (its ``NULLIF`` and ``CASE`` evaluate it again), where a
    missing value, ``null`` and ``""`` are three groups that merge into one when decoded: the
    reader then counts them under the bound as one only when all groups fit (see
    :func:`may_merge`); ``exact`` asks for the value itself (``selects.json_text``) instead."""
    if _column(field):
        return False
    if _facet(field) is not None:
        return _facet_as_json(dialect, exact)
    d = Dialect.of(dialect)
    return d.sql_json_values or (d is Dialect.MYSQL and not exact)


def _facet_as_json(dialect: str, exact: bool) -> bool:
    """MySQL/MariaDB group a faceted path as JSON text too (``JSON_QUOTE`` of the column), so that
    the rows read from the column and those read from the JSON (raw, see :func:`_raw_json`) decode
    alike: the answer is the JSON path's to the byte (a VARCHAR groups ignoring trailing spaces)."""
    return Dialect.of(dialect) is Dialect.MYSQL and not exact


def _filled(
    field: GroupField, facet: ColumnElement[Any] | None, dialect: str, exact: bool
) -> ColumnElement[Any]:
    """A group field's value in a row whose facets are filled."""
    if facet is None:
        return group_expression(field, dialect, exact=exact)
    if _facet_as_json(dialect, exact):
        quoted: ColumnElement[Any] = func.json_quote(facet)
        return quoted
    return facet


def _unfilled(
    field: GroupField, facet: ColumnElement[Any] | None, dialect: str, exact: bool
) -> ColumnElement[Any]:
    """A group field's value in a row with a NULL facet: the column if this one is filled, else JSON."""
    if facet is None:
        return group_expression(field, dialect, exact=exact)
    if _facet_as_json(dialect, exact):
        return func.coalesce(func.json_quote(facet), _json_raw(field, dialect))
    return facet_text(facet, field.path, dialect)


def may_merge(search: Search, dialect: str) -> bool:
    """Whether several grouped rows of ``group_statement`` may decode to one group (MySQL/MariaDB
    raw JSON text): a result at the statement's limit is then read again with ``exact``."""
    return Dialect.of(dialect) is Dialect.MYSQL and any(_raw_json(f, dialect, False) for f in search.group_by)


def group_expression(field: GroupField, dialect: str, *, exact: bool = False) -> ColumnElement[Any]:
    """The value a row has for ``field``: a column, or the JSON text at a path ("" when missing)."""
    column = _column(field)
    if column:
        expr: ColumnElement[Any] = getattr(resources.c, column)
        return expr
    if _raw_json(field, dialect, exact):
        return _json_raw(field, dialect)
    return func.coalesce(json_text(field.path, dialect), "")


def _json_raw(field: GroupField, dialect: str) -> ColumnElement[Any]:
    """The JSON text at a path, read once per row (see :func:`_raw_json`)."""
    # segments are pre-validated (no quotes, no backslashes); the path is a bound parameter
    path = "$" + "".join(f'."{seg}"' for seg in field.path)
    if Dialect.of(dialect) is Dialect.MYSQL:
        extracted: ColumnElement[Any] = func.json_extract(resources.c.object, path)
        return extracted
    raw = resources.c.object.op("->")(path)
    # nested functions: the extraction is evaluated once (a CASE would evaluate it per branch)
    return func.coalesce(func.nullif(func.nullif(raw, "null"), '""'), "")


def group_value(field: GroupField, dialect: str, value: Any, *, exact: bool = False) -> str:
    """A grouped value as the stores answer it (``common.storage.grouping.json_text``)."""
    if value is None:
        return ""
    if _raw_json(field, dialect, exact):
        return value_text(json.loads(value)) if value else ""
    return str(value)


def group_statement(
    search: Search,
    dialect: str,
    *,
    label_index: LabelIndex | None = None,
    limit: int | None = None,
    exact: bool = False,
) -> Select[Any]:
    """The groups of ``search.group_by`` among the rows matching ``search``: one row per group,
    its values (``g0``, ``g1``, ... for :func:`group_value`) then its count (``n``); at most
    ``limit`` groups."""
    if not search.group_by:
        raise ValueError("a group-by statement needs group fields")
    where = where_clause(search, dialect, label_index=label_index)
    facets = [_facet(f) for f in search.group_by]
    if not any(c is not None for c in facets):
        values = (
            select(
                *(
                    group_expression(f, dialect, exact=exact).label(f"g{i}")
                    for i, f in enumerate(search.group_by)
                )
            )
            .where(where)
            .subquery("grouped")
        )
    else:
        # The rows with every facet filled read the columns (an index of them, where the store can
        # read it alone); the others, few, their JSON where a facet is NULL.
        filled = [c for c in facets if c is not None]
        fields = list(zip(search.group_by, facets, strict=True))
        with_facets = select(
            *(_filled(f, c, dialect, exact).label(f"g{i}") for i, (f, c) in enumerate(fields))
        ).where(where, *(c.is_not(None) for c in filled))
        without = select(
            *(_unfilled(f, c, dialect, exact).label(f"g{i}") for i, (f, c) in enumerate(fields))
        ).where(where, or_(*(c.is_(None) for c in filled)))
        values = union_all(with_facets, without).subquery("grouped")
    keys = list(values.c)
    stmt = select(*keys, func.count().label("n")).select_from(values).group_by(*keys)
    if limit is None:
        return stmt
    if Dialect.of(dialect).jsonb:
        # PostgreSQL has no statistics for a JSON expression and expects a group per row: under a
        # LIMIT it then picks a plan that yields groups early (a walk of an index in cluster order
        # with a heap fetch per row, sorts). The CTE is planned alone (MATERIALIZED), for every
        # group: one sequential scan and a hash aggregate, whatever the planner guesses. 1M pods
        # by cluster, status.phase: 17.0 -> 10.3 s; by status.phase alone the LIMIT's parallel
        # sort was faster on a busy 2-core machine (5.3 vs 9.5 s; bench/notes.md).
        counted = stmt.cte("group_counts").prefix_with("MATERIALIZED")
        return select(*counted.c).limit(limit)
    return stmt.limit(limit)
