"""Watch through the API tier on every registered backend, over real HTTP (uvicorn on loopback).

The store is written the way the writer writes it while a watch streams; the tests read the stream's
lines as a client does and check what kube-apiserver guarantees a reflector: events in
resourceVersion order whose objects carry that resourceVersion, ADDED/MODIFIED/DELETED as the
object's life goes, a resume from any event's resourceVersion that neither loses nor repeats one,
bookmarks, 410 Expired for a position the store no longer holds, and selectors that never let a
non-matching object through (an object leaving a label selection is DELETED for that watcher).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn

from apiserver.app import build_app
from apiserver.catalog import Catalog
from apiserver.watching import ChangeRow, Watcher, parse_watch
from common.errors import Gone
from common.events import Delete, PurgeCluster
from common.settings import ApiserverSettings, Settings
from common.storage import ChangeFeed, Store
from common.storage.base import Change, StoredObject
from common.storage.query import Search
from harness.cluster import free_port
from tests.apiserver.storefill import add_objects, add_type

P = "/apis/clusterpedia.io/v1beta1/resources"
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"
WAIT = 15.0
"""Longest wait for one expected event (the hub polls every 50 ms here)."""


@pytest.fixture(scope="module")
def server(backend: Store, backend_url: str) -> Iterator[str]:
    settings = Settings(
        storage=backend_url,
        apiserver=ApiserverSettings(
            authorization_mode="host-only", watch_poll_seconds=0.05, watch_bookmark_seconds=0.5
        ),
    )
    port = free_port()
    app = build_app(
        settings, backend, catalog=Catalog(backend, ttl_seconds=0.1)
    )  # new clusters served at once
    config = uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_config=None)
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started:
        assert time.monotonic() < deadline, "the API did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)


class Cluster:
    """A cluster of this test alone (tests share the store, never clusters), once served."""

    def __init__(self, store: Store, server: str) -> None:
        self.store = store
        self.name = f"w-{uuid.uuid4().hex[:8]}"
        add_type(store, self.name, "", "v1", "configmaps", "ConfigMap", short_names=["cm"])
        self.rv = 100
        deadline = time.monotonic() + WAIT  # the API's catalog of resource types refreshes itself
        while httpx.get(f"{server}{P}/clusters/{self.name}/api/v1/configmaps").status_code == 404:
            assert time.monotonic() < deadline, f"{self.name} not served"
            time.sleep(0.1)

    def put(self, name: str, labels: dict[str, str] | None = None, ns: str = "default", **data: str) -> None:
        self.rv += 1
        obj = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": name,
                "namespace": ns,
                "resourceVersion": str(self.rv),
                "uid": f"uid-{name}",
                "labels": labels or {},
            },
            "data": data,
        }
        add_objects(self.store, self.name, "", "v1", "configmaps", [obj])

    def delete(self, name: str, ns: str = "default") -> None:
        self.rv += 1
        self.store.apply([], [Delete(self.name, "", "v1", "configmaps", ns, name, self.rv)], [])

    def path(self, query: str = "") -> str:
        return f"{P}/clusters/{self.name}/api/v1/configmaps?watch=true{query}"


class Stream:
    """A watch response read line by line, as a client reads it."""

    def __init__(self, base: str, path: str, accept: str = "") -> None:
        self.client = httpx.Client(base_url=base, timeout=httpx.Timeout(WAIT))
        headers = {"accept": accept} if accept else {}
        self._cm = self.client.stream("GET", path, headers=headers)
        self.response = self._cm.__enter__()
        assert self.response.status_code == 200, self.response.read()
        self._lines = self.response.iter_lines()

    def next(self, n: int = 1, *, skip_bookmarks: bool = True) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while len(out) < n:
            line = next(self._lines)
            if not line:
                continue
            event = json.loads(line)
            if skip_bookmarks and event["type"] == "BOOKMARK":
                continue
            out.append(event)
        return out

    def rest(self) -> list[dict[str, Any]]:
        """Every event until the server ends the stream (timeoutSeconds)."""
        try:
            return [json.loads(line) for line in self._lines if line]
        finally:
            self.close()

    def close(self) -> None:
        self._cm.__exit__(None, None, None)
        self.client.close()


def summary(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["type"], e["object"]["metadata"]["name"]) for e in events]


def cache(events: list[dict[str, Any]]) -> dict[str, Any]:
    """What an informer holds after these events: name -> object."""
    out: dict[str, Any] = {}
    for e in events:
        name = e["object"]["metadata"]["name"]
        if e["type"] == "DELETED":
            out.pop(name, None)
        else:
            out[name] = e["object"]
    return out


def rv(event: dict[str, Any]) -> int:
    return int(event["object"]["metadata"]["resourceVersion"])


def listed_rv(base: str, c: Cluster, query: str = "") -> str:
    r = httpx.get(f"{base}{P}/clusters/{c.name}/api/v1/configmaps?{query}")
    assert r.status_code == 200, r.text
    return str(r.json()["metadata"]["resourceVersion"])


def test_list_then_watch_sees_every_change_in_order(server: str, backend: Store) -> None:
    c = Cluster(backend, server)
    c.put("a", x="1")
    at = listed_rv(server, c)
    s = Stream(server, c.path(f"&resourceVersion={at}"))
    try:
        # one change at a time: a watcher reads each row's latest state, so an object created and
        # deleted between two reads of the feed is never shown (see apiserver/watching.py)
        events = []
        for change in (lambda: c.put("b"), lambda: c.put("a", x="2"), lambda: c.delete("b")):
            change()
            events += s.next()
    finally:
        s.close()
    assert summary(events) == [("ADDED", "b"), ("MODIFIED", "a"), ("DELETED", "b")]
    assert [rv(e) for e in events] == sorted(rv(e) for e in events) and rv(events[0]) > int(at)
    assert events[1]["object"]["data"] == {"x": "2"}
    assert events[1]["object"]["metadata"]["annotations"]["clusterpedia.io/member-resource-version"] == str(
        c.rv - 1
    )
    # the DELETED event carries the last state, at the deletion's revision
    assert events[2]["object"]["metadata"]["uid"] == "uid-b" and rv(events[2]) > rv(events[1])


def test_resume_from_any_event_neither_loses_nor_repeats(server: str, backend: Store) -> None:
    c = Cluster(backend, server)
    at = listed_rv(server, c)
    for i in range(6):
        c.put(f"o{i}", n=str(i))
    c.put("o2", n="again")
    c.delete("o4")
    whole = Stream(server, c.path(f"&resourceVersion={at}&timeoutSeconds=1")).rest()
    assert [rv(e) for e in whole] == sorted({rv(e) for e in whole})  # strictly increasing
    assert summary(whole) == [("ADDED", f"o{i}") for i in (0, 1, 3, 5)] + [("ADDED", "o2")]  # o4: gone
    final = cache(whole)
    assert sorted(final) == ["o0", "o1", "o2", "o3", "o5"] and final["o2"]["data"] == {"n": "again"}
    for k in (0, 2, len(whole) - 2, len(whole) - 1):
        event = whole[k]
        resumed = Stream(server, c.path(f"&resourceVersion={rv(event)}&timeoutSeconds=1")).rest()
        # a client that stopped after event k and resumed from its resourceVersion ends with the
        # same objects, each change after that position once, in order (where the first stream
        # showed the latest state of several changes, a resume may show another cut of them)
        rvs = [rv(e) for e in resumed]
        assert rvs == sorted(set(rvs)) and all(r > rv(event) for r in rvs)
        assert cache(whole[: k + 1] + resumed) == final


def test_initial_events_then_changes(server: str, backend: Store) -> None:
    c = Cluster(backend, server)
    c.put("a")
    c.put("b")
    s = Stream(server, c.path())  # no resourceVersion: the current state first
    try:
        first = s.next(2)
        c.put("c")
        (later,) = s.next()
    finally:
        s.close()
    assert sorted(summary(first)) == [("ADDED", "a"), ("ADDED", "b")]
    assert summary([later]) == [("ADDED", "c")]


def test_send_initial_events_ends_with_the_annotated_bookmark(server: str, backend: Store) -> None:
    c = Cluster(backend, server)
    c.put("a")
    q = "&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true"
    s = Stream(server, c.path(q + "&resourceVersion="))
    try:
        added, bookmark = s.next(2, skip_bookmarks=False)
        c.put("b")
        after = s.next(1)
    finally:
        s.close()
    assert summary([added]) == [("ADDED", "a")]
    assert bookmark["type"] == "BOOKMARK"
    assert bookmark["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
    assert bookmark["object"]["kind"] == "ConfigMap" and int(
        bookmark["object"]["metadata"]["resourceVersion"]
    ) >= rv(added)
    assert summary(after) == [("ADDED", "b")]


def test_send_initial_events_from_a_resource_version_sends_the_current_state_first(
    server: str, backend: Store
) -> None:
    # client-go's reflector repeats its watch-list with the last resourceVersion it synced
    # (NotOlderThan): the objects come again as ADDED, then the bookmark, then the changes
    c = Cluster(backend, server)
    c.put("a")
    at = listed_rv(server, c)
    c.put("b")
    q = "&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true"
    s = Stream(server, c.path(f"{q}&resourceVersion={at}"))
    try:
        initial = s.next(3, skip_bookmarks=False)
        c.put("c")
        after = s.next(1)
    finally:
        s.close()
    assert sorted(summary(initial[:2])) == [("ADDED", "a"), ("ADDED", "b")]
    assert initial[2]["type"] == "BOOKMARK"
    assert initial[2]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
    assert int(initial[2]["object"]["metadata"]["resourceVersion"]) >= max(rv(e) for e in initial[:2])
    assert summary(after) == [("ADDED", "c")] and rv(after[0]) > int(at)


def test_bookmarks_carry_the_current_position(server: str, backend: Store) -> None:
    c = Cluster(backend, server)
    at = listed_rv(server, c)
    s = Stream(server, c.path(f"&resourceVersion={at}&allowWatchBookmarks=true"))
    try:
        c.put("a")
        (added,) = s.next()
        while True:  # bookmarks every 0.5 s here; the first one after the event is at or past it
            (mark,) = s.next(skip_bookmarks=False)
            if mark["type"] == "BOOKMARK":
                break
    finally:
        s.close()
    assert int(mark["object"]["metadata"]["resourceVersion"]) >= rv(added)
    assert set(mark["object"]["metadata"]) == {"resourceVersion"}


def test_label_selector_watch_never_shows_a_non_matching_object(server: str, backend: Store) -> None:
    c = Cluster(backend, server)
    c.put("in-before", {"app": "web"})
    c.put("out-before", {"app": "db"})
    at = listed_rv(server, c, "labelSelector=app%3Dweb")
    s = Stream(server, c.path(f"&resourceVersion={at}&labelSelector=app%3Dweb"))
    try:
        steps = [
            # a change of a non-matching object: nothing (the next event is the marker's)
            (
                lambda: (c.put("out-before", {"app": "db"}, v="2"), c.put("m1", {"app": "web"})),
                ("ADDED", "m1"),
            ),
            (lambda: c.put("in-before", {"app": "db"}), ("DELETED", "in-before")),  # leaves the selection
            (lambda: c.put("out-before", {"app": "web"}), ("MODIFIED", "out-before")),  # enters; existed
            (lambda: c.put("fresh", {"app": "web"}), ("ADDED", "fresh")),
            (lambda: c.put("fresh", {"app": "db"}), ("DELETED", "fresh")),
            (lambda: (c.put("fresh", {"app": "db"}, v="3"), c.put("m2", {"app": "web"})), ("ADDED", "m2")),
        ]
        for change, expected in steps:
            change()
            assert summary(s.next()) == [expected]
    finally:
        s.close()


def test_field_selector_on_the_name_as_kubectl_get_name_watch(server: str, backend: Store) -> None:
    c = Cluster(backend, server)
    c.put("x")
    s = Stream(server, c.path("&fieldSelector=metadata.name%3Dx"))
    try:
        (first,) = s.next()
        c.put("y")
        c.put("x", v="2")
        (second,) = s.next()
    finally:
        s.close()
    assert summary([first, second]) == [("ADDED", "x"), ("MODIFIED", "x")]


def test_table_events_have_the_cluster_column(server: str, backend: Store) -> None:
    c = Cluster(backend, server)
    at = listed_rv(server, c)
    s = Stream(server, c.path(f"&resourceVersion={at}"), accept=TABLE)
    try:
        c.put("a", k="v")
        (event,) = s.next()
    finally:
        s.close()
    table = event["object"]
    assert event["type"] == "ADDED" and table["kind"] == "Table"
    assert [col["name"] for col in table["columnDefinitions"]][:2] == ["Cluster", "Name"]
    assert table["rows"][0]["cells"][:2] == [c.name, "a"]
    assert table["metadata"]["resourceVersion"] == table["rows"][0]["object"]["metadata"]["resourceVersion"]


def test_all_clusters_and_namespace_paths(server: str, backend: Store) -> None:
    one, two = Cluster(backend, server), Cluster(backend, server)
    r = httpx.get(f"{server}{P}/api/v1/namespaces/team/configmaps")
    at = r.json()["metadata"]["resourceVersion"]
    s = Stream(server, f"{P}/api/v1/namespaces/team/configmaps?watch=1&resourceVersion={at}")
    try:
        one.put("a", ns="team")
        two.put("a", ns="other")  # another namespace: not this watch
        two.put("b", ns="team")
        events = s.next(2)
    finally:
        s.close()
    clusters = [e["object"]["metadata"]["annotations"]["shadow.clusterpedia.io/cluster-name"] for e in events]
    assert summary(events) == [("ADDED", "a"), ("ADDED", "b")] and clusters == [one.name, two.name]


def test_a_position_the_store_no_longer_holds_is_410(server: str, backend: Store) -> None:
    c = Cluster(backend, server)
    at = listed_rv(server, c)
    s = Stream(server, c.path(f"&resourceVersion={at}"))
    try:
        c.put("a")
        s.next()
        backend.purge(
            PurgeCluster(Cluster(backend, server).name)
        )  # another cluster removed: older positions go
        (error,) = s.next()
    finally:
        s.close()
    assert error["type"] == "ERROR"
    assert (error["object"]["code"], error["object"]["reason"]) == (410, "Expired")
    again = Stream(server, c.path(f"&resourceVersion={at}")).next()
    assert again[0]["type"] == "ERROR" and again[0]["object"]["code"] == 410
    # a relist and a watch from its resourceVersion work again
    fresh = listed_rv(server, c)
    s = Stream(server, c.path(f"&resourceVersion={fresh}"))
    try:
        c.put("b")
        assert summary(s.next()) == [("ADDED", "b")]
    finally:
        s.close()


def test_a_resource_version_not_reached_yet_is_504(server: str, backend: Store) -> None:
    c = Cluster(backend, server)
    assert isinstance(backend, ChangeFeed)
    r = httpx.get(f"{server}{c.path('&resourceVersion=999999999999')}", timeout=WAIT)
    assert r.status_code == 504 and r.json()["reason"] == "Timeout"


def test_a_watcher_that_falls_behind_is_ended_with_410() -> None:
    """Pure: a watcher whose client does not read gets 410 once its buffer is full, instead of
    holding the hub (and every other watcher) up."""
    watcher = Watcher(Search(group="", resource="configmaps"), start=0, buffer=3)
    changes = []
    for i in range(1, 6):
        obj = StoredObject(
            "c", "", "v1", "configmaps", "ConfigMap", "ns", f"o{i}", i, None, b"{}", revision=i
        )
        change = Change(object=obj, deleted=False, created_revision=i, uid="", owner_uid="", labels={})
        changes.append(change)
    watcher.feed([(changes[0], ChangeRow.of(changes[0]))], 0, 1)
    assert watcher.ended is None
    watcher.feed([(c, ChangeRow.of(c)) for c in changes[1:]], 1, 5)
    assert isinstance(watcher.ended, Gone) and watcher.take() == []


def test_collection_watch(server: str, backend: Store) -> None:
    c = Cluster(backend, server)
    add_type(backend, c.name, "apps", "v1", "deployments", "Deployment")
    add_type(backend, c.name, "apps", "v1", "daemonsets", "DaemonSet")
    workloads = "/apis/pedia.clusterpedia.io/v1alpha1/collectionresources/workloads"
    c.put("before")  # the store's revision is past 0 (a watch from "0" starts with the current state)
    at = httpx.get(f"{server}{workloads}").json()["metadata"]["resourceVersion"]
    s = Stream(server, f"{workloads}?watch=1&resourceVersion={at}&clusters={c.name}")

    def workload(resource: str, kind: str, name: str) -> None:
        obj = {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name, "namespace": "default"}}
        add_objects(backend, c.name, "apps", "v1", resource, [obj])

    try:
        workload("deployments", "Deployment", "web")
        (deployment,) = s.next()
        c.put("not-a-workload")  # a configmap: not in the collection
        workload("daemonsets", "DaemonSet", "agent")
        (daemonset,) = s.next()
    finally:
        s.close()
    assert [
        (e["type"], e["object"]["kind"], e["object"]["metadata"]["name"]) for e in (deployment, daemonset)
    ] == [
        ("ADDED", "Deployment", "web"),
        ("ADDED", "DaemonSet", "agent"),
    ]
    table = Stream(
        server, f"{workloads}?watch=1&resourceVersion={at}&clusters={c.name}&timeoutSeconds=1", TABLE
    )
    rows = [e["object"]["rows"][0]["cells"][:6] for e in table.rest()]
    assert rows == [
        [c.name, "apps", "v1", "Deployment", "default", "web"],
        [c.name, "apps", "v1", "DaemonSet", "default", "agent"],
    ]


def test_watches_the_host_proxies_end_before_its_request_timeout() -> None:
    # the host's aggregator cuts our watches after its request timeout (it sees a get): they end
    # cleanly before, so a client resumes from its last resourceVersion instead of listing again
    settings = ApiserverSettings(watch_proxied_timeout_seconds=50)
    assert parse_watch({"timeoutSeconds": "600"}, settings).timeout_seconds == 600
    assert parse_watch({"timeoutSeconds": "600"}, settings, proxied=True).timeout_seconds == 50
    assert parse_watch({}, settings, proxied=True).timeout_seconds == 50
    assert parse_watch({"timeoutSeconds": "5"}, settings, proxied=True).timeout_seconds == 5
    unlimited = ApiserverSettings(watch_proxied_timeout_seconds=0)
    assert parse_watch({"timeoutSeconds": "600"}, unlimited, proxied=True).timeout_seconds == 600
