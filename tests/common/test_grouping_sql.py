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

PHASE = GroupField("status.phase", path=("status", "phase"))
CLUSTER = GroupField("cluster", column="cluster")
SEARCH = Search(resource="pods", group_by=(CLUSTER, PHASE))


@pytest.mark.parametrize("dialect", ALL)
def test_values_then_a_count_grouped_by_their_names(dialect: str) -> None:
    text, params = compiled(group_statement(SEARCH, dialect, limit=11), dialect)
    assert "resources.cluster AS g0" in text and " AS g1 " in text and "count(*) AS n" in text
    assert "GROUP BY grouped.g0, grouped.g1" in text
    assert "resources.deleted = " in text and 11 in flat(params)
    assert "phase" not in text  # the path is a bound parameter


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
    assert group_value(PHASE, dialect, raw) == value


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
