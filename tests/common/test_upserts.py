"""The writers' guarded statements, compiled per dialect: the guard shape and bound values."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import Dialect

from common.events import Delete, ResourceType, Upsert
from common.storage.sql import upserts as sql

DIALECTS: dict[str, Dialect] = {
    "postgresql": postgresql.dialect(),  # type: ignore[no-untyped-call]
    "mysql": mysql.dialect(),  # type: ignore[no-untyped-call]
    "sqlite": sqlite.dialect(),  # type: ignore[no-untyped-call]
}
NOW = dt.datetime(2026, 1, 2, 3, 4, 5)


def compiled(stmt: object, dialect: str) -> str:
    return " ".join(str(stmt.compile(dialect=DIALECTS[dialect])).split())  # type: ignore[attr-defined]


@pytest.mark.parametrize("dialect", ["postgresql", "sqlite"])
def test_upsert_guard_is_a_where_on_conflict(dialect: str) -> None:
    text = compiled(sql.upsert_resources(dialect), dialect)
    assert "ON CONFLICT (cluster, api_group, resource, namespace, name) DO UPDATE SET" in text
    where = text.split(" WHERE ", 1)[1]
    assert where.startswith("excluded.resource_version > resources.resource_version OR ")
    assert "excluded.resource_version = resources.resource_version AND resources.deleted = " in where
    # epoch never goes backwards
    assert (
        "epoch = CASE WHEN (excluded.epoch > resources.epoch) THEN excluded.epoch ELSE resources.epoch END"
        in text
    )


def test_upsert_guard_on_mysql_guards_every_column_and_sets_rv_last() -> None:
    text = compiled(sql.upsert_resources("mysql"), "mysql")
    assert "ON DUPLICATE KEY UPDATE" in text
    updates = text.split("ON DUPLICATE KEY UPDATE ", 1)[1]
    guard = (
        "VALUES(resource_version) > resources.resource_version OR "
        "VALUES(resource_version) = resources.resource_version AND resources.deleted = false"
    )
    assigned = [part.split(" = ", 1)[0] for part in updates.split(", ") if " = CASE WHEN" in part]
    assert assigned[-2:] == ["deleted", "resource_version"]
    assert set(assigned) == {c for c in sql.UPSERT_COLUMNS if c not in sql.RESOURCE_KEY}
    parts = [p for p in updates.split(", ") if " = CASE WHEN" in p]
    assert all(guard in p for p in parts), [p for p in parts if guard not in p]
    # a re-delivery (same rv) moves the epoch only: object and revision change for a newer rv alone
    newer = "VALUES(resource_version) > resources.resource_version"
    for col in ("object", "revision"):
        part = next(p for p in updates.split(", ") if p.startswith(f"{col} = "))
        assert f"AND {newer}" in part, part


@pytest.mark.parametrize("dialect", ["postgresql", "sqlite", "mysql"])
def test_tombstone_guard_accepts_equal_or_newer(dialect: str) -> None:
    text = compiled(sql.tombstone_resources(dialect), dialect)
    if dialect == "mysql":
        updates = text.split("ON DUPLICATE KEY UPDATE ", 1)[1]
        assert updates.count("CASE WHEN (VALUES(resource_version) >= resources.resource_version)") == 3
        assert updates.rstrip().split(", ")[-1].startswith("resource_version = ")
        assert "object" not in updates  # the old content is kept
    else:
        set_clause, where = text.split("DO UPDATE SET ", 1)[1].split(" WHERE ")
        assert where == "excluded.resource_version >= resources.resource_version"
        assert "object" not in set_clause
        assert "deleted = " in set_clause


@pytest.mark.parametrize("dialect", list(DIALECTS))
def test_values_are_bound_parameters(dialect: str) -> None:
    marker = "x'); DROP TABLE resources; --"
    ev = Upsert("c", "apps", "v1", "deployments", "Deployment", "ns", marker, "u", 5, 1, "", "", b"{}")
    row = sql.upsert_row(ev, NOW, 1)
    stmt = sql.upsert_resources(dialect).values(**row)
    comp = stmt.compile(dialect=DIALECTS[dialect])
    assert marker not in str(comp)
    assert marker in comp.params.values()
    listed = sql.unlisted_rows(marker, "apps", "deployments", 7, limit=100).compile(dialect=DIALECTS[dialect])
    assert marker not in str(listed) and marker in listed.params.values()
    purge = sql.purge_resources(dialect, marker, None, None, limit=5000).compile(dialect=DIALECTS[dialect])
    assert marker not in str(purge) and marker in purge.params.values()


@pytest.mark.parametrize("dialect", list(DIALECTS))
def test_purge_and_gc_are_chunked(dialect: str) -> None:
    purge = compiled(sql.purge_resources(dialect, "c", "apps", "deployments", limit=5000), dialect)
    gc = compiled(sql.expired_tombstones(dialect, NOW, limit=5000), dialect)
    for text in (purge, gc):
        assert "LIMIT" in text
        if dialect == "mysql":
            assert text.endswith("LIMIT 5000")
        else:
            assert "resources.id IN (SELECT resources.id" in text
    assert "resources.deleted = " in gc and "resources.synced_at <" in gc


def test_list_done_tombstones_only_live_rows_of_older_epochs() -> None:
    text = compiled(sql.tombstone_unlisted("c", "apps", "deployments", 7), "postgresql")
    assert text.startswith("UPDATE resources SET")
    assert "resources.epoch < " in text and "resources.deleted = false" in text
    assert "resource_version" in text.split(" WHERE ")[0]  # the tombstone takes the list's rv
    assert "revision" in text.split(" WHERE ")[0]  # and its own store revision
    assert "resources.resource_version <= " in text.split(" WHERE ")[1]  # newer rows are not judged
    ids = compiled(sql.unlisted_rows("c", "apps", "deployments", 7, limit=100), "postgresql")
    assert "resources.epoch < " in ids and "resources.resource_version <= " in ids and "LIMIT" in ids


def test_rows_from_events() -> None:
    ev = Upsert(
        "c", "", "v1", "pods", "Pod", "ns", "p", "uid", 9, 3, "own", "2024-05-01T10:00:00+02:00", b'{"k":1}'
    )
    row = sql.upsert_row(ev, NOW, 41)
    assert row["revision"] == row["created_revision"] == 41
    assert row["created_at"] == dt.datetime(2024, 5, 1, 8, 0, 0)
    assert row["object"] == '{"k":1}' and row["deleted"] is False and row["owner_uid"] == "own"
    assert set(row) == set(sql.UPSERT_COLUMNS)
    assert sql.parse_timestamp("") is None and sql.parse_timestamp("garbage") is None
    tomb = sql.tombstone_row(Delete("c", "", "v1", "pods", "ns", "p", 11), NOW, 42)
    assert tomb["deleted"] is True and tomb["resource_version"] == 11 and tomb["object"] == "{}"
    rt = sql.resource_type_row(
        ResourceType("c", "apps", "v1", "deployments", "Deployment", True, ["deploy"], ["get", "list"], "v1"),
        NOW,
    )
    assert (
        rt["short_names"] == '["deploy"]' and rt["verbs"] == '["get", "list"]' and rt["printer_columns"] == ""
    )
