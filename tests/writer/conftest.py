"""Helpers for the writer tests: the SQL store under test (and its engine), reading its rows back."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, select

from common.storage.sql.schema import resources
from common.storage.sql.store import SqlStore
from tests.common.storage.events import Objects


@pytest.fixture
def sql_store(store_url: str) -> Iterator[SqlStore]:
    st = SqlStore(store_url)
    st.migrate()
    yield st
    st.close()


@pytest.fixture
def engine(sql_store: SqlStore) -> Engine:
    return sql_store.engine


class StoreView:
    """Reads the store the way the API tier would."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def live(self, cluster: str) -> dict[str, int]:
        """name -> resourceVersion of the objects served for ``cluster`` (tombstones excluded)."""
        c = resources.c
        stmt = select(c.name, c.resource_version).where(c.cluster == cluster, c.deleted.is_(False))
        with self.engine.connect() as conn:
            return {name: rv for name, rv in conn.execute(stmt)}

    def rows(self, cluster: str) -> dict[str, tuple[int, bool, int, str]]:
        """name -> (rv, deleted, epoch, object), tombstones included."""
        c = resources.c
        stmt = select(c.name, c.resource_version, c.deleted, c.epoch, c.object).where(c.cluster == cluster)
        with self.engine.connect() as conn:
            return {
                r.name: (r.resource_version, bool(r.deleted), r.epoch, r.object) for r in conn.execute(stmt)
            }


@pytest.fixture
def objs() -> Objects:
    """Events of a cluster of this test alone: tests share stores, never rows."""
    return Objects(f"c-{uuid.uuid4().hex[:10]}")


@pytest.fixture
def store(engine: Engine) -> StoreView:
    return StoreView(engine)
