"""The shared storage suite, event retention: ``StoreWriter.expire_events`` on every backend.

Events churn; retention bounds them by age (creationTimestamp) and by count per cluster (the most
recently written kept). What it removes becomes a tombstone at the next revision, so watchers see
DELETED and the feed's floor does not move (no watch of anything else expires); a re-delivery of the
same event version stays dead, a newer version of it comes back. Events are built by the synchro's
own transformer, which also keeps each event's subject uid in ``owner_uid``: the field selector
``involvedObject.uid`` (``kubectl describe``) finds them through that index.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid

import pytest

from common.events import ResourceType, Upsert
from common.storage import ChangeFeed, Store
from common.storage.query import FieldRequirement, Operator, Search, SetFilter
from common.transform import ObjectTransformer
from common.types import GVR
from tests.common.storage.events import Objects
from tests.common.storage.test_writes import apply

CORE_EVENTS = GVR("", "v1", "events")
NEW_EVENTS = GVR("events.k8s.io", "v1", "events")
LONG_AGO = "2020-01-01T00:00:00Z"


def now_text() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Events:
    """Events of one cluster of one test, built as the synchro builds them."""

    def __init__(self) -> None:
        self.cluster = f"ev-{uuid.uuid4().hex[:10]}"

    def types(self) -> list[ResourceType]:
        return [
            ResourceType(self.cluster, g.group, g.version, g.resource, "Event", True, [], ["list"], g.version)
            for g in (CORE_EVENTS, NEW_EVENTS)
        ]

    def event(
        self, name: str, rv: int, *, about: str = "cm-uid", created: str = "", gvr: GVR = CORE_EVENTS
    ) -> Upsert:
        subject = "involvedObject" if gvr == CORE_EVENTS else "regarding"
        body = {
            "metadata": {
                "name": name,
                "namespace": "default",
                "uid": f"uid-{name}",
                "resourceVersion": str(rv),
                "creationTimestamp": created or now_text(),
            },
            subject: {"kind": "ConfigMap", "namespace": "default", "name": "x", "uid": about},
            "reason": "Tested",
        }
        upsert = ObjectTransformer(self.cluster, gvr, "Event").upsert(json.dumps(body).encode(), 1)
        assert upsert is not None
        return upsert

    def live(self, store: Store, gvr: GVR = CORE_EVENTS) -> list[str]:
        search = Search(group=gvr.group, resource=gvr.resource, clusters=SetFilter((self.cluster,)))
        return sorted(o.name for o in asyncio.run(store.list_objects(search)).items)


@pytest.fixture
def ev(backend: Store) -> Events:
    e = Events()
    apply(backend, *e.types())
    return e


def feed(store: Store) -> ChangeFeed:
    assert isinstance(store, ChangeFeed)
    return store


def test_events_older_than_the_age_are_tombstoned_as_changes(backend: Store, ev: Events) -> None:
    apply(backend, ev.event("old", 10, created=LONG_AGO), ev.event("new", 11))
    floor, start = asyncio.run(feed(backend).window())
    assert backend.expire_events(3600, 0) >= 1  # other tests' old events go too
    assert ev.live(backend) == ["new"]
    changes = asyncio.run(feed(backend).changes(start, asyncio.run(feed(backend).window())[1], None, 1000))
    mine = [(c.object.name, c.deleted) for c in changes if c.object.cluster == ev.cluster]
    assert mine == [("old", True)]
    assert asyncio.run(feed(backend).window())[0] == floor  # no watch expires for it
    apply(backend, ev.event("old", 10, created=LONG_AGO))  # the same version again: stays removed
    assert ev.live(backend) == ["new"]
    apply(backend, ev.event("old", 12, created=LONG_AGO))  # it recurred: back until the next pass
    assert ev.live(backend) == ["new", "old"]
    assert backend.expire_events(0, 0) == 0  # both bounds off


def test_only_the_newest_events_per_cluster_are_kept(backend: Store, ev: Events) -> None:
    other = Events()
    apply(backend, *other.types(), other.event("o-1", 1))
    for i in range(5):
        apply(backend, ev.event(f"e-{i}", 100 + i))
    apply(backend, ev.event("e-0", 200))  # written again: now the most recent
    apply(backend, ev.event("n-0", 1, gvr=NEW_EVENTS), ev.event("n-1", 2, gvr=NEW_EVENTS))
    assert backend.expire_events(0, 2) >= 3
    assert ev.live(backend) == ["e-0", "e-4"]
    assert ev.live(backend, NEW_EVENTS) == ["n-0", "n-1"]  # each resource has its own bound
    assert other.live(backend) == ["o-1"]  # another cluster's events are its own


def test_other_resources_are_untouched(backend: Store) -> None:
    objs = Objects(f"c-{uuid.uuid4().hex[:10]}")
    apply(backend, *objs.types())
    old = objs.upsert("d", 5)
    apply(backend, Upsert(**{**{f: getattr(old, f) for f in old.__struct_fields__}, "created_at": LONG_AGO}))
    backend.expire_events(1, 1)
    search = Search(group="apps", resource="deployments", clusters=SetFilter((objs.cluster,)))
    assert [o.name for o in asyncio.run(backend.list_objects(search)).items] == ["d"]


def test_the_events_of_one_object_by_its_uid(backend: Store, ev: Events) -> None:
    apply(
        backend,
        ev.event("a-1", 1, about="uid-a"),
        ev.event("a-2", 2, about="uid-a"),
        ev.event("b-1", 3, about="uid-b"),
    )

    def about(*uids: str, op: Operator = Operator.IN) -> list[str]:
        search = Search(
            resource="events",
            clusters=SetFilter((ev.cluster,)),
            fields=(FieldRequirement(("involvedObject", "uid"), op, uids),),
        )
        return sorted(o.name for o in asyncio.run(backend.list_objects(search)).items)

    assert about("uid-a") == ["a-1", "a-2"]
    assert about("uid-a", "uid-b") == ["a-1", "a-2", "b-1"]
    assert about("uid-a", op=Operator.NOT_EQUALS) == ["b-1"]
    assert about("") == []
    owned = Search(resource="events", clusters=SetFilter((ev.cluster,)), owner_uid="uid-b")
    assert [o.name for o in asyncio.run(backend.list_objects(owned)).items] == ["b-1"]


def test_another_kind_with_an_involved_object_field_is_matched_by_its_json(
    backend: Store, ev: Events
) -> None:
    """Only events keep their subject in ``owner_uid``: a custom kind with the same field keeps its
    controller's there, and the field selector still matches its JSON."""
    body = {
        "metadata": {
            "name": "w",
            "namespace": "default",
            "uid": "uid-w",
            "resourceVersion": "5",
            "ownerReferences": [{"uid": "the-controller", "controller": True}],
        },
        "involvedObject": {"uid": "uid-a"},
    }
    widgets = GVR("example.com", "v1", "widgets")
    upsert = ObjectTransformer(ev.cluster, widgets, "Widget").upsert(json.dumps(body).encode(), 1)
    assert upsert is not None and upsert.owner_uid == "the-controller"
    apply(backend, upsert)
    search = Search(
        group="example.com",
        resource="widgets",
        clusters=SetFilter((ev.cluster,)),
        fields=(FieldRequirement(("involvedObject", "uid"), Operator.EQUALS, ("uid-a",)),),
    )
    assert [o.name for o in asyncio.run(backend.list_objects(search)).items] == ["w"]
