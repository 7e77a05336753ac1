"""The storage suite: the writer's statements on every store (SQLite, PostgreSQL, MariaDB).

Each test applies batches the way a writer does (``plan`` then ``SqlStore``) and reads the rows back
as the API tier would. Batches are applied separately where the test is about reordering between
writers, and together where it is about collapsing one batch.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json

from sqlalchemy import select, update

from apiserver.search import parse_search
from common.events import Event, PurgeCluster, ResourceType
from common.queue import Delivery
from common.storage import StoreOptions, StoreWriter
from common.storage.sql.engine import label_index_ready
from common.storage.sql.schema import resource_labels, resource_types, resources
from common.storage.sql.store import SqlStore
from writer.batching import Barrier, Purge, Writes, plan

POD = ("", "v1", "pods", "Pod")


def apply(applier: StoreWriter, *events: Event) -> None:
    """Apply ``events`` as one batch (ListDone applied at once: nothing else is in flight)."""
    deliveries = [Delivery(str(i + 1), e) for i, e in enumerate(events)]
    for step in plan(deliveries):
        if isinstance(step, Writes):
            applier.apply(step.upserts(), step.deletes(), list(step.resource_types.values()))
        elif isinstance(step, Barrier):
            applier.list_done(step.event)
        elif isinstance(step, Purge):
            applier.purge(step.event)


def test_upsert_then_update(engine, sql_store, store, objs) -> None:
    applier = sql_store
    apply(applier, objs.upsert("a", 5), objs.upsert("b", 6))
    apply(applier, objs.upsert("a", 9, body='{"v":"new"}'))
    assert store.live(objs.cluster) == {"a": 9, "b": 6}
    assert store.rows(objs.cluster)["a"][3].replace(" ", "") == '{"v":"new"}'


def test_older_event_does_not_overwrite_newer(engine, sql_store, store, objs) -> None:
    applier = sql_store
    apply(applier, objs.upsert("a", 9, body='{"v":9}'))
    apply(applier, objs.upsert("a", 5, body='{"v":5}'))
    rv, deleted, _, obj = store.rows(objs.cluster)["a"]
    assert (rv, deleted, obj.replace(" ", "")) == (9, False, '{"v":9}')


def test_late_update_does_not_resurrect_a_delete(engine, sql_store, store, objs) -> None:
    applier = sql_store
    apply(applier, objs.upsert("a", 5))
    apply(applier, objs.delete("a", 8))
    apply(applier, objs.upsert("a", 7))  # older than the deletion
    apply(applier, objs.upsert("a", 8))  # same revision as the deletion
    assert store.live(objs.cluster) == {}
    assert store.rows(objs.cluster)["a"][:2] == (8, True)


def test_delete_before_any_upsert_leaves_a_tombstone(engine, sql_store, store, objs) -> None:
    applier = sql_store
    apply(applier, objs.delete("a", 8))
    apply(applier, objs.upsert("a", 6))
    assert store.live(objs.cluster) == {}
    rv, deleted, _, obj = store.rows(objs.cluster)["a"]
    assert (rv, deleted, obj.replace(" ", "")) == (8, True, "{}")


def test_older_delete_does_not_remove_a_newer_object(engine, sql_store, store, objs) -> None:
    applier = sql_store
    apply(applier, objs.upsert("a", 10))
    apply(applier, objs.delete("a", 8))
    assert store.live(objs.cluster) == {"a": 10}


def test_recreate_after_delete(engine, sql_store, store, objs) -> None:
    applier = sql_store
    apply(applier, objs.upsert("a", 5))
    apply(applier, objs.delete("a", 8))
    apply(applier, objs.upsert("a", 12, body='{"v":"again"}'))
    assert store.live(objs.cluster) == {"a": 12}
    assert store.rows(objs.cluster)["a"][3].replace(" ", "") == '{"v":"again"}'


def test_one_batch_collapses_to_the_newest_event_per_object(engine, sql_store, store, objs) -> None:
    applier = sql_store
    apply(applier, objs.upsert("a", 5), objs.delete("a", 8), objs.upsert("a", 7), objs.upsert("b", 3))
    assert store.live(objs.cluster) == {"b": 3}
    apply(applier, objs.upsert("c", 3), objs.upsert("c", 4), objs.upsert("c", 2))
    assert store.live(objs.cluster) == {"b": 3, "c": 4}


def test_equal_revision_refreshes_epoch_and_never_lowers_it(engine, sql_store, store, objs) -> None:
    applier = sql_store
    apply(applier, objs.upsert("a", 5, epoch=1))
    apply(applier, objs.upsert("a", 5, epoch=20))  # relisted, unchanged
    assert store.rows(objs.cluster)["a"][2] == 20
    apply(applier, objs.upsert("a", 5, epoch=1))  # a redelivered entry of the old list
    assert store.rows(objs.cluster)["a"][2] == 20


def test_list_done_tombstones_only_older_epochs_of_its_resource(engine, sql_store, store, objs) -> None:
    applier = sql_store
    other = ResourceType  # noqa: F841 - keep the import used in this module
    pods = objs.upsert("pod", 3, epoch=1)
    pods = type(pods)(pods.cluster, "", "v1", "pods", "Pod", "default", "pod", "u", 3, 1, "", "", b"{}")
    foreign = type(pods)(
        "not-" + objs.cluster,
        "apps",
        "v1",
        "deployments",
        "Deployment",
        "default",
        "x",
        "u",
        3,
        1,
        "",
        "",
        b"{}",
    )
    apply(
        applier,
        objs.upsert("gone", 4, epoch=10),
        objs.upsert("kept", 5, epoch=20),
        objs.upsert("deleted", 6, epoch=10),
        objs.delete("deleted", 7),
        pods,
        foreign,
    )
    apply(applier, objs.list_done(20))
    rows = store.rows(objs.cluster)
    assert rows["gone"][:2] == (20, True)  # tombstoned at the list's revision
    assert rows["kept"][:2] == (5, False)
    assert rows["deleted"][:2] == (7, True)
    assert rows["pod"][:2] == (3, False)  # another resource of the cluster
    assert store.live(foreign.cluster) == {"x": 3}
    apply(applier, objs.upsert("gone", 4, epoch=10))  # a late duplicate does not bring it back
    assert store.live(objs.cluster) == {"kept": 5, "pod": 3}


def test_list_done_tombstone_stops_a_late_older_update(engine, sql_store, store, objs) -> None:
    """Absent at the list's revision L: an update from before L (e.g. a previous owner's queue)
    must not revive it."""
    applier = sql_store
    apply(applier, objs.upsert("a", 5, epoch=1))
    apply(applier, objs.list_done(20))
    apply(applier, objs.upsert("a", 12, epoch=1))
    assert store.live(objs.cluster) == {}
    assert store.rows(objs.cluster)["a"][:2] == (20, True)
    apply(applier, objs.upsert("a", 25, epoch=20))  # re-created after the list
    assert store.live(objs.cluster) == {"a": 25}


def test_list_done_leaves_rows_newer_than_the_list(engine, sql_store, store, objs) -> None:
    """A row written after the list's revision (a watch event of a previous owner) is not judged
    by that list; the new owner's own watch event for it must still apply."""
    applier = sql_store
    apply(applier, objs.upsert("late", 30, epoch=1))
    apply(applier, objs.list_done(20))
    assert store.live(objs.cluster) == {"late": 30}
    apply(applier, objs.upsert("late", 30, epoch=20))
    assert store.rows(objs.cluster)["late"][:3] == (30, False, 20)


