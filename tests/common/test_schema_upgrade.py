"""Schema upgrades on a real store: a store created before some indexes existed gets them, keeps
its rows and its version (indexes do not move it, so older releases can still use the store); a
store newer than the release is refused."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging

import pytest
from sqlalchemy import Engine, bindparam, insert, inspect, select, text, update

from apiserver.search import parse_search
from common.storage import StorageError
from common.storage.facets import facets_of
from common.storage.grouping import GroupField
from common.storage.query import Search
from common.storage.sql import facets as sql_facets
from common.storage.sql.engine import create_schema, label_index_ready, make_engine
from common.storage.sql.reading import SqlReader
from common.storage.sql.schema import (
    LABEL_TRIGGERS,
    SCHEMA_VERSION,
    label_dialect,
    resource_labels,
    resources,
    schema_version,
)
from common.storage.sql.selects import list_statement
from common.storage.sql.store import SqlStore


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
            assert conn.execute(select(schema_version.c.version)).scalar_one() == SCHEMA_VERSION == 3
            fuzzy = Search(group="", resource="pods", fuzzy_name="web")
            got = [r.name for r in conn.execute(list_statement(fuzzy, dialect))]
        assert got == ["web%2", "web-1"]
        create_schema(engine)  # idempotent once upgraded
        assert _index_names(engine) == wanted
    finally:
        engine.dispose()


def test_store_from_before_revisions_gets_them(store_url: str) -> None:
    """Schema 1 -> 2: a store without revisions gets the columns, every row a revision (its id), the
    head past them; served objects carry those revisions and new writes take later ones."""
    engine = make_engine(store_url)
    store = SqlStore(store_url)
    try:
        create_schema(engine)
        with engine.begin() as conn:
            conn.execute(resources.delete())
            for ix in [i for i in resources.indexes if "revision" in str(i.name)]:
                ix.drop(conn)
            conn.execute(text("ALTER TABLE resources DROP COLUMN revision"))
            conn.execute(text("ALTER TABLE resources DROP COLUMN created_revision"))
            conn.execute(text("DROP TABLE store_revision"))
            conn.execute(update(schema_version).values(version=1))
            old = resources.c
            conn.execute(
                insert(resources).values({c: bindparam(c) for c in _row("x")}),
                [_row("web-1"), _row("db-1")],
            )
            ids = dict(conn.execute(select(old.name, old.id).where(old.name.in_(["web-1", "db-1"]))).all())
        assert "revision" not in {c["name"] for c in inspect(engine).get_columns("resources")}

        store.migrate()

        with engine.connect() as conn:
            assert conn.execute(select(schema_version.c.version)).scalar_one() == SCHEMA_VERSION
        _floor, head = asyncio.run(store.window())
        assert head == max(ids.values())
        page = asyncio.run(store.list_objects(Search(group="", resource="pods")))
        assert {o.name: o.revision for o in page.items} == ids
        assert page.resource_version == str(head)
        assert [json.loads(o.object)["metadata"]["resourceVersion"] for o in page.items] == [
            str(o.revision) for o in page.items
        ]
        changes = asyncio.run(store.changes(0, head, None, 10))
        assert sorted(c.object.name for c in changes) == ["db-1", "web-1"]
    finally:
        store.close()
        engine.dispose()


def test_store_newer_than_the_release_is_refused(store_url: str) -> None:
    engine = make_engine(store_url)
    try:
        create_schema(engine)
        with engine.begin() as conn:
            conn.execute(update(schema_version).values(version=SCHEMA_VERSION + 1))
        with pytest.raises(StorageError, match="newer than this release"):
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


def _labelled_row(name: str, **labels: str) -> dict[str, object]:
    row = _row(name)
    row["object"] = json.dumps({"kind": "Pod", "metadata": {"name": name, "labels": labels}})
    return row


def _label_search(engine: Engine, selector: str) -> list[str]:
    search = parse_search([("labelSelector", selector)], group="", version="v1", resource="pods")
    return [o.name for o in SqlReader(engine).list_objects(search).items]


def _drop_label_index(engine: Engine) -> None:
    """Make the store look like one from before the label table (and its triggers) existed."""
    with engine.begin() as conn:
        for name in LABEL_TRIGGERS[str(label_dialect(engine.dialect.name))]:
            conn.execute(text(f"DROP TRIGGER IF EXISTS {name}"))
        conn.execute(text("DROP TABLE resource_labels"))
        conn.execute(text("DROP TABLE store_features"))


@pytest.mark.parametrize("store", ["sqlite", "mysql"])
def test_store_from_before_the_label_table_is_backfilled(store: str, request: pytest.FixtureRequest) -> None:
    engine = make_engine(request.getfixturevalue(f"{store}_url"))
    try:
        create_schema(engine)
        _drop_label_index(engine)
        with engine.begin() as conn:
            conn.execute(resources.delete())
            conn.execute(
                insert(resources),
                [_labelled_row("web-1", app="web"), _labelled_row("db-1", app="db"), _labelled_row("bare")],
            )

        create_schema(engine)  # as the next release's first start would

        with engine.connect() as conn:
            assert label_index_ready(conn)
            labels = conn.execute(select(resource_labels.c.label_key, resource_labels.c.label_value)).all()
        assert sorted(labels) == [("app", "db"), ("app", "web")]
        assert (_label_search(engine, "app=web"), _label_search(engine, "!app")) == (["web-1"], ["bare"])
        with engine.begin() as conn:  # and the triggers keep it from now on
            conn.execute(insert(resources), [_labelled_row("web-2", app="web")])
        assert _label_search(engine, "app=web") == ["web-1", "web-2"]
    finally:
        engine.dispose()


def test_labels_without_triggers_are_read_from_the_objects(
    mysql_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """When the label triggers cannot be created (here: their name is taken by a trigger on another
    table; in production, MySQL without the TRIGGER privilege), the store still starts, says why,
    and label selectors read the stored objects: same answers, no index."""
    engine = make_engine(mysql_url)
    try:
        create_schema(engine)
        _drop_label_index(engine)
        with engine.begin() as conn:
            conn.execute(resources.delete())
            conn.execute(insert(resources), [_labelled_row("web-1", app="web"), _labelled_row("db-1")])
            conn.execute(
                text(
                    "CREATE TRIGGER resources_labels_insert AFTER INSERT ON schema_version"
                    " FOR EACH ROW SET @unused = 1"
                )
            )
        with caplog.at_level(logging.WARNING, logger="common.storage.sql.engine"):
            create_schema(engine)
        assert "cannot create the triggers that index labels" in caplog.text
        with engine.connect() as conn:
            assert not label_index_ready(conn)
        assert (_label_search(engine, "app=web"), _label_search(engine, "!app")) == (["web-1"], ["db-1"])
        with engine.begin() as conn:
            conn.execute(text("DROP TRIGGER resources_labels_insert"))
        create_schema(engine)  # the cause is gone: the next start indexes them
        with engine.connect() as conn:
            assert label_index_ready(conn)
        assert _label_search(engine, "app=web") == ["web-1"]
    finally:
        engine.dispose()


FACETED = {
    "running": ({"status": {"phase": "Running"}, "spec": {"nodeName": "node-1"}}, ("Running", "node-1")),
    "bare": ({}, ("", "")),
    "nulls": ({"status": {"phase": None}, "spec": {"nodeName": None}}, ("", "")),
    "empty": ({"status": {"phase": ""}, "spec": {"nodeName": "node-2"}}, ("", "node-2")),
    "number": ({"status": {"phase": 3}, "spec": {"nodeName": True}}, (None, None)),
    "object": ({"status": {"phase": {"a": 1}}, "spec": {"nodeName": ["n"]}}, (None, None)),
    "long": ({"status": {"phase": "x" * 254}, "spec": {"nodeName": "n" * 253}}, (None, "n" * 253)),
    "spaced": ({"status": {"phase": "Running "}, "spec": {"nodeName": "nœud"}}, (None, "nœud")),
    "odd": ({"status": "weird", "spec": 7}, ("", "")),
}
"""name -> (object fields, the facets (phase, node_name) the upgrade and the writer give it)."""

phase_field = GroupField("status.phase", path=("status", "phase"))
node_field = GroupField("spec.nodeName", path=("spec", "nodeName"))


def _faceted_row(name: str, fields: dict[str, object]) -> dict[str, object]:
    return _row(name) | {"object": json.dumps({"kind": "Pod", "metadata": {"name": name}, **fields})}


def test_store_from_before_facets_gets_them_filled_in_batches(
    store_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Schema 2 -> 3: a store without the facet columns gets them, NULL at first (group-bys and field
    selectors read the JSON meanwhile), then filled in SQL a few rows per transaction with what the
    writer computes (``facets_of``); group-bys and field selectors answer the same before and after."""
    engine = make_engine(store_url)
    store = SqlStore(store_url)
    try:
        create_schema(engine)
        with engine.begin() as conn:
            conn.execute(resources.delete())
            for ix in [
                i for i in resources.indexes if i.name in ("ix_resources_gr_phase", "ix_resources_gr_node")
            ]:
                ix.drop(conn)
            conn.execute(text("ALTER TABLE resources DROP COLUMN phase"))
            conn.execute(text("ALTER TABLE resources DROP COLUMN node_name"))
            conn.execute(text("DELETE FROM store_features WHERE name = 'facets'"))
            conn.execute(update(schema_version).values(version=2))
        rows = [_faceted_row(name, fields) for name, (fields, _) in FACETED.items()]
        with engine.begin() as conn:
            conn.execute(insert(resources).values({c: bindparam(c) for c in rows[0]}), rows)
        searches = [
            Search(resource="pods", group_by=(phase_field, node_field)),
            parse_search(
                [("fieldSelector", "status.phase=Running")], group="", version="v1", resource="pods"
            ),
            parse_search([("fieldSelector", "status.phase=")], group="", version="v1", resource="pods"),
            parse_search(
                [("fieldSelector", "spec.nodeName!=node-1")], group="", version="v1", resource="pods"
            ),
        ]
        monkeypatch.setattr(sql_facets, "FACET_BATCH_ROWS", 2)
        caplog.set_level(logging.INFO, logger="common.storage.sql.engine")

        store.migrate()

        with engine.connect() as conn:
            assert conn.execute(select(schema_version.c.version)).scalar_one() == SCHEMA_VERSION == 3
            got = {r.name: (r.phase, r.node_name) for r in conn.execute(select(resources))}
            features = {n for (n,) in conn.execute(text("SELECT name FROM store_features"))}
        assert got == {name: want for name, (_, want) in FACETED.items()}
        assert got == {r["name"]: facets_of(str(r["object"]).encode()) for r in rows}  # as the writer
        assert "facets" in features
        assert {"ix_resources_gr_phase", "ix_resources_gr_node"} <= _index_names(engine)
        assert any("facets of 9 rows filled" in r.getMessage() for r in caplog.records)
        after = [_answer(store, s) for s in searches]
        # the same searches with every facet NULL again: the JSON path's answers
        with engine.begin() as conn:
            conn.execute(update(resources).values(phase=None, node_name=None))
        assert [_answer(store, s) for s in searches] == after
        assert after[0][("Running", "node-1")] == 1 and after[0][("", "")] == 3
        # MySQL/MariaDB compare "Running " as "Running" (PAD SPACE), the JSON path did so before facets
        assert sorted(set(after[1]) - {"spaced"}) == ["running"] and sorted(after[2]) == [
            "bare",
            "empty",
            "nulls",
            "odd",
        ]
        store.migrate()  # idempotent: the capability is recorded, nothing is read again
    finally:
        store.close()
        engine.dispose()


def _answer(store: SqlStore, search: Search) -> dict[object, int]:
    if search.group_by:
        return {g.values: g.count for g in asyncio.run(store.count_groups(search, 100))}
    return {o.name: 1 for o in asyncio.run(store.list_objects(search)).items}
