"""Relationship queries -> SQL, compiled for PostgreSQL, MySQL and SQLite: the lookups read the
indexed columns with every value bound, and a relation answered in several places is an OR of
plain searches (the behaviour on real stores is tests/common/storage/test_relations.py)."""

from __future__ import annotations

import dataclasses

import pytest

from common.storage.query import Search, SetFilter
from common.storage.relations import Relation, RelationKind, Subject
from common.storage.sql import relations as sql_relations
from common.storage.sql import selects as sql
from tests.common.test_search_sql import ALL, EVIL, compiled, flat, where

PODS = Search(group="", version="v1", resource="pods")


@pytest.mark.parametrize("dialect", ALL)
def test_lookups_read_indexed_columns_with_values_bound(dialect: str) -> None:
    text, params = compiled(sql_relations.subjects_statement(Subject(uid=EVIL), 1001), dialect)
    assert EVIL not in text and EVIL in flat(params)
    assert "resources.uid = " in text and "resources.deleted = " in text
    by_name = Subject(name=EVIL, group="apps", resource=EVIL, namespace=EVIL, cluster=EVIL)
    text, params = compiled(sql_relations.subjects_statement(by_name, 1001), dialect)
    assert EVIL not in text and flat(params).count(EVIL) == 4
    for column in ("cluster", "api_group", "resource", "name", "namespace"):
        assert f"resources.{column} = " in text
    text, params = compiled(sql_relations.by_uids_statement(EVIL, [EVIL, "u-2"]), dialect)
    assert EVIL not in text and "resources.uid IN " in text and "resources.cluster = " in text
    assert {EVIL, "u-2"} <= set(flat(params))


@pytest.mark.parametrize("dialect", ALL)
def test_several_places_are_an_or_of_plain_searches(dialect: str) -> None:
    alts = (
        dataclasses.replace(PODS, clusters=SetFilter(("c1",)), namespaces=SetFilter(("a",))),
        dataclasses.replace(PODS, clusters=SetFilter(("c2",)), namespaces=SetFilter((EVIL,))),
    )
    rel = Relation(RelationKind.SELECTED, Subject(uid="s"), alternatives=alts)
    text, params = where(dataclasses.replace(PODS, relation=rel), dialect)
    assert " OR " in text and EVIL not in text and {"c1", "c2", "a", EVIL} <= set(flat(params))


def test_an_unresolved_relation_is_never_compiled() -> None:
    rel = Relation(RelationKind.OWNERS, Subject(uid="p"))
    with pytest.raises(ValueError, match="resolve"):
        sql.where_clause(dataclasses.replace(PODS, relation=rel), "sqlite")
