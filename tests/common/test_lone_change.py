"""A lone change on PostgreSQL is one statement: its revision taken, its row written and committed
in one round trip (``upsert_one_taking_revision``); its effects are those of the general path.

The shared storage suite (tests/common/storage/) checks the guards through it on every backend
(most of its writes are single upserts); this module checks that PostgreSQL really takes that
path, and that revisions stay increasing across lone changes and batches."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Connection, event, select

from common.storage.sql.schema import resources, store_revision
from common.storage.sql.store import SqlStore
from tests.common.storage.events import Objects

pytestmark = pytest.mark.e2e


@pytest.fixture
def store(postgres_url: str) -> Iterator[SqlStore]:
    s = SqlStore(postgres_url)
    s.migrate()
    yield s
    s.close()


class _Statements:
    """Each statement's first word, and whether its connection was in autocommit (no BEGIN)."""

    def __init__(self, store: SqlStore) -> None:
        self.sql: list[tuple[str, bool]] = []
        event.listen(store.engine, "before_cursor_execute", self._stmt)

    def _stmt(self, conn: Connection, _cur: object, statement: str, *_: object) -> None:
        dbapi = conn.connection.dbapi_connection
        self.sql.append((statement.split()[0].upper(), bool(getattr(dbapi, "autocommit", False))))


def _head(store: SqlStore) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(store_revision.c.head)).scalar_one())


def _row(store: SqlStore, cluster: str, name: str) -> tuple[int, int, int]:
    c = resources.c
    with store.engine.connect() as conn:
        row = conn.execute(
            select(c.resource_version, c.revision, c.created_revision).where(
                c.cluster == cluster, c.name == name
            )
        ).one()
    return int(row[0]), int(row[1]), int(row[2])


def test_a_lone_upsert_is_one_statement_without_a_transaction_of_its_own(store: SqlStore) -> None:
    objs = Objects("lone-1")
    store.apply([objs.upsert("a", 10)], [], [])  # the pool's first connection is set up here
    before = _head(store)
    seen = _Statements(store)
    store.apply([objs.upsert("a", 11)], [], [])
    assert seen.sql == [("WITH", True)]
    assert _row(store, "lone-1", "a")[:2] == (11, before + 1)
    assert _head(store) == before + 1


def test_revisions_increase_across_lone_changes_and_batches(store: SqlStore) -> None:
    objs = Objects("lone-2")
    store.apply([objs.upsert("a", 10)], [], [])
    store.apply([objs.upsert("b", 20), objs.upsert("c", 30)], [], [])  # the general path
    store.apply([objs.upsert("a", 11)], [], [])
    a, b, c = (_row(store, "lone-2", n) for n in "abc")
    assert b[1] < c[1] < a[1] == _head(store)
    assert a[2] < b[2]  # created before b and c, rewritten after: a new revision, same incarnation


def test_a_lone_stale_upsert_changes_nothing_but_the_head(store: SqlStore) -> None:
    objs = Objects("lone-3")
    store.apply([objs.upsert("a", 10)], [], [])
    kept = _row(store, "lone-3", "a")
    store.apply([objs.upsert("a", 9)], [], [])  # older: the guard refuses it
    assert _row(store, "lone-3", "a") == kept
    store.apply([], [objs.delete("a", 12)], [])
    store.apply([objs.upsert("a", 12)], [], [])  # a re-delivery of the deleted version stays dead
    with store.engine.connect() as conn:
        deleted = conn.execute(
            select(resources.c.deleted).where(resources.c.cluster == "lone-3", resources.c.name == "a")
        ).scalar_one()
    assert deleted is True
