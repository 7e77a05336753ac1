"""Counts and offset pages on SQLite and MySQL/MariaDB read ``ix_resources_gr_live_key`` alone.

Without that index both read every matching row to count them or to skip them (MariaDB through
``deleted`` and the clustered index, then sorted): 50,000 pods, a count 75 -> 11 ms, a page at
offset 20,000 180 -> 9 ms on MariaDB (bench/notes.md). The plan is what a user's latency follows,
so it is checked here on a real database (PostgreSQL counts by a sequential scan of its narrow heap
and skips along ``uq_resources_key``: no such index there).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Select

from common.storage.query import Search
from common.storage.sql.selects import count_statement, list_statement
from common.storage.sql.store import SqlStore
from tests.common.storage.events import PODS, Objects
from tests.common.storage.test_writes import apply

PODS_SEARCH = Search(group="", version="v1", resource="pods")


@pytest.fixture(scope="module", params=["sqlite", "mysql"])
def filled(request: pytest.FixtureRequest) -> Iterator[SqlStore]:
    url: str = request.getfixturevalue(f"{request.param}_url")
    store = SqlStore(url)
    store.migrate()
    for c in range(3):
        objs = Objects(f"plans-{c}")
        apply(store, *objs.types(), *[objs.upsert(f"p{i:03d}", i + 1, gvr=PODS) for i in range(200)])
    store.refresh_statistics()
    if store.name == "mysql":
        with store.engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE TABLE resources")
    yield store
    store.close()


def plan(store: SqlStore, stmt: Select[Any]) -> str:
    sql = str(stmt.compile(dialect=store.engine.dialect, compile_kwargs={"literal_binds": True}))
    explain = "EXPLAIN QUERY PLAN" if store.name == "sqlite" else "EXPLAIN"
    with store.engine.connect() as conn:
        return "\n".join(str(tuple(r)) for r in conn.exec_driver_sql(f"{explain} {sql}".replace("%", "%%")))


def test_a_count_reads_the_live_key_index_only(filled: SqlStore) -> None:
    text = plan(filled, count_statement(PODS_SEARCH, filled.name))
    # the facet indexes (common/storage/facets.py) start with the same (group, resource, deleted)
    # and are narrower: the planner may count from one of them alone, as cheaply
    assert any(f"ix_resources_gr_{ix}" in text for ix in ("live_key", "phase", "node"))
    assert ("COVERING INDEX" if filled.name == "sqlite" else "Using index") in text


def test_an_offset_page_skips_along_the_live_key_index(filled: SqlStore) -> None:
    page = dataclasses.replace(PODS_SEARCH, size=10, offset=300)
    text = plan(filled, list_statement(page, filled.name, limit=11, offset=300))
    assert "ix_resources_gr_live_key" in text
    assert ("COVERING INDEX" if filled.name == "sqlite" else "Using index") in text


def test_postgresql_refreshing_statistics_leaves_every_written_page_all_visible(postgres_url: str) -> None:
    """A count on PostgreSQL reads an index alone only for pages its visibility map marks
    all-visible; rows just written are not, until a VACUUM. The writer's statistics refresh is a
    ``VACUUM (ANALYZE)``: afterwards every page of the table is (autovacuum is off for this table,
    so only the refresh can have done it)."""
    store = SqlStore(postgres_url)
    store.migrate()
    try:
        with store.engine.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE resources SET (autovacuum_enabled = false)")
        objs = Objects("visible")
        apply(store, *objs.types(), *[objs.upsert(f"p{i:03d}", i + 1, gvr=PODS) for i in range(400)])

        def pages() -> tuple[int, int]:
            with store.engine.connect() as conn:
                row = conn.exec_driver_sql(
                    "SELECT relpages, relallvisible FROM pg_class WHERE oid = CAST('resources' AS regclass)"
                ).one()
            return int(row[0]), int(row[1])

        # PostgreSQL marks a page all-visible only once the commits of its rows are flushed to the
        # WAL; the test server commits asynchronously (synchronous_commit = off), flushing within
        # wal_writer_delay: wait for that, as a production server (synchronous commits) never needs.
        with store.engine.connect() as conn:
            written = conn.exec_driver_sql("SELECT pg_current_wal_insert_lsn()").scalar_one()
            deadline = time.monotonic() + 30
            while not conn.exec_driver_sql(
                "SELECT pg_current_wal_flush_lsn() >= CAST(%(lsn)s AS pg_lsn)", {"lsn": written}
            ).scalar_one():
                assert time.monotonic() < deadline, "the WAL was not flushed in 30 s"
                conn.rollback()
                time.sleep(0.05)
        assert store.refresh_statistics() is not None
        total, visible = pages()
        assert total > 0 and visible == total
    finally:
        with store.engine.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE resources RESET (autovacuum_enabled)")
        store.close()
