"""The shared storage suite, writer side: every registered backend keeps the guards.

Each test applies batches the way a writer does (``plan``, then ``StoreWriter``) and checks only what
the reader shows (``StoreReader``), so a backend passes by its behaviour, whatever it stores: an older
event never overwrites a newer object, a delete is not resurrected, a list barrier tombstones what
the list missed, purges and tombstone expiry remove what they should. Batches are applied separately
where the test is about reordering between writers, together where it is about one batch.
"""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from sqlalchemy import select

from apiserver.search import parse_search
from common.events import Event, PurgeCluster, ResourceType
from common.queue import Delivery
from common.storage import Store, StoreOptions, StoreWriter, UnknownCluster, open_store
from common.storage.query import GroupResource, Search, SetFilter
from common.storage.sql.engine import label_index_ready
from common.storage.sql.schema import resource_labels, resources
from common.storage.sql.store import SqlStore
from tests.common.storage.events import PODS, Objects
from writer.batching import Barrier, Purge, Writes, plan


def apply(store: StoreWriter, *events: Event) -> None:
    """Apply ``events`` as one batch (ListDone applied at once: nothing else is in flight)."""
    deliveries = [Delivery(str(i + 1), e) for i, e in enumerate(events)]
    for step in plan(deliveries):
        if isinstance(step, Writes):
            store.apply(step.upserts(), step.deletes(), list(step.resource_types.values()))
        elif isinstance(step, Barrier):
            store.list_done(step.event)
        elif isinstance(step, Purge):
            store.purge(step.event)


def live(store: Store, cluster: str) -> dict[str, int]:
    """name -> resourceVersion of the deployments and pods served for ``cluster``."""
    search = Search(
        group_resources=(GroupResource("apps", "deployments"), GroupResource("", "pods")),
        clusters=SetFilter((cluster,)),
    )
    try:
        page = asyncio.run(store.list_objects(search))
    except UnknownCluster:
        return {}
    return {o.name: o.resource_version for o in page.items}


def body_of(store: Store, cluster: str, name: str) -> str:
    """The object as stored: served objects carry the store's revision (stamped into their
    metadata, checked by test_changes), which is taken out here."""
    (obj,) = asyncio.run(store.get_objects(cluster, "apps", "deployments", "default", name))
    body = json.loads(obj.object)
    assert body["metadata"].pop("resourceVersion") == str(obj.revision)
    if not body["metadata"]:
        del body["metadata"]
    return json.dumps(body, separators=(",", ":"))


@pytest.fixture
def objs(backend: Store) -> Objects:
    """Events of a cluster of this test alone (tests share stores, never objects), its resource
    types registered."""
    o = Objects(f"c-{uuid.uuid4().hex[:10]}")
    apply(backend, *o.types())
    return o


def test_upsert_then_update(backend: Store, objs: Objects) -> None:
    apply(backend, objs.upsert("a", 5), objs.upsert("b", 6))
    apply(backend, objs.upsert("a", 9, body='{"v":"new"}'))
    assert live(backend, objs.cluster) == {"a": 9, "b": 6}
    assert body_of(backend, objs.cluster, "a") == '{"v":"new"}'


def test_older_event_does_not_overwrite_newer(backend: Store, objs: Objects) -> None:
    apply(backend, objs.upsert("a", 9, body='{"v":9}'))
    apply(backend, objs.upsert("a", 5, body='{"v":5}'))
    assert live(backend, objs.cluster) == {"a": 9}
    assert body_of(backend, objs.cluster, "a") == '{"v":9}'


def test_late_update_does_not_resurrect_a_delete(backend: Store, objs: Objects) -> None:
    apply(backend, objs.upsert("a", 5))
    apply(backend, objs.delete("a", 8))
    apply(backend, objs.upsert("a", 7))  # older than the deletion
    apply(backend, objs.upsert("a", 8))  # same revision as the deletion
    assert live(backend, objs.cluster) == {}
    apply(backend, objs.upsert("a", 9))  # newer than the tombstone: created again
    assert live(backend, objs.cluster) == {"a": 9}


def test_delete_before_any_upsert_leaves_a_tombstone(backend: Store, objs: Objects) -> None:
    apply(backend, objs.delete("a", 8))
    apply(backend, objs.upsert("a", 6))
    assert live(backend, objs.cluster) == {}
    apply(backend, objs.upsert("a", 8))
    assert live(backend, objs.cluster) == {}