def test_object_with_nul_characters_is_stored(engine, sql_store, store, objs) -> None:
    """Kubernetes accepts NUL in strings; PostgreSQL's JSONB cannot hold it (it is dropped there)."""
    applier = sql_store
    apply(applier, objs.upsert("a", 5, body='{"data":{"k":"x\\u0000y","e":"\\\\u0000"}}'))
    assert store.live(objs.cluster) == {"a": 5}
    obj = store.rows(objs.cluster)["a"][3]
    assert "\\\\u0000" in obj  # an escaped backslash followed by text is kept everywhere


def test_purge_cluster_in_chunks(engine, store_url, store, objs) -> None:
    applier = SqlStore(store_url, StoreOptions(chunk_rows=7))
    keep = type(objs)("keep-" + objs.cluster)
    apply(applier, *[objs.upsert(f"o{i}", i + 1) for i in range(23)], keep.upsert("k", 1))
    apply(applier, objs.delete("o0", 100))
    apply(
        applier,
        ResourceType(objs.cluster, "apps", "v1", "deployments", "Deployment", True, [], ["get"], "v1"),
        ResourceType(keep.cluster, "apps", "v1", "deployments", "Deployment", True, [], ["get"], "v1"),
    )
    assert applier.purge(PurgeCluster(objs.cluster)) == 23
    assert store.rows(objs.cluster) == {}
    assert store.live(keep.cluster) == {"k": 1}
    with engine.connect() as conn:
        clusters = set(conn.execute(select(resource_types.c.cluster)).scalars())
    assert objs.cluster not in clusters and keep.cluster in clusters
    applier.close()


