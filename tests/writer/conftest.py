"""Helpers for the writer tests: the SQL store under test (and its engine), reading its rows back."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, select

from common.events import Delete, ListDone, Upsert
from common.storage.sql.schema import resources
from common.storage.sql.store import SqlStore


@pytest.fixture
def sql_store(store_url: str) -> Iterator[SqlStore]:
    st = SqlStore(store_url)
    st.migrate()
    yield st
    st.close()


@pytest.fixture
def engine(sql_store: SqlStore) -> Engine:
    return sql_store.engine


class Objects:
    """Events about deployments of one cluster, for tests."""

    def __init__(self, cluster: str) -> None:
        self.cluster = cluster

    def upsert(
        self,
        name: str,
        rv: int,
        epoch: int = 1,
        *,
        ns: str = "default",
        body: str = "",
        gvr: tuple[str, str, str, str] = ("apps", "v1", "deployments", "Deployment"),
    ) -> Upsert:
        """An upsert of ``name`` (a deployment unless ``gvr`` = (group, version, resource, kind))."""
        obj = body or f'{{"metadata":{{"name":"{name}","resourceVersion":"{rv}"}}}}'
        group, version, resource, kind = gvr
        return Upsert(
            self.cluster,
            group,
            version,
            resource,
            kind,
            ns,
            name,
            f"uid-{name}",
            rv,
            epoch,
            "",
            "",
            obj.encode(),
        )

    def delete(self, name: str, rv: int, *, ns: str = "default") -> Delete:
        return Delete(self.cluster, "apps", "v1", "deployments", ns, name, rv)

    def list_done(self, epoch: int) -> ListDone:
        return ListDone(self.cluster, "apps", "v1", "deployments", epoch)


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