def test_older_delete_does_not_remove_a_newer_object(backend: Store, objs: Objects) -> None:
    apply(backend, objs.upsert("a", 10))
    apply(backend, objs.delete("a", 8))
    assert live(backend, objs.cluster) == {"a": 10}


def test_recreate_after_delete(backend: Store, objs: Objects) -> None:
    apply(backend, objs.upsert("a", 5))
    apply(backend, objs.delete("a", 8))
    apply(backend, objs.upsert("a", 12, body='{"v":"again"}'))
    assert live(backend, objs.cluster) == {"a": 12}
    assert body_of(backend, objs.cluster, "a") == '{"v":"again"}'


def test_one_batch_collapses_to_the_newest_event_per_object(backend: Store, objs: Objects) -> None:
    apply(backend, objs.upsert("a", 5), objs.delete("a", 8), objs.upsert("a", 7), objs.upsert("b", 3))
    assert live(backend, objs.cluster) == {"b": 3}
    apply(backend, objs.upsert("c", 3), objs.upsert("c", 4), objs.upsert("c", 2))
    assert live(backend, objs.cluster) == {"b": 3, "c": 4}


def test_equal_revision_refreshes_epoch_and_never_lowers_it(backend: Store, objs: Objects) -> None:
    apply(backend, objs.upsert("a", 5, epoch=1))
    apply(backend, objs.upsert("a", 5, epoch=20))  # relisted, unchanged
    apply(backend, objs.upsert("a", 5, epoch=1))  # a redelivered entry of the old list
    apply(backend, objs.list_done(20))  # the epoch is 20: the list of 20 saw it
    assert live(backend, objs.cluster) == {"a": 5}


def test_list_done_tombstones_only_older_epochs_of_its_resource(backend: Store, objs: Objects) -> None:
    foreign = Objects("not-" + objs.cluster)
    apply(backend, *foreign.types())
    apply(
        backend,
        objs.upsert("gone", 4, epoch=10),
        objs.upsert("kept", 5, epoch=20),
        objs.upsert("deleted", 6, epoch=10),
        objs.delete("deleted", 7),
        objs.upsert("pod", 3, epoch=1, gvr=PODS),  # another resource of the cluster
        foreign.upsert("x", 3, epoch=1),
    )
    assert backend.list_done(objs.list_done(20)) == 1
    assert live(backend, objs.cluster) == {"kept": 5, "pod": 3}
    assert live(backend, foreign.cluster) == {"x": 3}
    apply(backend, objs.upsert("gone", 4, epoch=10))  # a late duplicate does not bring it back
    apply(backend, objs.upsert("gone", 20, epoch=10))  # nor an event at the list's revision
    assert live(backend, objs.cluster) == {"kept": 5, "pod": 3}


def test_list_done_tombstone_stops_a_late_older_update(backend: Store, objs: Objects) -> None:
    """Absent at the list's revision L: an update from before L (e.g. a previous owner's queue)
    must not revive it."""
    apply(backend, objs.upsert("a", 5, epoch=1))
    apply(backend, objs.list_done(20))
    apply(backend, objs.upsert("a", 12, epoch=1))
    assert live(backend, objs.cluster) == {}
    apply(backend, objs.upsert("a", 25, epoch=20))  # re-created after the list
    assert live(backend, objs.cluster) == {"a": 25}


def test_list_done_leaves_rows_newer_than_the_list(backend: Store, objs: Objects) -> None:
    """A row written after the list's revision (a watch event of a previous owner) is not judged
    by that list; the new owner's own watch event for it must still apply."""
    apply(backend, objs.upsert("late", 30, epoch=1))
    apply(backend, objs.list_done(20))
    assert live(backend, objs.cluster) == {"late": 30}
    apply(backend, objs.upsert("late", 30, epoch=20))
    assert live(backend, objs.cluster) == {"late": 30}


def test_object_with_nul_characters_is_stored(backend: Store, objs: Objects) -> None:
    """Kubernetes accepts NUL in strings; PostgreSQL's JSONB cannot hold it (it is dropped there)."""
    apply(backend, objs.upsert("a", 5, body='{"data":{"k":"x\\u0000y","e":"\\\\u0000"}}'))
    assert live(backend, objs.cluster) == {"a": 5}
    assert "\\\\u0000" in body_of(backend, objs.cluster, "a")  # an escaped backslash is kept everywhere