def test_purge_one_resource_of_a_cluster(engine, sql_store, store, objs) -> None:
    applier = sql_store
    pod = type(objs.upsert("p", 1))(
        objs.cluster, "", "v1", "pods", "Pod", "ns", "p", "u", 1, 1, "", "", b"{}"
    )
    apply(applier, objs.upsert("d", 1), pod, PurgeCluster(objs.cluster, "apps", "deployments"))
    assert store.live(objs.cluster) == {"p": 1}


def test_resource_types_upsert(engine, sql_store, objs) -> None:
    applier = sql_store
    rt = ResourceType(
        objs.cluster, "apps", "v1", "deployments", "Deployment", True, ["deploy"], ["get"], "v1"
    )
    apply(applier, rt)
    apply(
        applier,
        ResourceType(
            objs.cluster,
            "apps",
            "v2",
            "deployments",
            "Deployment",
            True,
            [],
            ["list"],
            "v2",
            b'[{"name":"Ready","jsonPath":".status.ready"}]',
        ),
    )
    c = resource_types.c
    with engine.connect() as conn:
        rows = conn.execute(
            select(c.version, c.short_names, c.verbs, c.printer_columns).where(c.cluster == objs.cluster)
        ).all()
    assert [tuple(r) for r in rows] == [
        ("v2", "[]", '["list"]', '[{"name":"Ready","jsonPath":".status.ready"}]')
    ]


def test_tombstone_gc_removes_only_expired_tombstones(engine, sql_store, store, objs) -> None:
    applier = sql_store
    apply(applier, objs.upsert("live", 1), objs.upsert("old", 2), objs.upsert("recent", 3))
    apply(applier, objs.delete("old", 10), objs.delete("recent", 11))
    c = resources.c
    an_hour_ago = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(hours=1)
    with engine.begin() as conn:
        conn.execute(
            update(resources).where(c.cluster == objs.cluster, c.name == "old").values(synced_at=an_hour_ago)
        )
    applier.collect_tombstones(600)
    assert set(store.rows(objs.cluster)) == {"live", "recent"}
    assert store.live(objs.cluster) == {"live": 1}


def test_a_large_batch(engine, sql_store, store, objs) -> None:
    applier = sql_store
    events = [objs.upsert(f"obj-{i:05d}", 1000 + i, ns=f"ns-{i % 7}") for i in range(3000)]
    apply(applier, *events)
    assert len(store.live(objs.cluster)) == 3000


def test_label_selectors_follow_the_writes(engine, sql_store, store, objs) -> None:
    """Label selectors see what the writes left, on every store: SQLite and MariaDB answer them
    from the label rows their triggers keep, PostgreSQL from its GIN index on the objects."""
    applier = sql_store
    tag = objs.cluster  # a label value of this test alone: the store is shared

    def body(name: str, rv: int, **labels: str) -> str:
        meta = {"name": name, "resourceVersion": str(rv), "labels": {"test": tag, **labels}}
        return json.dumps({"metadata": meta})

    def selected(selector: str = "") -> list[str]:
        pairs = [("labelSelector", f"test={tag}" + (f",{selector}" if selector else ""))]
        search = parse_search(pairs, group="apps", version="v1", resource="deployments")
        return sorted(o.name for o in asyncio.run(sql_store.list_objects(search)).items)

    apply(applier, objs.upsert("a", 5, body=body("a", 5, app="web")), objs.upsert("b", 6, body=body("b", 6)))
    assert (selected("app=web"), selected("app!=web"), selected("!app"), selected("app")) == (
        ["a"],
        ["b"],
        ["b"],
        ["a"],
    )
    apply(applier, objs.upsert("a", 9, body=body("a", 9, app="db", **{"x.io/tier": "z"})))  # relabelled
    assert (selected("app=web"), selected("app in (db,web)"), selected("x.io/tier=z")) == ([], ["a"], ["a"])
    apply(applier, objs.upsert("a", 7, body=body("a", 7, app="web")))  # older: its labels lose
    assert (selected("app=web"), selected("app=db")) == ([], ["a"])
    apply(applier, objs.upsert("a", 9, body=body("a", 9, app="db", **{"x.io/tier": "z"})))  # re-delivered
    assert selected("x.io/tier notin (z)") == ["b"]
    apply(applier, objs.delete("a", 11))
    assert (selected(), selected("app=db")) == (["b"], [])
    apply(applier, objs.upsert("a", 12, body=body("a", 12, app="web")))  # created again
    assert selected("app=web") == ["a"]
    apply(applier, PurgeCluster(objs.cluster))
    assert selected() == []
    if engine.dialect.name != "postgresql":
        with engine.connect() as conn:
            assert label_index_ready(conn)
            orphans = select(resource_labels.c.resource_id).where(
                resource_labels.c.resource_id.not_in(select(resources.c.id))
            )
            assert conn.execute(orphans).all() == []  # purged rows took their labels along
