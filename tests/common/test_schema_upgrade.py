"""Schema upgrades on a real store: a store created before some indexes existed gets them, keeps
its rows and its version (indexes do not move it, so older releases can still use the store); a
store newer than the release is refused."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import Engine, insert, inspect, select, text, update

from common.storage.engine import create_schema, make_engine
from common.storage.query import Search
from common.storage.schema import SCHEMA_VERSION, resources, schema_version
from common.storage.search import list_statement


def _index_names(engine: Engine) -> set[str]:
    return {str(ix["name"]) for ix in inspect(engine).get_indexes("resources")}


def _row(name: str) -> dict[str, object]:
    return {
        "cluster": "c1",
        "api_group": "",
        "version": "v1",
        "resource": "pods",
        "kind": "Pod",
        "namespace": "default",
        "name": name,
        "uid": f"uid-{name}",
        "owner_uid": "",
        "resource_version": 1,
        "epoch": 1,
        "created_at": dt.datetime(2026, 1, 1),
        "synced_at": dt.datetime(2026, 1, 1),
        "deleted": False,
        "object": f'{{"kind":"Pod","metadata":{{"name":"{name}"}}}}',
    }


def test_store_from_before_the_indexes_gets_them(store_url: str) -> None:
    engine = make_engine(store_url)
    try:
        create_schema(engine)
        dialect = engine.dialect.name
        wanted = _index_names(engine)
        # the indexes of the current schema on this store (trigram and labels: PostgreSQL only)
        assert ("ix_resources_name_trgm" in wanted) == (dialect == "postgresql")
        assert ("ix_resources_labels_gin" in wanted) == (dialect == "postgresql")
        # make it look like a store from before those indexes (and one more, any dialect)
        dropped = ("ix_resources_name_trgm", "ix_resources_labels_gin", "ix_resources_owner")
        gone = [ix for ix in resources.indexes if ix.name in wanted and ix.name in dropped]
        with engine.begin() as conn:
            for ix in gone:
                ix.drop(conn)
            conn.execute(insert(resources), [_row("web-1"), _row("db-1"), _row("web%2")])
        assert not {str(ix.name) for ix in gone} & _index_names(engine)

        create_schema(engine)

        assert _index_names(engine) == wanted
        with engine.connect() as conn:
            assert conn.execute(select(schema_version.c.version)).scalar_one() == SCHEMA_VERSION == 1
            fuzzy = Search(group="", resource="pods", fuzzy_name="web")
            got = [r.name for r in conn.execute(list_statement(fuzzy, dialect))]
        assert got == ["web%2", "web-1"]
        create_schema(engine)  # idempotent once upgraded
        assert _index_names(engine) == wanted
    finally:
        engine.dispose()


def test_store_newer_than_the_release_is_refused(store_url: str) -> None:
    engine = make_engine(store_url)
    try:
        create_schema(engine)
        with engine.begin() as conn:
            conn.execute(update(schema_version).values(version=SCHEMA_VERSION + 1))
        with pytest.raises(RuntimeError, match="newer than this release"):
            create_schema(engine)
        with engine.begin() as conn:
            conn.execute(update(schema_version).values(version=SCHEMA_VERSION))
    finally:
        engine.dispose()


def test_postgresql_objects_are_compressed_with_lz4(postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    try:
        create_schema(engine)
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE resources ALTER COLUMN object SET COMPRESSION pglz"))
        create_schema(engine)  # an older store is switched for the values written from now on
        with engine.begin() as conn:
            conn.execute(insert(resources), [{**_row("big"), "object": '{"data":"' + "ab" * 4000 + '"}'}])
        with engine.connect() as conn:
            method = conn.execute(
                text("SELECT pg_column_compression(object) FROM resources WHERE name = 'big'")
            ).scalar_one()
        assert method == "lz4"
    finally:
        engine.dispose()