def test_purge_cluster(backend_url: str, backend: Store, objs: Objects) -> None:
    chunked = open_store(backend_url, StoreOptions(chunk_rows=7))  # purges in chunks where it applies
    try:
        keep = Objects("keep-" + objs.cluster)
        apply(chunked, *keep.types())
        apply(chunked, *[objs.upsert(f"o{i}", i + 1) for i in range(23)], keep.upsert("k", 1))
        apply(chunked, objs.delete("o0", 100))
        assert chunked.purge(PurgeCluster(objs.cluster)) == 23  # tombstones included
        assert live(backend, objs.cluster) == {}
        assert live(backend, keep.cluster) == {"k": 1}
        clusters = {t.cluster for t in asyncio.run(backend.resource_types())}
        assert objs.cluster not in clusters and keep.cluster in clusters
        apply(backend, *objs.types(), objs.upsert("o0", 1))  # the tombstone went too
        assert live(backend, objs.cluster) == {"o0": 1}
    finally:
        chunked.close()


def test_purge_one_resource_of_a_cluster(backend: Store, objs: Objects) -> None:
    pod = objs.upsert("p", 1, gvr=PODS)
    apply(backend, objs.upsert("d", 1), pod, PurgeCluster(objs.cluster, "apps", "deployments"))
    assert live(backend, objs.cluster) == {"p": 1}
    types = [
        (t.group, t.resource) for t in asyncio.run(backend.resource_types()) if t.cluster == objs.cluster
    ]
    assert types == [("", "pods")]


def test_resource_types_upsert(backend: Store, objs: Objects) -> None:
    apply(
        backend,
        ResourceType(
            objs.cluster, "apps", "v1", "deployments", "Deployment", True, ["deploy"], ["get"], "v1"
        ),
    )
    columns = b'[{"name":"Ready","jsonPath":".status.ready"}]'
    apply(
        backend,
        ResourceType(
            objs.cluster, "apps", "v2", "deployments", "Deployment", True, [], ["list"], "v2", columns
        ),
    )
    got = [
        (t.version, t.short_names, t.verbs, t.storage_version, t.printer_columns)
        for t in asyncio.run(backend.resource_types())
        if t.cluster == objs.cluster and t.resource == "deployments"
    ]
    assert got == [("v2", (), ("list",), "v2", columns.decode())]


def test_tombstone_gc_removes_only_expired_tombstones(backend: Store, objs: Objects) -> None:
    apply(backend, objs.upsert("live", 1), objs.upsert("old", 2))
    apply(backend, objs.delete("old", 10))
    backend.collect_tombstones(600)  # not expired: it still stops a late update
    apply(backend, objs.upsert("old", 5))
    assert live(backend, objs.cluster) == {"live": 1}
    # A TTL in the future: every tombstone written so far has expired (MySQL keeps whole seconds).
    assert backend.collect_tombstones(-5) >= 1  # other tests' tombstones go too
    apply(backend, objs.upsert("old", 5))  # nothing remembers the deletion any more
    assert live(backend, objs.cluster) == {"live": 1, "old": 5}


def test_a_large_batch(backend: Store, objs: Objects) -> None:
    events = [objs.upsert(f"obj-{i:05d}", 1000 + i, ns=f"ns-{i % 7}") for i in range(3000)]
    apply(backend, *events)
    assert len(live(backend, objs.cluster)) == 3000


