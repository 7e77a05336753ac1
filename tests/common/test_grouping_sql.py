"""Group-by -> SQL (``common.storage.sql.grouping``), compiled for PostgreSQL, MySQL and SQLite: the
shape each dialect gets, and that paths and values (even hostile ones that bypassed the parser)
only ever appear as bound parameters. What the statements count is tests/common/storage/test_grouping.py."""

from __future__ import annotations

from typing import Any

import pytest

from common.storage.grouping import GroupField
from common.storage.query import LabelRequirement, Operator, Search
from common.storage.sql.grouping import group_statement, group_value, may_merge
from tests.common.test_search_sql import ALL, EVIL, compiled, flat

QOS = GroupField("status.qosClass", path=("status", "qosClass"))  # a path without a facet column
PHASE = GroupField("status.phase", path=("status", "phase"))  # a faceted path
NODE = GroupField("spec.nodeName", path=("spec", "nodeName"))
CLUSTER = GroupField("cluster", column="cluster")
SEARCH = Search(resource="pods", group_by=(CLUSTER, QOS))


@pytest.mark.parametrize("dialect", ALL)
def test_values_then_a_count_grouped_by_their_names(dialect: str) -> None:
    text, params = compiled(group_statement(SEARCH, dialect, limit=11), dialect)
    assert "resources.cluster AS g0" in text and " AS g1 " in text and "count(*) AS n" in text
    assert "GROUP BY grouped.g0, grouped.g1" in text
    assert "resources.deleted = " in text and 11 in flat(params)
    assert "qosClass" not in text  # the path is a bound parameter


def test_postgresql_plans_the_grouping_alone() -> None:
    text, _ = compiled(group_statement(SEARCH, "postgresql", limit=11), "postgresql")
    assert text.startswith("WITH group_counts AS MATERIALIZED (SELECT")
    assert "#>>" in text and text.endswith("FROM group_counts LIMIT %(param_2)s::INTEGER")
    plain, _ = compiled(group_statement(SEARCH, "postgresql"), "postgresql")
    assert "WITH" not in plain and "LIMIT" not in plain


def test_sqlite_and_mysql_read_a_path_once_per_row() -> None:
    sqlite, _ = compiled(group_statement(SEARCH, "sqlite"), "sqlite")
    assert sqlite.count("->") == 1 and "json_type" not in sqlite and "nullif(nullif(" in sqlite
    mysql, _ = compiled(group_statement(SEARCH, "mysql"), "mysql")
    assert mysql.count("json_extract") == 1 and "json_type" not in mysql.lower()
    assert may_merge(SEARCH, "mysql") and not may_merge(SEARCH, "sqlite")
    assert not may_merge(Search(resource="pods", group_by=(CLUSTER,)), "mysql")
    exact, _ = compiled(group_statement(SEARCH, "mysql", exact=True), "mysql")
    assert "json_type" in exact.lower()  # the field selectors' expression: missing and null as one


@pytest.mark.parametrize(
    ("dialect", "raw", "value"),
    [
        ("sqlite", "", ""),
        ("sqlite", '"Running"', "Running"),
        ("sqlite", "3", "3"),
        ("sqlite", "true", "true"),
        ("mysql", None, ""),
        ("mysql", "null", ""),
        ("mysql", '""', ""),
        ("mysql", '"null"', "null"),
        ("mysql", '"a\\"b"', 'a"b'),
        ("postgresql", "Running", "Running"),
    ],
)
def test_grouped_values_decode_as_field_selectors_read_them(dialect: str, raw: Any, value: str) -> None:
    assert group_value(QOS, dialect, raw) == value


@pytest.mark.parametrize("dialect", ALL)
def test_faceted_paths_read_their_columns_and_the_json_of_rows_without(dialect: str) -> None:
    """status.phase and spec.nodeName: the rows with both facets filled read the columns alone; the
    rows with a NULL facet (a value no column holds, a row the upgrade has not filled) their JSON."""
    search = Search(resource="pods", group_by=(CLUSTER, PHASE, NODE))
    text, _ = compiled(group_statement(search, dialect, limit=11), dialect)
    with_facets, without = text.split("UNION ALL")
    # MySQL/MariaDB: as JSON text, as the rows read from the JSON (raw) are, decoded alike
    phase, node = (
        ("json_quote(resources.phase)", "json_quote(resources.node_name)")
        if dialect == "mysql"
        else (
            "resources.phase",
            "resources.node_name",
        )
    )
    assert f"{phase} AS g1" in with_facets and f"{node} AS g2" in with_facets
    assert "resources.phase IS NOT NULL AND resources.node_name IS NOT NULL" in with_facets
    assert "object" not in with_facets
    assert f"coalesce({phase}, " in without and f"coalesce({node}, " in without
    assert "(resources.phase IS NULL OR resources.node_name IS NULL)" in without
    assert may_merge(search, dialect) == (dialect == "mysql")
    raw = '"Running"' if dialect == "mysql" else "Running"
    assert group_value(PHASE, dialect, raw) == "Running" and group_value(PHASE, dialect, None) == ""


@pytest.mark.parametrize("dialect", ALL)
def test_hostile_paths_and_values_are_bound(dialect: str) -> None:
    search = Search(
        resource="pods",
        group_by=(GroupField("x", path=("metadata", "annotations", EVIL)),),
        labels=(LabelRequirement("app", Operator.EQUALS, (EVIL,)),),
    )
    text, params = compiled(group_statement(search, dialect, limit=5), dialect)
    assert "DROP" not in text
    assert EVIL in flat(params) and any(EVIL in str(p) for p in flat(params) if p != EVIL)
