"""The shared storage suite, relationship queries (``common.storage.relations``) on every backend.

One fixed world per store — Deployments -> ReplicaSets -> Pods (with an owner that is not stored, a
cycle, a uid known to two clusters), Services with and without selectors, Nodes, Events of both
groups — and every relation checked against a plain-Python walk of the same objects (the oracle),
alone, combined with other conditions, paged, counted and under the caller's permissions.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest

from apiserver.search import encode_continue, parse_search
from apiserver.types import ListPage, Search
from common.errors import BadRequest
from common.storage import StorageRejected, Store
from common.storage.query import Grant
from tests.common.storage.test_reads import Obj, register_types, write

T0 = dt.datetime(2024, 1, 1)
P = "search.clusterpedia.io/"


def _o(cluster: str, gr: str, name: str, uid: str, owner: str = "", ns: str = "default", **body: Any) -> Obj:
    resource, _, group = gr.partition(".")
    kind = {"deployments": "Deployment", "replicasets": "ReplicaSet", "pods": "Pod", "services": "Service"}
    kind |= {"nodes": "Node", "events": "Event"}
    return Obj(cluster, group, resource, kind[resource], ns, name, uid, 1, T0, owner_uid=owner, body=body)


def _pod(
    cluster: str, name: str, uid: str, owner: str, labels: dict[str, str], node: str = "", **kw: Any
) -> Obj:
    spec = {"nodeName": node} if node else {}
    return _o(cluster, "pods", name, uid, owner, metadata={"labels": labels}, spec=spec, **kw)


def _svc(cluster: str, name: str, uid: str, selector: dict[str, str] | None, ns: str = "default") -> Obj:
    return _o(cluster, "services", name, uid, ns=ns, spec={} if selector is None else {"selector": selector})


def _event(cluster: str, name: str, about: str, *, new: bool = False, ns: str = "default") -> Obj:
    field = "regarding" if new else "involvedObject"
    o = _o(cluster, "events", name, f"ev-{cluster}-{name}-{new}", about, ns=ns, **{field: {"uid": about}})
    if new:
        o.group = "events.k8s.io"
    return o


WEB = {"app": "web"}
WORLD = [
    _o("cluster-1", "deployments.apps", "web", "d-web"),
    _o("cluster-1", "deployments.apps", "api", "d-api"),
    _o("cluster-1", "replicasets.apps", "web-1", "rs-web-1", "d-web"),
    _o("cluster-1", "replicasets.apps", "web-2", "rs-web-2", "d-web"),
    _o("cluster-1", "replicasets.apps", "api-1", "rs-api-1", "d-api"),
    _o("cluster-1", "replicasets.apps", "orphan", "rs-orphan", "not-stored"),
    _o("cluster-1", "replicasets.apps", "cyc-a", "c-a", "c-b"),
    _o("cluster-1", "replicasets.apps", "cyc-b", "c-b", "c-a"),
    _pod("cluster-1", "web-1-a", "p-1", "rs-web-1", {"app": "web", "tier": "fe"}, "node-a"),
    _pod("cluster-1", "web-1-b", "p-2", "rs-web-1", WEB, "node-b"),
    _pod("cluster-1", "web-2-a", "p-3", "rs-web-2", {"app": "web", "tier": "fe"}),
    _pod("cluster-1", "api-1-a", "p-4", "rs-api-1", {"app": "api"}, "node-a"),
    _pod("cluster-1", "lonely", "p-5", "", WEB, "node-b", ns="other"),
    _pod("cluster-1", "orphan-a", "p-6", "rs-orphan", {"app": "orphan"}),
    _pod("cluster-1", "cyc-pod", "p-7", "c-a", {}),
    _pod("cluster-1", "web-1-a", "p-8", "", WEB, "node-c", ns="other"),  # the same name elsewhere
    _svc("cluster-1", "web", "s-web", WEB),
    _svc("cluster-1", "web-fe", "s-web-fe", {"app": "web", "tier": "fe"}),
    _svc("cluster-1", "none", "s-none", None),
    _svc("cluster-1", "empty", "s-empty", {}),
    _svc("cluster-1", "web", "s-web-other", WEB, ns="other"),
    _o("cluster-1", "nodes", "node-a", "n-a", ns=""),
    _o("cluster-1", "nodes", "node-b", "n-b", ns=""),
    _event("cluster-1", "p1.1", "p-1"),
    _event("cluster-1", "p1.2", "p-1"),
    _event("cluster-1", "p1.new", "p-1", new=True),
    _event("cluster-1", "web.1", "d-web"),
    _event("cluster-1", "node-a.1", "n-a"),
    _o("cluster-2", "deployments.apps", "web", "d2-web"),
    _o("cluster-2", "replicasets.apps", "web-1", "rs2-web-1", "d2-web"),
    # a uid cluster-1 has too (a member registered twice, a restored etcd): each cluster walks its own
    _pod("cluster-2", "web-1-a", "p-1", "rs2-web-1", WEB, "node-a"),
    _svc("cluster-2", "web", "s-web", WEB),
    _o("cluster-2", "nodes", "node-a", "n2-a", ns=""),
    _event("cluster-2", "p1.1", "p-1"),
]
GRS = [
    ("apps", "deployments", "Deployment"),
    ("apps", "replicasets", "ReplicaSet"),
    ("", "pods", "Pod"),
    ("", "services", "Service"),
    ("", "nodes", "Node"),
    ("", "events", "Event"),
    ("events.k8s.io", "events", "Event"),
]
Key = tuple[str, str, str, str]  # cluster, resource, namespace, name


@pytest.fixture(scope="module")
def store(backend: Store) -> Store:
    register_types(backend, ("cluster-1", "cluster-2"), GRS)
    write(backend, [o.event() for o in WORLD])
    return backend


# ---------------------------------------------------------------------- the oracle: walk the objects


def _by_uid(cluster: str, uid: str) -> Obj | None:
    return next((o for o in WORLD if o.cluster == cluster and o.uid == uid), None)


def _subjects(
    uid: str = "", name: str = "", cluster: str = "", resource: str = "", ns: str | None = None
) -> list[Obj]:
    if uid:
        return [o for o in WORLD if o.uid == uid]
    return [
        o
        for o in WORLD
        if (o.cluster, o.resource, o.name) == (cluster, resource, name) and ns in (None, o.namespace)
    ]


def _chain(o: Obj) -> tuple[list[Obj], Obj | None]:
    """The controller owners above ``o`` and the top-level one (None for a cycle or no owner)."""
    chain: list[Obj] = []
    cur = o
    while cur.owner_uid:
        nxt = _by_uid(cur.cluster, cur.owner_uid)
        if nxt is None:
            break
        if nxt is o or nxt in chain:
            return chain, None
        chain.append(nxt)
        cur = nxt
    return chain, (chain[-1] if chain else None)


def expected(relation: str, resource: str, subjects: list[Obj]) -> list[Key]:
    out: list[Obj] = []
    for s in subjects:
        if relation in ("owners", "top-owner"):
            chain, top = _chain(s)
            out += chain if relation == "owners" else [top] if top else []
        elif relation == "selected" and s.resource == "services":
            sel = s.body["spec"].get("selector") or {}
            out += [
                o
                for o in WORLD
                if sel
                and o.resource == "pods"
                and (o.cluster, o.namespace) == (s.cluster, s.namespace)
                and sel.items() <= o.labels().items()
            ]
        elif relation == "node" and s.resource == "pods":
            node = s.body["spec"].get("nodeName")
            out += [o for o in WORLD if o.resource == "nodes" and (o.cluster, o.name) == (s.cluster, node)]
        elif relation == "events":
            out += [
                o for o in WORLD if o.resource == "events" and (o.cluster, o.owner_uid) == (s.cluster, s.uid)
            ]
    group = {"deployments": "apps", "replicasets": "apps"}.get(resource, "")
    keys = {
        (o.cluster, o.resource, o.namespace, o.name)
        for o in out
        if (o.group, o.resource) == (group, resource)
    }
    return sorted(keys)


def search(pairs: list[tuple[str, str]], resource: str, **kw: str) -> Search:
    group = {"deployments": "apps", "replicasets": "apps"}.get(resource, "")
    return parse_search(pairs, group=group, version="v1", resource=resource, **kw)


def listed(store: Store, s: Search) -> list[Key]:
    page = asyncio.run(store.list_objects(s))
    return [(o.cluster, o.resource, o.namespace, o.name) for o in page.items]


CASES: list[tuple[list[tuple[str, str]], str, dict[str, str], list[Obj]]] = [
    # owners: by uid (both clusters know p-1), by name, in one cluster, a cycle, a missing owner
    ([("relation", "owners"), ("ofUID", "p-1")], "replicasets", {}, _subjects("p-1")),
    ([("relation", "owners"), ("ofUID", "p-1")], "deployments", {}, _subjects("p-1")),
    (
        [("relation", "owners"), ("ofUID", "p-1")],
        "deployments",
        {"cluster": "cluster-2"},
        _subjects("p-1")[1:],
    ),
    ([("relation", "owners"), ("ofUID", "p-7")], "replicasets", {}, _subjects("p-7")),
    ([("relation", "owners"), ("ofUID", "p-6")], "replicasets", {}, _subjects("p-6")),
    ([("relation", "owners"), ("ofUID", "p-5")], "replicasets", {}, _subjects("p-5")),
    ([("relation", "owners"), ("ofUID", "rs-web-2")], "deployments", {}, _subjects("rs-web-2")),
    (
        [("relation", "owners"), ("ofName", "web-1-a"), ("ofGR", "pods")],
        "replicasets",
        {"cluster": "cluster-1"},
        _subjects(name="web-1-a", cluster="cluster-1", resource="pods"),
    ),
    (
        [("relation", "owners"), ("ofName", "web-1-a"), ("ofGR", "pods"), ("clusters", "cluster-1")],
        "deployments",
        {"namespace": "default"},
        _subjects(name="web-1-a", cluster="cluster-1", resource="pods", ns="default"),
    ),
    # top-owner: the last stored object of the chain; none for a cycle or an owner-less subject
    ([("relation", "top-owner"), ("ofUID", "p-1")], "deployments", {}, _subjects("p-1")),
    ([("relation", "top-owner"), ("ofUID", "p-1")], "replicasets", {}, _subjects("p-1")),
    ([("relation", "top-owner"), ("ofUID", "p-6")], "replicasets", {}, _subjects("p-6")),
    ([("relation", "top-owner"), ("ofUID", "p-7")], "replicasets", {}, _subjects("p-7")),
    ([("relation", "top-owner"), ("ofUID", "p-5")], "deployments", {}, _subjects("p-5")),
    # selected: same cluster and namespace; no selector (absent or empty) selects nothing
    ([("relation", "selected"), ("ofUID", "s-web")], "pods", {}, _subjects("s-web")),
    ([("relation", "selected"), ("ofUID", "s-web-fe")], "pods", {}, _subjects("s-web-fe")),
    ([("relation", "selected"), ("ofUID", "s-none")], "pods", {}, _subjects("s-none")),
    ([("relation", "selected"), ("ofUID", "s-empty")], "pods", {}, _subjects("s-empty")),
    ([("relation", "selected"), ("ofUID", "p-1")], "pods", {}, _subjects("p-1")),  # not a Service
    (
        [("labelSelector", f"{P}relation=selected,{P}of-name=web")],
        "pods",
        {"cluster": "cluster-1"},
        _subjects(name="web", cluster="cluster-1", resource="services"),
    ),
    (
        [("labelSelector", f"{P}relation=selected,{P}of-name=web")],
        "pods",
        {"cluster": "cluster-1", "namespace": "other"},
        _subjects(name="web", cluster="cluster-1", resource="services", ns="other"),
    ),
    # node
    ([("relation", "node"), ("ofUID", "p-1")], "nodes", {}, _subjects("p-1")),
    ([("relation", "node"), ("ofUID", "p-3")], "nodes", {}, _subjects("p-3")),
    ([("relation", "node"), ("ofUID", "p-8")], "nodes", {}, _subjects("p-8")),  # node-c is not stored
    (
        [("relation", "node"), ("ofName", "web-1-a"), ("clusters", "cluster-1")],
        "nodes",
        {},
        _subjects(name="web-1-a", cluster="cluster-1", resource="pods"),
    ),
    (
        [("relation", "node"), ("ofName", "web-1-a"), ("ofNamespace", "default"), ("clusters", "cluster-1")],
        "nodes",
        {},
        _subjects(name="web-1-a", cluster="cluster-1", resource="pods", ns="default"),
    ),
    # events: of a pod, a deployment, a cluster-scoped node (whose events live in "default")
    ([("relation", "events"), ("ofUID", "p-1")], "events", {}, _subjects("p-1")),
    ([("relation", "events"), ("ofUID", "d-web")], "events", {"namespace": "default"}, _subjects("d-web")),
    (
        [("relation", "events"), ("ofName", "node-a"), ("ofGR", "nodes")],
        "events",
        {"cluster": "cluster-1", "namespace": "default"},
        _subjects(name="node-a", cluster="cluster-1", resource="nodes"),
    ),
]


@pytest.mark.parametrize(("pairs", "resource", "kw", "subjects"), CASES)
def test_relation_answers_as_walking_the_objects(
    store: Store, pairs: list[tuple[str, str]], resource: str, kw: dict[str, str], subjects: list[Obj]
) -> None:
    s = search(pairs, resource, **kw)
    want = [
        k
        for k in expected(s.relation.kind if s.relation else "", resource, subjects)
        if (not s.single_cluster or k[0] == s.single_cluster) and (not s.namespace or k[2] == s.namespace)
    ]
    assert listed(store, s) == want
    assert asyncio.run(store.count_objects(s)) == len(want)


def test_events_of_the_other_event_group(store: Store) -> None:
    s = parse_search(
        [("relation", "events"), ("ofUID", "p-1"), ("clusters", "cluster-1")],
        group="events.k8s.io",
        version="v1",
        resource="events",
    )
    assert listed(store, s) == [("cluster-1", "events", "default", "p1.new")]


def test_relation_combines_with_other_conditions(store: Store) -> None:
    # names, labels, field selectors and owner conditions narrow the relation's answer
    assert listed(
        store, search([("relation", "owners"), ("ofUID", "p-1"), ("names", "web")], "deployments")
    ) == [
        ("cluster-1", "deployments", "default", "web"),
        ("cluster-2", "deployments", "default", "web"),
    ]
    got = listed(
        store, search([("relation", "selected"), ("ofUID", "s-web"), ("labelSelector", "tier=fe")], "pods")
    )
    assert got == [("cluster-1", "pods", "default", "web-1-a"), ("cluster-1", "pods", "default", "web-2-a")]
    got = listed(
        store, search([("relation", "selected"), ("ofUID", "s-web"), ("ownerUID", "rs-web-1")], "pods")
    )
    assert got == [("cluster-1", "pods", "default", "web-1-a"), ("cluster-1", "pods", "default", "web-1-b")]
    excluded = search(
        [("relation", "owners"), ("ofUID", "p-1"), ("labelSelector", f"{P}clusters!=cluster-1")],
        "replicasets",
    )
    assert listed(store, excluded) == [("cluster-2", "replicasets", "default", "web-1")]


def test_relation_counted_by_group_equals_its_list(store: Store) -> None:
    """group-by counts over a relation (resolved as lists are, by every backend) equal its list."""
    for pairs, resource in (
        ([("relation", "owners"), ("ofUID", "p-1")], "replicasets"),
        ([("relation", "selected"), ("ofUID", "s-web")], "pods"),
    ):
        items = listed(store, search(pairs, resource))
        assert items
        want: dict[tuple[str, ...], int] = {}
        for cluster, _, namespace, _ in items:
            want[(cluster, namespace)] = want.get((cluster, namespace), 0) + 1
        groups = asyncio.run(
            store.count_groups(search([*pairs, ("groupBy", "cluster,namespace")], resource), 100)
        )
        assert {g.values: g.count for g in groups} == want


def test_relation_in_several_clusters_pages_exactly_once(store: Store) -> None:
    """p-1 is known to both clusters: the answer is the union of two searches, paged by keyset."""
    want = expected("owners", "replicasets", _subjects("p-1")) + expected("owners", "deployments", [])
    assert len(want) == 2
    seen: list[Key] = []
    token = ""
    for _ in range(4):
        pairs = [("relation", "owners"), ("ofUID", "p-1"), ("limit", "1"), ("withRemainingCount", "true")]
        page: ListPage = asyncio.run(
            store.list_objects(search([*pairs, *([("continue", token)] if token else [])], "replicasets"))
        )
        seen += [(o.cluster, o.resource, o.namespace, o.name) for o in page.items]
        token = encode_continue(page.next) if page.next is not None else ""
        if not token:
            break
        assert page.remaining_item_count == len(want) - len(seen)
    assert seen == want


def _readable(hidden: set[tuple[str, str]]) -> Callable[[str, str, str, str, str], bool]:
    return lambda cluster, group, resource, namespace, name: (resource, name) not in hidden


def _with(s: Search, readable: Callable[[str, str, str, str, str], bool]) -> Search:
    assert s.relation is not None
    return dataclasses.replace(s, relation=dataclasses.replace(s.relation, readable=readable))


def test_the_walk_reads_only_what_the_caller_may_list(store: Store) -> None:
    owners = search([("relation", "owners"), ("ofUID", "p-2"), ("clusters", "cluster-1")], "deployments")
    assert listed(store, owners) == [("cluster-1", "deployments", "default", "web")]
    # the ReplicaSet in between hidden: the Deployment behind it is not reached, nor is a top
    assert listed(store, _with(owners, _readable({("replicasets", "web-1")}))) == []
    top = search([("relation", "top-owner"), ("ofUID", "p-2"), ("clusters", "cluster-1")], "deployments")
    assert listed(store, _with(top, _readable({("replicasets", "web-1")}))) == []
    # the subject hidden: nothing, whatever the caller may list of the answer
    assert listed(store, _with(owners, _readable({("pods", "web-1-b")}))) == []
    node = search([("relation", "node"), ("ofUID", "p-2")], "nodes")
    assert listed(store, node) == [("cluster-1", "nodes", "", "node-b")]
    assert listed(store, _with(node, _readable({("pods", "web-1-b")}))) == []
    selected = search([("relation", "selected"), ("ofUID", "s-web")], "pods")
    assert listed(store, _with(selected, _readable({("services", "web")}))) == []
    # the answer itself is restricted by the search's visibility, as any list
    seen = dataclasses.replace(selected, visibility=(Grant("cluster-1", "", "pods", names=("web-1-b",)),))
    assert listed(store, seen) == [("cluster-1", "pods", "default", "web-1-b")]


@pytest.mark.parametrize(("length", "top"), [(16, "deep-15"), (17, None)])
def test_chains_are_followed_16_owners_up(store: Store, length: int, top: str | None) -> None:
    ns = f"deep-{length}"
    chain = [
        _o("cluster-2", "replicasets.apps", f"deep-{i}", f"{ns}-{i}", f"{ns}-{i + 1}", ns=ns)
        for i in range(length)
    ]
    chain[-1].owner_uid = ""
    write(store, [o.event() for o in [*chain, _pod("cluster-2", "p", f"{ns}-pod", f"{ns}-0", {}, ns=ns)]])
    owners = search([("relation", "owners"), ("ofUID", f"{ns}-pod")], "replicasets")
    assert len(listed(store, owners)) == 16
    tops = listed(store, search([("relation", "top-owner"), ("ofUID", f"{ns}-pod")], "replicasets"))
    assert tops == ([("cluster-2", "replicasets", ns, top)] if top else [])


def test_relations_that_cannot_list_this_resource_are_refused(store: Store) -> None:
    for pairs, resource in (
        ([("relation", "selected"), ("ofUID", "s-web")], "nodes"),
        ([("relation", "node"), ("ofUID", "p-1")], "pods"),
        ([("relation", "events"), ("ofUID", "p-1")], "pods"),
    ):
        with pytest.raises(StorageRejected, match=f'relation "{pairs[0][1]}" lists'):
            listed(store, search(pairs, resource))


def test_a_huge_selector_is_refused_not_queried(store: Store) -> None:
    huge = _svc("cluster-2", "huge", "s-huge", {f"k{i}": "v" for i in range(100)})
    write(store, [huge.event()])
    with pytest.raises(StorageRejected, match="at most 64"):
        listed(store, search([("relation", "selected"), ("ofUID", "s-huge")], "pods"))


@pytest.mark.parametrize(
    ("pairs", "kw", "message"),
    [
        ([("relation", "cousins"), ("ofUID", "p-1")], {}, 'unknown relation "cousins"'),
        ([("ofUID", "p-1")], {}, "needs relation"),
        ([("relation", "owners")], {}, "needs its subject"),
        ([("relation", "owners"), ("ofUID", "p-1"), ("ofName", "x")], {}, "not both"),
        ([("relation", "owners"), ("ofUID", "p-1'; drop table resources; --")], {}, "invalid ofUID"),
        ([("relation", "owners"), ("ofUID", "p-1"), ("ofGR", "pods")], {}, "ofUID names the subject alone"),
        ([("relation", "owners"), ("ofName", "web"), ("ofGR", "pods")], {}, "exactly one cluster"),
        ([("relation", "owners"), ("ofName", "web")], {"cluster": "cluster-1"}, "needs ofGR"),
        ([("relation", "owners"), ("ofName", "../x"), ("ofGR", "pods")], {"cluster": "c"}, "invalid ofName"),
        ([("relation", "owners"), ("ofName", "x"), ("ofGR", "Pods!")], {"cluster": "c"}, "invalid ofGR"),
        ([("relation", "selected"), ("ofName", "x"), ("ofGR", "pods")], {"cluster": "c"}, "must be services"),
        (
            [("relation", "node"), ("ofName", "x"), ("ofNamespace", "a b")],
            {"cluster": "c"},
            "invalid ofNamespace",
        ),
        ([("labelSelector", f"{P}relation in (owners,node),{P}of-uid=p-1")], {}, "one value"),
        ([("labelSelector", f"{P}relation=owners,{P}of-uid!=p-1")], {}, "one value"),
    ],
)
def test_bad_relations_are_400(pairs: list[tuple[str, str]], kw: dict[str, str], message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        search(pairs, "pods", **kw)