def test_label_selectors_follow_the_writes(backend: Store, objs: Objects) -> None:
    """Label selectors see what the writes left, on every store (SQLite and MariaDB answer them from
    the label rows their triggers keep, PostgreSQL from its GIN index, memory from parsed labels)."""
    tag = objs.cluster  # a label value of this test alone: the store is shared

    def body(name: str, rv: int, **labels: str) -> str:
        meta = {"name": name, "resourceVersion": str(rv), "labels": {"test": tag, **labels}}
        return json.dumps({"metadata": meta})

    def selected(selector: str = "") -> list[str]:
        pairs = [("labelSelector", f"test={tag}" + (f",{selector}" if selector else ""))]
        search = parse_search(pairs, group="apps", version="v1", resource="deployments")
        return sorted(o.name for o in asyncio.run(backend.list_objects(search)).items)

    apply(backend, objs.upsert("a", 5, body=body("a", 5, app="web")), objs.upsert("b", 6, body=body("b", 6)))
    assert (selected("app=web"), selected("app!=web"), selected("!app"), selected("app")) == (
        ["a"],
        ["b"],
        ["b"],
        ["a"],
    )
    apply(backend, objs.upsert("a", 9, body=body("a", 9, app="db", **{"x.io/tier": "z"})))  # relabelled
    assert (selected("app=web"), selected("app in (db,web)"), selected("x.io/tier=z")) == ([], ["a"], ["a"])
    apply(backend, objs.upsert("a", 7, body=body("a", 7, app="web")))  # older: its labels lose
    assert (selected("app=web"), selected("app=db")) == ([], ["a"])
    apply(backend, objs.upsert("a", 9, body=body("a", 9, app="db", **{"x.io/tier": "z"})))  # re-delivered
    assert selected("x.io/tier notin (z)") == ["b"]
    apply(backend, objs.delete("a", 11))
    assert (selected(), selected("app=db")) == (["b"], [])
    apply(backend, objs.upsert("a", 12, body=body("a", 12, app="web")))  # created again
    assert selected("app=web") == ["a"]
    apply(backend, PurgeCluster(objs.cluster))
    assert selected() == []


def test_sql_purge_takes_the_label_rows_along(store_url: str) -> None:
    """SQLite and MariaDB: the label rows of purged objects go with them (their triggers)."""
    store = SqlStore(store_url)
    try:
        store.migrate()
        objs = Objects(f"c-{uuid.uuid4().hex[:10]}")
        labelled = '{"metadata":{"name":"a","labels":{"app":"web","tier":"z"}}}'
        apply(store, *objs.types(), objs.upsert("a", 5, body=labelled), PurgeCluster(objs.cluster))
        if store.name != "postgresql":
            with store.engine.connect() as conn:
                assert label_index_ready(conn)
                orphans = select(resource_labels.c.resource_id).where(
                    resource_labels.c.resource_id.not_in(select(resources.c.id))
                )
                assert conn.execute(orphans).all() == []
    finally:
        store.close()


def test_fingerprint_changes_with_every_write_whatever_the_resource_versions(backend: Store) -> None:
    """An update in a cluster whose resourceVersions are far below another cluster's still changes
    the fingerprint (member clusters' resourceVersions are unrelated), as do deletes and barriers;
    reads and writes of other resources do not."""
    low, high = Objects(f"low-{uuid.uuid4().hex[:8]}"), Objects(f"high-{uuid.uuid4().hex[:8]}")
    apply(backend, *low.types(), *high.types())

    def fp() -> str:
        return asyncio.run(backend.fingerprint("apps", ["deployments"]))

    seen = {fp()}
    apply(backend, high.upsert("h", 900_000), low.upsert("a", 5), low.upsert("b", 6))
    for step in (
        lambda: apply(backend, low.upsert("a", 7)),  # far below high's 900000
        lambda: apply(backend, low.delete("b", 8)),
        lambda: apply(backend, low.upsert("c", 9, epoch=2), low.list_done(2)),  # tombstones "a"
    ):
        step()
        now = fp()
        assert now not in seen
        seen.add(now)
    before = fp()
    apply(backend, low.upsert("p", 10, gvr=PODS))  # another resource
    asyncio.run(backend.list_objects(Search(group="apps", resource="deployments")))
    assert fp() == before


def test_refresh_statistics_reports_the_rows_or_that_the_store_keeps_them(
    backend: Store, objs: Objects
) -> None:
    """PostgreSQL and SQLite take the planner's statistics when asked and estimate the rows then
    (other tests' rows included: they share the store); MySQL/MariaDB (InnoDB recalculates them
    itself) and the in-process stores (no planner) answer None."""
    apply(backend, *objs.types(), *[objs.upsert(f"s{i}", i + 1) for i in range(30)])
    rows = backend.refresh_statistics()
    if backend.name in ("postgresql", "sqlite"):
        assert rows is not None and rows >= 30
    else:
        assert rows is None
