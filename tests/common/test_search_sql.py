"""Search -> SQL, compiled for PostgreSQL, MySQL and SQLite: the shape of each condition, and that user
values (even hostile ones that bypassed the parser) only ever appear as bound parameters."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import Dialect

from common.storage import paging
from common.storage.query import (
    FieldRequirement,
    GroupResource,
    LabelRequirement,
    Operator,
    OrderBy,
    Search,
    SetFilter,
    full_order,
)
from common.storage.sql import selects as sql

DIALECTS: dict[str, Dialect] = {
    "postgresql": postgresql.dialect(),  # type: ignore[no-untyped-call]
    "mysql": mysql.dialect(),  # type: ignore[no-untyped-call]
    "sqlite": sqlite.dialect(),  # type: ignore[no-untyped-call]
}
ALL = list(DIALECTS)
EVIL = "x'; DROP TABLE resources; --"
BASE = Search(group="apps", version="v1", resource="deployments")


def compiled(stmt: Any, dialect: str) -> tuple[str, dict[str, Any]]:
    c = stmt.compile(dialect=DIALECTS[dialect])
    return " ".join(str(c).split()), dict(c.params)


def where(search: Search, dialect: str) -> tuple[str, dict[str, Any]]:
    text, params = compiled(sql.list_statement(search, dialect), dialect)
    return text.split(" WHERE ", 1)[1].split(" ORDER BY ")[0], params


def flat(params: dict[str, Any]) -> list[Any]:
    out: list[Any] = []
    for v in params.values():
        out.extend(v if isinstance(v, list | tuple) else [v])
    return out


@pytest.mark.parametrize("dialect", ALL)
def test_every_list_excludes_tombstones_and_selects_one_resource(dialect: str) -> None:
    text, params = where(BASE, dialect)
    assert text.startswith("resources.deleted = ")
    assert "resources.api_group = " in text and "resources.resource = " in text
    assert {"apps", "deployments"} <= set(flat(params))


@pytest.mark.parametrize("dialect", ALL)
def test_default_order_and_tie_breakers(dialect: str) -> None:
    text, _ = compiled(sql.list_statement(BASE, dialect), dialect)
    assert text.endswith("ORDER BY resources.cluster ASC, resources.namespace ASC, resources.name ASC")
    s = Search(group="apps", resource="deployments", orderby=(OrderBy("name"),))
    text, _ = compiled(sql.list_statement(s, dialect), dialect)
    assert text.endswith("ORDER BY resources.name ASC, resources.cluster ASC, resources.namespace ASC")
    s = Search(
        group="apps", resource="deployments", orderby=(OrderBy("created_at", True), OrderBy("cluster"))
    )
    text, _ = compiled(sql.list_statement(s, dialect), dialect)
    assert "ORDER BY coalesce(resources.created_at, " in text
    assert text.endswith("DESC, resources.cluster ASC, resources.namespace ASC, resources.name ASC")


def test_collection_order_groups_kinds_within_a_cluster() -> None:
    s = Search(group_resources=(GroupResource("apps", "deployments"), GroupResource("apps", "daemonsets")))
    assert [o.field for o in full_order(s)] == ["cluster", "api_group", "resource", "namespace", "name"]
    text, params = where(s, "postgresql")
    assert "resources.api_group = " in text and " OR " in text
    assert {"deployments", "daemonsets"} <= set(flat(params))


@pytest.mark.parametrize("dialect", ALL)
def test_hostile_values_only_as_parameters(dialect: str) -> None:
    s = Search(
        group=EVIL,
        resource=EVIL,
        single_cluster=EVIL,
        namespace=EVIL,
        clusters=SetFilter((EVIL,), (EVIL,)),
        namespaces=SetFilter((EVIL,), (EVIL,)),
        names=SetFilter((EVIL,), (EVIL,)),
        labels=(
            LabelRequirement("app", Operator.EQUALS, (EVIL,)),
            LabelRequirement("t", Operator.NOT_IN, (EVIL,)),
        ),
        fields=(
            FieldRequirement(("status", "phase"), Operator.EQUALS, (EVIL,)),
            FieldRequirement(("metadata", "name"), Operator.NOT_EQUALS, (EVIL,)),
        ),
        owner_name=EVIL,
        owner_gr=GroupResource(EVIL, EVIL),
        owner_seniority=2,
        fuzzy_name=EVIL,
    )
    stmt = sql.list_statement(s, dialect, after=[EVIL, EVIL, EVIL], limit=3)
    text, params = compiled(stmt, dialect)
    assert "DROP" not in text
    values = [str(v) for v in flat(params)]
    assert sum(EVIL in v for v in values) >= 15
    count_text, _ = compiled(sql.count_statement(s, dialect, after=[EVIL, EVIL, EVIL]), dialect)
    assert "DROP" not in count_text
    get_text, get_params = compiled(sql.get_statement(EVIL, EVIL, EVIL, EVIL, EVIL), dialect)
    assert "DROP" not in get_text and flat(get_params).count(EVIL) == 5


@pytest.mark.parametrize("dialect", ALL)
def test_set_filters(dialect: str) -> None:
    s = Search(
        group="apps",
        resource="deployments",
        clusters=SetFilter(("c1", "c2")),
        namespaces=SetFilter(None, ("kube-system",)),
    )
    text, params = where(s, dialect)
    assert "resources.cluster IN (__[POSTCOMPILE_" in text
    assert "(resources.namespace NOT IN (__[POSTCOMPILE_" in text
    assert ["c1", "c2"] in params.values() and ["kube-system"] in params.values()
    # an empty include list matches nothing: the whole condition folds to false
    text, _ = where(Search(group="apps", resource="deployments", names=SetFilter(())), dialect)
    assert text in ("false", "false = 1", "0 = 1")


@pytest.mark.parametrize("dialect", ALL)
def test_path_cluster_and_namespace(dialect: str) -> None:
    text, params = where(Search(group="", resource="pods", single_cluster="c1", namespace="ns"), dialect)
    assert "resources.cluster = " in text and "resources.namespace = " in text
    assert {"c1", "ns"} <= set(flat(params))


def test_field_selector_json_path_per_dialect() -> None:
    s = Search(
        group="",
        resource="pods",
        fields=(
            FieldRequirement(("status", "phase"), Operator.EQUALS, ("Running",)),
            FieldRequirement(("metadata", "annotations", "a.b/c"), Operator.NOT_EQUALS, ("x",)),
        ),
    )
    text, params = where(s, "postgresql")
    assert "coalesce((resources.object #>> %(param_1)s), " in text
    assert ("status", "phase") in params.values() and ("metadata", "annotations", "a.b/c") in params.values()
    text, params = where(s, "mysql")
    assert (
        "coalesce(CASE WHEN (json_type(json_extract(resources.object, %s)) = %s) THEN NULL"
        " ELSE json_unquote(json_extract(resources.object, %s)) END, %s) = %s"
    ) in text
    assert '$."status"."phase"' in params.values() and '$."metadata"."annotations"."a.b/c"' in params.values()
    text, params = where(s, "sqlite")
    assert "CASE WHEN (json_type(resources.object, ?) IN (" in text
    assert "CAST(json_extract(resources.object, ?) AS VARCHAR)" in text
    assert '$."status"."phase"' in params.values()


@pytest.mark.parametrize("dialect", ALL)
def test_field_selector_on_name_and_namespace_uses_columns(dialect: str) -> None:
    s = Search(
        group="",
        resource="pods",
        fields=(
            FieldRequirement(("metadata", "name"), Operator.EQUALS, ("a",)),
            FieldRequirement(("metadata", "namespace"), Operator.IN, ("x", "y")),
        ),
    )
    text, _ = where(s, dialect)
    assert "resources.name = " in text and "resources.namespace IN (" in text
    assert "json" not in text.lower() and "#>>" not in text


def test_label_selectors_postgresql_use_containment() -> None:
    s = Search(
        group="",
        resource="pods",
        labels=(
            LabelRequirement("app", Operator.EQUALS, ("web",)),
            LabelRequirement("tier", Operator.NOT_IN, ("a", "b")),
            LabelRequirement("app.kubernetes.io/name", Operator.EXISTS),
            LabelRequirement("legacy", Operator.DOES_NOT_EXIST),
        ),
    )
    text, params = where(s, "postgresql")
    labels = "(object -> 'metadata' -> 'labels')"  # the expression of the GIN index, verbatim
    assert f"({labels} @> %(param_1)s::JSONB)" in text
    assert (
        f"({labels} IS NULL OR NOT (({labels} @> %(param_2)s::JSONB) OR ({labels} @> %(param_3)s::JSONB)))"
        in text
    )
    assert "(resources.object #>> %(param_4)s) IS NOT NULL" in text
    assert "(resources.object #>> %(param_5)s) IS NULL" in text
    assert params["param_1"] == {"app": "web"}
    assert params["param_4"] == ("metadata", "labels", "app.kubernetes.io/name")


@pytest.mark.parametrize("dialect", ["mysql", "sqlite"])
def test_label_selectors_json_extract(dialect: str) -> None:
    s = Search(
        group="",
        resource="pods",
        labels=(
            LabelRequirement("app", Operator.EQUALS, ("web",)),
            LabelRequirement("tier", Operator.NOT_EQUALS, ("db",)),
        ),
    )
    text, params = where(s, dialect)
    extract = (
        "json_unquote(json_extract(resources.object, %s))"
        if dialect == "mysql"
        else ("json_extract(resources.object, ?)")
    )
    ph = "%s" if dialect == "mysql" else "?"
    assert f"{extract} = {ph}" in text
    # != also matches objects without the label, as in Kubernetes
    assert f"({extract} IS NULL OR {extract} != {ph})" in text
    assert '$."metadata"."labels"."app"' in params.values()


@pytest.mark.parametrize("dialect", ALL)
def test_fuzzy_name_escapes_like_wildcards(dialect: str) -> None:
    text, params = where(Search(group="", resource="pods", fuzzy_name="a_b%c"), dialect)
    assert "resources.name LIKE " in text and "ESCAPE '/'" in text
    assert "a/_b/%c" in params.values()


@pytest.mark.parametrize("dialect", ALL)
def test_since_before(dialect: str) -> None:
    t0, t1 = dt.datetime(2024, 1, 1), dt.datetime(2024, 2, 1)
    text, params = where(Search(group="", resource="pods", since=t0, before=t1), dialect)
    assert "resources.created_at >= " in text and "resources.created_at < " in text
    assert t0 in params.values() and t1 in params.values()


@pytest.mark.parametrize("dialect", ALL)
@pytest.mark.parametrize("seniority", [0, 1, 2])
def test_owner_seniority_nests_one_subquery_per_generation(dialect: str, seniority: int) -> None:
    s = Search(group="", resource="pods", owner_uid="u-1", owner_seniority=seniority)
    text, params = where(s, dialect)
    assert text.count("SELECT owner") == seniority
    assert f"resources AS owner{seniority}" in text or seniority == 0
    assert "u-1" in flat(params)
    s = Search(
        group="",
        resource="pods",
        clusters=SetFilter(("c1",)),
        owner_name="web",
        owner_gr=GroupResource("apps", "deployments"),
        owner_seniority=seniority,
    )
    text, params = where(s, dialect)
    assert text.count("SELECT owner") == seniority + 1
    assert "owner0.name = " in text and "owner0.api_group = " in text
    # every generation stays inside the one cluster
    assert text.count(".cluster = ") == seniority + 1
    assert flat(params).count("c1") == seniority + 2  # + the clusters IN list


@pytest.mark.parametrize("dialect", ALL)
def test_keyset_predicate_follows_mixed_directions(dialect: str) -> None:
    s = Search(group="", resource="pods", orderby=(OrderBy("name", True),))
    order = full_order(s)
    assert paging.order_names(order) == ("-name", "cluster", "namespace")
    text, params = where(Search(group="", resource="pods", orderby=(OrderBy("name", True),)), dialect)
    stmt = sql.list_statement(s, dialect, after=["n", "c", "ns"], limit=8)
    text, params = compiled(stmt, dialect)
    body = text.split(" WHERE ", 1)[1]
    # bounded scan on the leading field, then the lexicographic comparison
    assert "resources.name <= " in body
    assert (
        "(resources.name < " in body and "resources.cluster > " in body and "resources.namespace > " in body
    )
    assert 8 in params.values()


@pytest.mark.parametrize("dialect", ["postgresql"])
def test_keyset_in_one_direction_is_a_row_comparison_matching_an_index(dialect: str) -> None:
    s = Search(group="", resource="pods")
    text, params = compiled(sql.list_statement(s, dialect, after=["c1", "ns", "n"], limit=101), dialect)
    body = text.split(" WHERE ", 1)[1]
    # (cluster, api_group, resource, namespace, name): the columns of uq_resources_key, in order
    uq_columns = (
        "resources.cluster, resources.api_group, resources.resource, resources.namespace, resources.name"
    )
    assert f"({uq_columns}) > (" in body
    assert " OR " not in body
    key = ["c1", "", "pods", "ns", "n"]
    assert [v for v in params.values() if v in key][-5:] == key
    by_name = Search(
        group="apps",
        resource="deployments",
        orderby=(OrderBy("name", True), OrderBy("cluster", True), OrderBy("namespace", True)),
    )
    text, _ = compiled(sql.count_statement(by_name, dialect, after=["n", "c1", "ns"]), dialect)
    # orderby name: (api_group, resource, name, ...) lines up with ix_resources_gr_name
    gr_name_first = "resources.api_group, resources.resource, resources.name, resources.cluster"
    assert f"({gr_name_first}, resources.namespace) < (" in text


@pytest.mark.parametrize("dialect", ["mysql", "sqlite"])
def test_keyset_elsewhere_stays_the_expanded_comparison(dialect: str) -> None:
    text, _ = compiled(sql.list_statement(BASE, dialect, after=["c1", "ns", "n"], limit=5), dialect)
    body = text.split(" WHERE ", 1)[1]
    assert "resources.cluster >= " in body and " OR " in body and ") > (" not in body


@pytest.mark.parametrize("dialect", ALL)
def test_collection_page_is_one_limited_page_per_member(dialect: str) -> None:
    s = Search(group_resources=(GroupResource("apps", "deployments"), GroupResource("batch", "jobs")))
    text, params = compiled(sql.list_statement(s, dialect, limit=11, offset=4), dialect)
    assert text.count("UNION ALL") == 1
    assert text.count("LIMIT") == 3  # each member, then the merged page
    assert flat(params).count(15) == 2 and 11 in flat(params) and 4 in flat(params)
    merged_order = (
        "page.cluster ASC, page.api_group ASC, page.resource ASC, page.namespace ASC, page.name ASC"
    )
    assert f"ORDER BY {merged_order} LIMIT " in text
    # a collection listed whole, or of one API group (api_group bounds the scan), stays one statement
    text, _ = compiled(sql.list_statement(s, dialect), dialect)
    assert "UNION" not in text
    apps = Search(group_resources=(GroupResource("apps", "deployments"), GroupResource("apps", "daemonsets")))
    text, _ = compiled(sql.list_statement(apps, dialect, limit=11), dialect)
    assert "UNION" not in text and text.count("LIMIT") == 1


def test_keyset_key_values_are_typed() -> None:
    assert paging.key_value("created_at", "2024-01-02T03:04:05") == dt.datetime(2024, 1, 2, 3, 4, 5)
    assert paging.key_value("resource_version", 12) == 12
    with pytest.raises(ValueError):
        paging.key_value("created_at", "tomorrow")
    with pytest.raises(ValueError):
        sql.after_key(full_order(BASE), ["only-one"])


@pytest.mark.parametrize("dialect", ALL)
def test_offset_paging_and_count(dialect: str) -> None:
    text, params = compiled(sql.list_statement(BASE, dialect, limit=11, offset=20), dialect)
    assert "LIMIT" in text and {11, 20} <= set(flat(params))
    text, _ = compiled(sql.count_statement(BASE, dialect), dialect)
    assert text.startswith("SELECT count(*) AS count_1 FROM resources WHERE resources.deleted = ")


@pytest.mark.parametrize("dialect", ["mysql", "sqlite"])
def test_label_selectors_read_the_label_table(dialect: str) -> None:
    s = Search(
        group="",
        resource="pods",
        labels=(
            LabelRequirement("app", Operator.EQUALS, ("web",)),
            LabelRequirement("tier", Operator.NOT_IN, ("a", "b")),
            LabelRequirement("legacy", Operator.DOES_NOT_EXIST),
            LabelRequirement(EVIL, Operator.IN, (EVIL, "x")),
        ),
    )
    probe = "EXISTS (SELECT * FROM resource_labels WHERE resource_labels.resource_id = resources.id AND "
    for drive in (None, 0):
        stmt = sql.list_statement(s, dialect, label_index=sql.LabelIndex(drive=drive))
        text, params = compiled(stmt, dialect)
        assert "json" not in text.lower()
        # != / notin / !key: no label row of that kind (objects without the label match, as in Kubernetes)
        assert f"NOT ({probe}resource_labels.label_key = " in text
        assert text.count("NOT (EXISTS") == 2
        assert EVIL not in text and EVIL in params.values()
        if drive is None:  # every requirement probes the row's own labels (a page can stop early)
            assert text.count(probe) == 4
        else:  # the first starts from the rows carrying its label
            assert "resources.id IN (SELECT resource_labels.resource_id FROM resource_labels WHERE " in text
            assert text.count(probe) == 3
    count, params = compiled(sql.label_rows_statement(s.labels[0], 2000), dialect)
    assert count.startswith("SELECT count(*) AS count_1 FROM (SELECT resource_labels.resource_id")
    assert "LIMIT" in count and 2000 in params.values() and "web" in params.values()


def test_postgresql_ignores_the_label_table() -> None:
    s = Search(group="", resource="pods", labels=(LabelRequirement("app", Operator.EQUALS, ("web",)),))
    text, _ = compiled(sql.list_statement(s, "postgresql", label_index=sql.LabelIndex(drive=0)), "postgresql")
    assert "resource_labels" not in text and "@>" in text


def test_counts_start_from_the_rarest_label() -> None:
    plan = sql.LabelIndex(drive=None, rarest=1)  # a page probes (common labels); a count reads all
    s = Search(
        group="",
        resource="pods",
        labels=(
            LabelRequirement("tier", Operator.EQUALS, ("web",)),
            LabelRequirement("app", Operator.EQUALS, ("db",)),
        ),
    )
    page, _ = compiled(sql.list_statement(s, "sqlite", label_index=plan), "sqlite")
    count, _ = compiled(sql.count_statement(s, "sqlite", label_index=plan.for_count()), "sqlite")
    starts = "resources.id IN (SELECT resource_labels.resource_id FROM resource_labels WHERE "
    assert starts not in page
    assert count.count(starts) == 1 and "label_key = ? AND resource_labels.label_value = ?)" in count


@pytest.mark.parametrize("dialect", ALL)
def test_field_selectors_on_facets_read_the_column_then_the_json_of_null_rows(dialect: str) -> None:
    """status.phase / spec.nodeName (common/storage/facets.py): `=` and `in` are the column's value
    or, where the column is NULL, the JSON's (two ranges of the facet's index); `!=` and `notin`
    read the column, and the JSON only where it is NULL (COALESCE)."""
    eq = Search(
        group="",
        resource="pods",
        fields=(FieldRequirement(("status", "phase"), Operator.EQUALS, ("Running",)),),
    )
    text, _ = where(eq, dialect)
    assert "(resources.phase = " in text and " OR resources.phase IS NULL AND " in text
    ne = Search(
        group="",
        resource="pods",
        fields=(FieldRequirement(("spec", "nodeName"), Operator.NOT_IN, ("node-1", "node-2")),),
    )
    text, _ = where(ne, dialect)
    assert "coalesce(resources.node_name, " in text and "NOT IN" in text
