"""The shared storage suite, change feed side (DESIGN section 9): every registered backend gives each
write the next store-wide revision, serves objects with it, reports a list's revision, and reads
the changes after a revision in order, tombstones included, until they expire or a purge drops them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid

import pytest

from common.events import PurgeCluster
from common.storage import ChangeFeed, Expired, Store
from common.storage.base import Change
from common.storage.query import GroupResource, Search, SetFilter
from tests.common.storage.events import PODS, Objects
from tests.common.storage.test_writes import apply

DEPLOYMENTS = [GroupResource("apps", "deployments")]


@pytest.fixture
def objs(backend: Store) -> Objects:
    o = Objects(f"c-{uuid.uuid4().hex[:10]}")
    apply(backend, *o.types())
    return o


def feed(store: Store) -> ChangeFeed:
    assert isinstance(store, ChangeFeed), f"{store.name} has no change feed"
    return store


def head(store: Store) -> int:
    return asyncio.run(feed(store).window())[1]


def changes_since(
    store: Store, after: int, cluster: str, grs: list[GroupResource] | None = None
) -> list[Change]:
    """This cluster's changes after ``after`` (other tests write the same store meanwhile)."""
    found = asyncio.run(feed(store).changes(after, head(store), grs, 10_000))
    return [c for c in found if c.object.cluster == cluster]


def summary(changes: list[Change]) -> list[tuple[str, bool, int]]:
    return [(c.object.name, c.deleted, c.object.resource_version) for c in changes]


def test_every_write_takes_the_next_revision_and_objects_carry_it(backend: Store, objs: Objects) -> None:
    start = head(backend)
    apply(backend, objs.upsert("a", 5), objs.upsert("b", 6))
    apply(backend, objs.upsert("a", 9))
    got = changes_since(backend, start, objs.cluster)
    assert summary(got) == [("b", False, 6), ("a", False, 9)]  # a's latest state, at its latest revision
    revisions = [c.revision for c in got]
    assert revisions == sorted(revisions) and start < revisions[0] and revisions[-1] <= head(backend)
    for c in got:
        assert json.loads(c.object.object)["metadata"]["resourceVersion"] == str(c.revision)
    (a,) = asyncio.run(backend.get_objects(objs.cluster, "apps", "deployments", "default", "a"))
    assert a.revision == got[-1].revision
    assert json.loads(a.object)["metadata"]["resourceVersion"] == str(a.revision)


def test_created_revision_marks_a_new_incarnation(backend: Store, objs: Objects) -> None:
    apply(backend, objs.upsert("a", 5))
    after_create = head(backend)
    apply(backend, objs.upsert("a", 6))
    (modified,) = changes_since(backend, after_create, objs.cluster)
    assert modified.created_revision <= after_create < modified.revision  # MODIFIED for a watcher here
    apply(backend, objs.delete("a", 8))
    apply(backend, objs.upsert("a", 12))
    (again,) = changes_since(backend, after_create, objs.cluster)
    assert not again.deleted and again.created_revision > after_create  # ADDED: created again


def test_a_delete_is_a_change_with_the_last_state(backend: Store, objs: Objects) -> None:
    apply(backend, objs.upsert("a", 5, body='{"metadata":{"name":"a","labels":{"x":"1"}},"v":1}'))
    start = head(backend)
    apply(backend, objs.delete("a", 8))
    (gone,) = changes_since(backend, start, objs.cluster)
    assert gone.deleted and gone.created_revision <= start
    body = json.loads(gone.object.object)
    assert body["v"] == 1 and body["metadata"]["resourceVersion"] == str(gone.revision)
    assert dict(gone.labels) == {"x": "1"}
    # deleting again (a re-delivery, or a later tombstone) is no new change
    apply(backend, objs.delete("a", 8))
    apply(backend, objs.delete("a", 9))
    assert changes_since(backend, gone.revision, objs.cluster) == []


def test_a_redelivery_is_no_change(backend: Store, objs: Objects) -> None:
    apply(backend, objs.upsert("a", 5, epoch=1))
    start = head(backend)
    apply(backend, objs.upsert("a", 5, epoch=2))  # a relist of the unchanged object
    assert changes_since(backend, start, objs.cluster) == []
    # the epoch moved all the same: the next list barrier keeps it
    apply(backend, objs.list_done(2))
    assert changes_since(backend, start, objs.cluster) == []


def test_list_barrier_tombstones_take_revisions(backend: Store, objs: Objects) -> None:
    apply(backend, objs.upsert("a", 5, epoch=1), objs.upsert("b", 6, epoch=1))
    start = head(backend)
    apply(backend, objs.upsert("a", 5, epoch=10), objs.list_done(10))
    (b,) = changes_since(backend, start, objs.cluster)
    assert (b.object.name, b.deleted) == ("b", True)


def test_changes_of_some_resources_only(backend: Store, objs: Objects) -> None:
    start = head(backend)
    apply(backend, objs.upsert("d", 5), objs.upsert("p", 6, gvr=PODS))
    assert summary(changes_since(backend, start, objs.cluster, DEPLOYMENTS)) == [("d", False, 5)]
    both = [*DEPLOYMENTS, GroupResource("", "pods")]
    got = changes_since(backend, start, objs.cluster, both)
    assert sorted(c.object.name for c in got) == ["d", "p"]
    assert got[0].revision < got[1].revision


def test_changes_are_read_in_pages_of_the_limit(backend: Store, objs: Objects) -> None:
    start = head(backend)
    apply(backend, *(objs.upsert(f"o{i}", 10 + i) for i in range(5)))
    end = head(backend)
    first = asyncio.run(feed(backend).changes(start, end, DEPLOYMENTS, 2))
    rest = asyncio.run(feed(backend).changes(first[-1].revision, end, DEPLOYMENTS, 100))
    names = [c.object.name for c in first + rest if c.object.cluster == objs.cluster]
    assert len(first) == 2 and names == [f"o{i}" for i in range(5)]


def test_a_list_reports_the_revision_it_read_at(backend: Store, objs: Objects) -> None:
    apply(backend, *(objs.upsert(f"o{i}", 10 + i) for i in range(3)))
    search = Search(group="apps", resource="deployments", clusters=SetFilter((objs.cluster,)), limit=2)
    first = asyncio.run(backend.list_objects(search))
    at = int(first.resource_version)
    assert all(o.revision <= at for o in first.items) and at <= head(backend)
    apply(backend, objs.upsert("o9", 30))
    assert first.next is not None
    second = asyncio.run(backend.list_objects(dataclasses.replace(search, continue_token=first.next)))
    assert second.resource_version == first.resource_version  # every page of one list


def test_purge_moves_the_floor_past_the_removed_rows(backend: Store, objs: Objects) -> None:
    apply(backend, objs.upsert("a", 5))
    before = head(backend)
    apply(backend, PurgeCluster(objs.cluster))
    floor, now = asyncio.run(feed(backend).window())
    assert before < floor <= now
    with pytest.raises(Expired):
        asyncio.run(feed(backend).changes(before, now, None, 10))
    asyncio.run(feed(backend).changes(floor, now, None, 10))  # from the floor on: readable


def test_expired_tombstones_move_the_floor(backend: Store, objs: Objects) -> None:
    start = head(backend)
    apply(backend, objs.upsert("a", 5))
    apply(backend, objs.delete("a", 6))
    (gone,) = changes_since(backend, start, objs.cluster)
    backend.collect_tombstones(0)
    floor, now = asyncio.run(feed(backend).window())
    assert floor >= gone.revision
    with pytest.raises(Expired):
        asyncio.run(feed(backend).changes(gone.revision - 1, now, None, 10))
