"""The shared storage suite, reader side: searches on every registered backend (SQLite, PostgreSQL,
MariaDB, memory): filters, orders, owners, paging, gets, counts, collections.

A fixed set of objects is written once per store; every search is checked against a plain-Python
evaluation of the same conditions over that set (the oracle), so the expectations are computed, not
copied. Paging is checked for exactly-once delivery while rows are inserted, updated and deleted
between pages.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import datetime as dt
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from apiserver.app import storage_status
from apiserver.collections import collection_search, list_collections
from apiserver.search import continue_scope, encode_continue, parse_search
from apiserver.types import ListPage, Search, StoredObject
from common.errors import NotFound
from common.events import Delete, Event, ResourceType, Upsert
from common.settings import ApiserverSettings
from common.storage import StorageRejected, Store, UnknownCluster
from common.storage.query import Grant

T0 = dt.datetime(2024, 1, 1)
CLUSTERS = ("cluster-1", "cluster-2")
GROUP, RESOURCE = "example.com", "widgets"


@dataclass
class Obj:
    cluster: str
    group: str
    resource: str
    kind: str
    namespace: str
    name: str
    uid: str
    rv: int
    created_at: dt.datetime
    owner_uid: str = ""
    body: dict[str, Any] = field(default_factory=dict)
    deleted: bool = False

    def event(self) -> Event:
        """How a writer would store it: an upsert, or for a deleted object a delete (a tombstone)."""
        if self.deleted:
            return Delete(self.cluster, self.group, "v1", self.resource, self.namespace, self.name, self.rv)
        meta: dict[str, Any] = {"name": self.name, "uid": self.uid, "resourceVersion": str(self.rv)}
        if self.namespace:
            meta["namespace"] = self.namespace
        meta.update(self.body.get("metadata", {}))
        obj = {"apiVersion": f"{self.group}/v1" if self.group else "v1", "kind": self.kind, **self.body}
        obj["metadata"] = meta
        return Upsert(
            cluster=self.cluster,
            group=self.group,
            version="v1",
            resource=self.resource,
            kind=self.kind,
            namespace=self.namespace,
            name=self.name,
            uid=self.uid,
            resource_version=self.rv,
            epoch=1,
            owner_uid=self.owner_uid,
            created_at=self.created_at.isoformat() + "Z",
            object=json.dumps(obj).encode(),
        )

    def labels(self) -> dict[str, str]:
        labels: dict[str, str] = self.body.get("metadata", {}).get("labels", {})
        return labels


def widgets() -> list[Obj]:
    out: list[Obj] = []
    i = 0
    for cluster in CLUSTERS:
        for ns in ("default", "kube-system"):
            for n in range(6):
                labels = {"app": ("web", "db", "cache")[n % 3]}
                if n % 2:
                    labels["tier"] = "backend"
                body = {
                    "metadata": {"labels": labels, "annotations": {"note.example.com/x": f"n{n % 2}"}},
                    "spec": {
                        "replicas": n % 3,
                        "paused": n == 4,
                        # a JSON null (n=1), a string (n=2), otherwise missing
                        **({"nodeName": None} if n == 1 else {"nodeName": "node-a"} if n == 2 else {}),
                    },
                    "status": {"phase": "Running" if n % 3 else "Pending"},
                }
                name = f"w-{n}" if n < 5 else "w_5"  # one name with a LIKE wildcard character
                out.append(
                    Obj(cluster, GROUP, RESOURCE, "Widget", ns, name, f"uid-{i}", 100 + i, T0, body=body)
                )
                out[-1].created_at = T0 + dt.timedelta(days=(i * 7) % 24, minutes=i)
                i += 1
    # a tombstone: never served
    out.append(
        Obj("cluster-1", GROUP, RESOURCE, "Widget", "default", "w-dead", "uid-dead", 999, T0, deleted=True)
    )
    return out


def owner_chain() -> list[Obj]:
    """deployment web -> replicasets web-1, web-2 -> pods; a second deployment api; a copy in cluster-2."""

    def o(cluster: str, group: str, res: str, kind: str, name: str, uid: str, owner: str) -> Obj:
        return Obj(cluster, group, res, kind, "default", name, uid, 1, T0, owner_uid=owner)

    return [
        o("cluster-1", "apps", "deployments", "Deployment", "web", "d-web", ""),
        o("cluster-1", "apps", "deployments", "Deployment", "api", "d-api", ""),
        o("cluster-1", "apps", "replicasets", "ReplicaSet", "web-1", "rs-web-1", "d-web"),
        o("cluster-1", "apps", "replicasets", "ReplicaSet", "web-2", "rs-web-2", "d-web"),
        o("cluster-1", "apps", "replicasets", "ReplicaSet", "api-1", "rs-api-1", "d-api"),
        o("cluster-1", "", "pods", "Pod", "web-1-a", "p-1", "rs-web-1"),
        o("cluster-1", "", "pods", "Pod", "web-1-b", "p-2", "rs-web-1"),
        o("cluster-1", "", "pods", "Pod", "web-2-a", "p-3", "rs-web-2"),
        o("cluster-1", "", "pods", "Pod", "api-1-a", "p-4", "rs-api-1"),
        o("cluster-1", "", "pods", "Pod", "lonely", "p-5", ""),
        o("cluster-2", "apps", "deployments", "Deployment", "web", "d2-web", ""),
        o("cluster-2", "apps", "replicasets", "ReplicaSet", "web-1", "rs2-web-1", "d2-web"),
        o("cluster-2", "", "pods", "Pod", "web-1-a", "p2-1", "rs2-web-1"),
    ]


def register_types(store: Store, clusters: tuple[str, ...], grs: list[tuple[str, str, str]]) -> None:
    store.apply(
        [], [], [ResourceType(c, g, "v1", r, k, True, [], [], "v1") for c in clusters for g, r, k in grs]
    )


def write(store: Store, events: list[Event]) -> None:
    """Events of distinct objects, applied as one batch (the writer's order: upserts, then deletes)."""
    store.apply(
        [e for e in events if isinstance(e, Upsert)], [e for e in events if isinstance(e, Delete)], []
    )


DATA = widgets() + owner_chain()
LIVE_WIDGETS = [o for o in DATA if o.resource == RESOURCE and not o.deleted]


@pytest.fixture(scope="module")
def store(backend: Store) -> Store:
    register_types(
        backend,
        CLUSTERS,
        [
            (GROUP, RESOURCE, "Widget"),
            ("apps", "deployments", "Deployment"),
            ("apps", "replicasets", "ReplicaSet"),
            ("", "pods", "Pod"),
        ],
    )
    write(backend, [o.event() for o in DATA])
    return backend


def list_sync(store: Store, search: Search) -> ListPage:
    return asyncio.run(store.list_objects(search))


def get_sync(store: Store, cluster: str, group: str, resource: str, ns: str, name: str) -> list[StoredObject]:
    return asyncio.run(store.get_objects(cluster, group, resource, ns, name))


def token_of(page: ListPage) -> str:
    """The continue token the API tier would send for this page ("" on the last one)."""
    return encode_continue(page.next) if page.next is not None else ""


def search(*pairs: tuple[str, str], resource: str = RESOURCE, group: str = GROUP, **kw: str) -> Search:
    return parse_search(list(pairs), group=group, version="v1", resource=resource, **kw)


def keys(page: ListPage) -> list[tuple[str, str, str]]:
    return [(o.cluster, o.namespace, o.name) for o in page.items]


def oracle(
    pred: Callable[[Obj], bool], sort: Callable[[Obj], Any] | None = None
) -> list[tuple[str, str, str]]:
    chosen = [o for o in LIVE_WIDGETS if pred(o)]
    chosen.sort(key=sort or (lambda o: (o.cluster, o.namespace, o.name)))
    return [(o.cluster, o.namespace, o.name) for o in chosen]


P = "search.clusterpedia.io/"


def test_default_order_and_no_tombstones(store: Store) -> None:
    page = list_sync(store, search())
    assert keys(page) == oracle(lambda o: True)
    assert token_of(page) == "" and page.remaining_item_count is None
    # the store's head revision; each object carries its own row's revision (all distinct)
    floor, head = asyncio.run(store.window())
    assert page.resource_version == str(head)
    served = [int(json.loads(i.object)["metadata"]["resourceVersion"]) for i in page.items]
    assert served == [i.revision for i in page.items]
    assert len(set(served)) == len(served) and all(floor < r <= head for r in served)


def test_stored_object_fields(store: Store) -> None:
    item = list_sync(store, search(("names", "w-1"), ("clusters", "cluster-2")))
    assert [(i.cluster, i.namespace, i.name) for i in item.items] == [
        ("cluster-2", "default", "w-1"),
        ("cluster-2", "kube-system", "w-1"),
    ]
    first = item.items[0]
    src = next(o for o in LIVE_WIDGETS if (o.cluster, o.namespace, o.name) == ("cluster-2", "default", "w-1"))
    assert (first.group, first.version, first.resource, first.kind) == (GROUP, "v1", RESOURCE, "Widget")
    assert (first.resource_version, first.created_at) == (src.rv, src.created_at)
    assert isinstance(first.object, bytes)
    assert json.loads(first.object)["metadata"]["labels"] == src.labels()


@pytest.mark.parametrize(
    ("pairs", "sort"),
    [
        ([("orderby", "name")], lambda o: (o.name, o.cluster, o.namespace)),
        ([("labelSelector", f"{P}orderby=name_desc")], None),
        ([("orderby", "namespace desc,name")], lambda o: (_rev(o.namespace), o.name, o.cluster)),
        (
            [("orderby", "created_at desc")],
            lambda o: (-o.created_at.timestamp(), o.cluster, o.namespace, o.name),
        ),
        ([("orderby", "resource_version")], lambda o: (o.rv, o.cluster, o.namespace, o.name)),
        (
            [("labelSelector", f"{P}orderby in (cluster_desc, name)")],
            lambda o: (_rev(o.cluster), o.name, o.namespace),
        ),
    ],
)
def test_orderby(store: Store, pairs: list[tuple[str, str]], sort: Callable[[Obj], Any] | None) -> None:
    got = keys(list_sync(store, search(*pairs)))
    if sort is None:  # name desc, then cluster, namespace ascending
        expected = sorted(oracle(lambda o: True), key=lambda k: (k[0], k[1]))
        expected.sort(key=lambda k: k[2], reverse=True)
    else:
        expected = oracle(lambda o: True, sort)
    assert got == expected


def _rev(s: str) -> tuple[int, ...]:
    return (*(-ord(c) for c in s), 1)


def test_seed_orderby_name_sorts_by_name_then_cluster(store: Store) -> None:
    page = list_sync(
        store,
        search(
            (
                "labelSelector",
                f"{P}clusters in (cluster-1, cluster-2),{P}namespaces in (kube-system),{P}orderby=name",
            )
        ),
    )
    assert [(k[2], k[0]) for k in keys(page)] == sorted((k[2], k[0]) for k in keys(page))
    assert keys(page)[:2] == [("cluster-1", "kube-system", "w-0"), ("cluster-2", "kube-system", "w-0")]


@pytest.mark.parametrize(
    ("pairs", "pred"),
    [
        ([("clusters", "cluster-2")], lambda o: o.cluster == "cluster-2"),
        ([("labelSelector", f"{P}clusters!=cluster-2")], lambda o: o.cluster != "cluster-2"),
        (
            [("labelSelector", f"{P}namespaces in (kube-system, nope)")],
            lambda o: o.namespace == "kube-system",
        ),
        ([("labelSelector", f"{P}namespaces notin (kube-system)")], lambda o: o.namespace != "kube-system"),
        ([("names", "w-1,w-3")], lambda o: o.name in ("w-1", "w-3")),
        ([("labelSelector", f"{P}names notin (w-1,w-3)")], lambda o: o.name not in ("w-1", "w-3")),
        ([("labelSelector", "app=web")], lambda o: o.labels().get("app") == "web"),
        ([("labelSelector", "app==db")], lambda o: o.labels().get("app") == "db"),
        ([("labelSelector", "app!=web")], lambda o: o.labels().get("app") != "web"),
        ([("labelSelector", "app in (web, cache)")], lambda o: o.labels().get("app") in ("web", "cache")),
        ([("labelSelector", "tier notin (backend)")], lambda o: o.labels().get("tier") != "backend"),
        ([("labelSelector", "tier")], lambda o: "tier" in o.labels()),
        ([("labelSelector", "!tier")], lambda o: "tier" not in o.labels()),
        (
            [("labelSelector", "app=web,!tier")],
            lambda o: o.labels().get("app") == "web" and "tier" not in o.labels(),
        ),
        ([("labelSelector", "nope=x")], lambda o: False),
        ([("fieldSelector", "status.phase=Running")], lambda o: o.body["status"]["phase"] == "Running"),
        ([("fieldSelector", "status.phase!=Running")], lambda o: o.body["status"]["phase"] != "Running"),
        ([("fieldSelector", "spec.replicas=2")], lambda o: o.body["spec"]["replicas"] == 2),
        ([("fieldSelector", "spec.replicas in (0, 2)")], lambda o: o.body["spec"]["replicas"] in (0, 2)),
        ([("fieldSelector", "spec.paused=true")], lambda o: o.body["spec"]["paused"]),
        ([("fieldSelector", "spec.paused==false")], lambda o: not o.body["spec"]["paused"]),
        ([("fieldSelector", "spec.missing=")], lambda o: True),
        # a JSON null reads as missing ("") on every store, never as the text "null"
        ([("fieldSelector", "spec.nodeName=")], lambda o: o.body["spec"].get("nodeName") is None),
        ([("fieldSelector", "spec.nodeName!=")], lambda o: o.body["spec"].get("nodeName") == "node-a"),
        ([("fieldSelector", "spec.nodeName=null")], lambda o: False),
        ([("fieldSelector", "spec.nodeName in (node-a, null)")], lambda o: o.name == "w-2"),
        (
            [("fieldSelector", "metadata.annotations['note.example.com/x']=n1")],
            lambda o: o.name in ("w-1", "w-3", "w_5"),
        ),
        (
            [("fieldSelector", "metadata.labels['tier']=backend")],
            lambda o: o.labels().get("tier") == "backend",
        ),
        (
            [("fieldSelector", "metadata.name=w-2,metadata.namespace!=default")],
            lambda o: o.name == "w-2" and o.namespace != "default",
        ),
        ([("fieldSelector", r"status.phase=x' OR '1'\='1")], lambda o: False),
        ([("fuzzyName", "-")], lambda o: "-" in o.name),
        ([("fuzzyName", "w_")], lambda o: "w_" in o.name),  # "_" is literal, not a LIKE wildcard
        ([("labelSelector", "internalstorage.clusterpedia.io/fuzzy-name=_5")], lambda o: "_5" in o.name),
        ([("since", "2024-01-10")], lambda o: o.created_at >= dt.datetime(2024, 1, 10)),
        ([("before", "2024-01-10T00:00:00Z")], lambda o: o.created_at < dt.datetime(2024, 1, 10)),
        (
            [
                ("since", str(int(dt.datetime(2024, 1, 5, tzinfo=dt.UTC).timestamp() * 1000))),
                ("before", "2024-01-15"),
            ],
            lambda o: dt.datetime(2024, 1, 5) <= o.created_at < dt.datetime(2024, 1, 15),
        ),
    ],
)
def test_filters(store: Store, pairs: list[tuple[str, str]], pred: Callable[[Obj], bool]) -> None:
    expected = oracle(pred)
    assert keys(list_sync(store, search(*pairs))) == expected


def test_path_cluster_and_namespace(store: Store) -> None:
    page = list_sync(store, search(cluster="cluster-1", namespace="kube-system"))
    assert keys(page) == oracle(lambda o: o.cluster == "cluster-1" and o.namespace == "kube-system")


@pytest.mark.parametrize(
    "kwargs",
    [{"cluster": "cluster-9"}, {"pairs": [("clusters", "cluster-1,cluster-9")]}],
    ids=["path", "query"],
)
def test_unknown_cluster_is_404_in_both_forms(store: Store, kwargs: dict[str, Any]) -> None:
    kwargs = dict(kwargs)
    pairs = kwargs.pop("pairs", [])
    with pytest.raises(UnknownCluster, match='cluster "cluster-9" not found') as info:
        list_sync(store, search(*pairs, **kwargs))
    assert storage_status(info.value).status()["code"] == 404


@pytest.mark.parametrize(
    ("pairs", "resource", "expected"),
    [
        ([("ownerUID", "rs-web-1")], "pods", ["web-1-a", "web-1-b"]),
        ([("ownerUID", "d-web"), ("ownerSeniority", "1")], "pods", ["web-1-a", "web-1-b", "web-2-a"]),
        ([("ownerName", "web"), ("clusters", "cluster-1")], "replicasets", ["web-1", "web-2"]),
        (
            [("ownerName", "web"), ("ownerGR", "deployments.apps"), ("ownerSeniority", "1")],
            "pods",
            ["web-1-a", "web-1-b", "web-2-a"],
        ),
        ([("ownerName", "web"), ("ownerGR", "replicasets.apps"), ("ownerSeniority", "1")], "pods", []),
        ([("ownerName", "web-1"), ("ownerGR", "replicasets.apps")], "pods", ["web-1-a", "web-1-b"]),
        ([("ownerName", "web"), ("ownerSeniority", "2")], "pods", []),
        ([("labelSelector", f"{P}owner-name=api,{P}owner-seniority=1")], "pods", ["api-1-a"]),
    ],
)
def test_owner_queries(
    store: Store, pairs: list[tuple[str, str]], resource: str, expected: list[str]
) -> None:
    group = "" if resource == "pods" else "apps"
    needs_cluster = (
        any(k == "ownerName" or "owner-name" in v for k, v in pairs)
        and ("clusters", "cluster-1") not in pairs
    )
    page = list_sync(
        store,
        search(*pairs, resource=resource, group=group, **({"cluster": "cluster-1"} if needs_cluster else {})),
    )
    assert [i.name for i in page.items] == expected
    assert all(i.cluster == "cluster-1" for i in page.items)


def test_owner_uid_without_cluster_spans_clusters_but_follows_uids(store: Store) -> None:
    page = list_sync(
        store, search(("ownerUID", "d2-web"), ("ownerSeniority", "1"), resource="pods", group="")
    )
    assert keys(page) == [("cluster-2", "default", "web-1-a")]


def test_size_offset_pages_with_continue_and_remaining_count(store: Store) -> None:
    everything = oracle(lambda o: True)
    seen: list[tuple[str, str, str]] = []
    s = search(("size", "5"), ("offset", "3"), ("withContinue", "true"), ("withRemainingCount", "true"))
    first = list_sync(store, s)
    assert keys(first) == everything[3:8]
    assert first.remaining_item_count == len(everything) - 8
    page = first
    seen.extend(keys(page))
    while token_of(page):
        page = list_sync(store, search(("size", "5"), ("withContinue", "true"), ("continue", token_of(page))))
        seen.extend(keys(page))
        assert page.resource_version == first.resource_version
    assert seen == everything[3:]
    # without withContinue, an offset page carries no token
    assert list_sync(store, search(("size", "5"))).next is None


def test_keyset_pages_with_remaining_count(store: Store) -> None:
    everything = oracle(lambda o: o.labels().get("app") != "db")
    seen: list[tuple[str, str, str]] = []
    token = ""
    for _ in range(len(everything) + 1):
        pairs = [("limit", "4"), ("labelSelector", "app!=db"), ("withRemainingCount", "1")]
        page = list_sync(store, search(*pairs, *([("continue", token)] if token else [])))
        seen.extend(keys(page))
        token = token_of(page)
        if not token:
            assert page.remaining_item_count is None
            break
        assert page.remaining_item_count == len(everything) - len(seen)
    assert seen == everything


@pytest.mark.parametrize(
    "orderby",
    ["", "name", "name desc", "cluster desc,namespace desc,name desc", "created_at", "resource_version desc"],
)
def test_keyset_pages_walk_the_whole_order(store: Store, orderby: str) -> None:
    """Every order, one direction throughout (a row-value comparison on PostgreSQL) or mixed:
    small pages put together are exactly the unpaged list."""
    base = [("orderby", orderby)] if orderby else []
    everything = keys(list_sync(store, search(*base)))
    seen: list[tuple[str, str, str]] = []
    token = ""
    for _ in range(len(everything) + 1):
        page = list_sync(store, search(*base, ("limit", "3"), *([("continue", token)] if token else [])))
        seen.extend(keys(page))
        token = token_of(page)
        if not token:
            break
    assert len(everything) > 6 and seen == everything


def test_continue_token_for_another_order_is_400(store: Store) -> None:
    page = list_sync(store, search(("limit", "3")))
    with pytest.raises(StorageRejected, match="issued for a different orderby"):
        list_sync(store, search(("limit", "3"), ("orderby", "name"), ("continue", token_of(page))))
    scope = continue_scope(search())
    forged = base64.urlsafe_b64encode(
        b'{"v":2,"s":"%s","o":["cluster","namespace","name"],"k":["a","b","c"]}' % scope.encode()
    ).decode()
    assert (
        keys(list_sync(store, search(("limit", "3"), ("continue", forged))))
        == oracle(lambda o: o.cluster > "a")[:3]
    )


def test_only_metadata(store: Store) -> None:
    page = list_sync(store, search(("onlyMetadata", "true"), ("names", "w-0"), ("clusters", "cluster-1")))
    assert len(page.items) == 2
    obj = json.loads(page.items[0].object)
    assert set(obj) == {"apiVersion", "kind", "metadata"}
    assert obj["kind"] == "Widget" and obj["metadata"]["name"] == "w-0"


def test_get_objects(store: Store) -> None:
    """The store finds a name in one cluster or in all of them (the API tier decides what a name in
    several clusters means: tests/apiserver/test_app.py)."""

    def found(*key: str) -> list[tuple[str, str, str]]:
        return [(o.cluster, o.namespace, o.name) for o in get_sync(store, *key)]

    assert found("cluster-2", GROUP, RESOURCE, "kube-system", "w-3") == [("cluster-2", "kube-system", "w-3")]
    assert found("", "", "pods", "default", "lonely") == [("cluster-1", "default", "lonely")]
    assert found("cluster-1", GROUP, RESOURCE, "default", "nope") == []
    assert found("", "", "pods", "default", "w-dead") == []
    assert found("cluster-1", GROUP, RESOURCE, "default", "w-dead") == []  # a tombstone
    assert found("", GROUP, RESOURCE, "default", "w-1") == [
        ("cluster-1", "default", "w-1"),
        ("cluster-2", "default", "w-1"),
    ]
    assert found("cluster-1", GROUP, RESOURCE, "default", "x'; DROP TABLE resources; --") == []
    with pytest.raises(UnknownCluster, match=r'^cluster "cluster-9" not found$'):
        get_sync(store, "cluster-9", GROUP, RESOURCE, "default", "w-1")


def test_count_objects(store: Store) -> None:
    for pairs, pred in [
        ((), lambda o: True),
        ((("labelSelector", "app=web"),), lambda o: o.labels().get("app") == "web"),
        ((("clusters", "cluster-2"), ("limit", "2")), lambda o: o.cluster == "cluster-2"),
    ]:
        assert asyncio.run(store.count_objects(search(*pairs))) == len(oracle(pred))
    with pytest.raises(UnknownCluster):
        asyncio.run(store.count_objects(search(("clusters", "cluster-9"))))


def test_collection(store: Store) -> None:
    settings = ApiserverSettings(
        collections={"things": ["widgets.example.com", "deployments.apps"], "workloads": []}
    )
    assert [(c.name, c.resource_names) for c in list_collections(settings)] == [
        ("things", ["widgets.example.com", "deployments.apps"]),
        ("workloads", []),
    ]
    s = parse_search([("namespaces", "default")], group="", version="", resource="")
    page = list_sync(store, collection_search(settings, "things", s))
    got = [(i.cluster, i.group, i.kind, i.name) for i in page.items]
    deployments = [(o.cluster, "apps", "Deployment", o.name) for o in DATA if o.resource == "deployments"]
    widgets_ = [(o.cluster, GROUP, "Widget", o.name) for o in LIVE_WIDGETS if o.namespace == "default"]
    assert got == sorted(deployments + widgets_)  # cluster, group, kind (resource), namespace, name
    # keyset paging over a collection walks every member exactly once
    token, seen = "", []
    for _ in range(len(got) + 1):
        pairs = [("namespaces", "default"), ("limit", "3"), *([("continue", token)] if token else [])]
        page = list_sync(
            store,
            collection_search(settings, "things", parse_search(pairs, group="", version="", resource="")),
        )
        seen.extend((i.cluster, i.group, i.kind, i.name) for i in page.items)
        token = token_of(page)
        if not token:
            break
    assert seen == got
    # offset pages (size/offset) of a collection are slices of the whole, in the same order
    for offset in (0, 2, len(got) - 1):
        pairs = [("namespaces", "default"), ("size", "3"), ("offset", str(offset))]
        page = list_sync(
            store,
            collection_search(settings, "things", parse_search(pairs, group="", version="", resource="")),
        )
        assert [(i.cluster, i.group, i.kind, i.name) for i in page.items] == got[offset : offset + 3]
    with pytest.raises(NotFound, match=r'collectionresources\.pedia\.clusterpedia\.io "nope" not found'):
        collection_search(settings, "nope", s)


# ------------------------------------------------------------------- caller permissions (visibility)

VISIBILITY_CASES = [
    ((), lambda o: False),
    ((Grant("cluster-1", GROUP, RESOURCE, everywhere=True),), lambda o: o.cluster == "cluster-1"),
    (
        (Grant("cluster-2", GROUP, RESOURCE, namespaces=("default",)),),
        lambda o: (o.cluster, o.namespace) == ("cluster-2", "default"),
    ),
    (
        (
            Grant("cluster-1", GROUP, RESOURCE, names=("w-1",)),
            Grant("cluster-2", GROUP, RESOURCE, named_in=(("kube-system", "w-2"), ("default", "w-3"))),
            Grant("cluster-2", "apps", "deployments", everywhere=True),  # another resource: no widgets
        ),
        lambda o: (
            (o.cluster == "cluster-1" and o.name == "w-1")
            or (o.cluster, o.namespace, o.name)
            in {("cluster-2", "kube-system", "w-2"), ("cluster-2", "default", "w-3")}
        ),
    ),
]


@pytest.mark.parametrize(("grants", "pred"), VISIBILITY_CASES)
def test_visibility_is_part_of_the_query(
    store: Store, grants: tuple[Grant, ...], pred: Callable[[Obj], bool]
) -> None:
    """Only what some grant allows, and paging and counts over exactly that (no filtering after
    paging: pages stay full, remainingItemCount is the allowed count)."""
    want = oracle(pred)
    assert keys(list_sync(store, dataclasses.replace(search(), visibility=grants))) == want
    seen: list[tuple[str, str, str]] = []
    token = ""
    for _ in range(len(want) + 1):
        pairs = [("limit", "2"), ("withRemainingCount", "true"), *([("continue", token)] if token else [])]
        page = list_sync(store, dataclasses.replace(search(*pairs), visibility=grants))
        assert len(page.items) == min(2, len(want) - len(seen))
        seen.extend(keys(page))
        token = token_of(page)
        if not token:
            break
        assert page.remaining_item_count == len(want) - len(seen)
    assert seen == want
    assert asyncio.run(store.count_objects(dataclasses.replace(search(), visibility=grants))) == len(want)


# ------------------------------------------------------------------- paging under concurrent writes

PAGING_GROUP, PAGING_RESOURCE = "paging.example.com", "items"


def _item(group: str, cluster: str, ns: str, name: str, rv: int) -> Event:
    return Obj(cluster, group, PAGING_RESOURCE, "Item", ns, name, f"{cluster}/{ns}/{name}", rv, T0).event()


@pytest.mark.parametrize("orderby", ["", "name desc", "created_at"])
def test_keyset_paging_is_exactly_once_under_concurrent_writes(store: Store, orderby: str) -> None:
    rng = random.Random(4)  # fixed seed: the same interleaving every run
    print(f"random seed 4, orderby {orderby!r}")
    group = f"{PAGING_GROUP}-{len(orderby)}"
    initial = [(CLUSTERS[i % 2], ("a", "m", "z")[i % 3], f"obj-{i:03d}") for i in range(150)]
    write(store, [_item(group, c, ns, n, i + 1) for i, (c, ns, n) in enumerate(initial)])
    rv = 1000
    added: list[tuple[str, str, str]] = []
    seen: list[tuple[str, str, str]] = []
    token = ""
    pages = 0
    while pages < 100:
        pairs = [
            ("limit", "7"),
            *([("orderby", orderby)] if orderby else []),
            *([("continue", token)] if token else []),
        ]
        page = list_sync(store, search(*pairs, group=group, resource=PAGING_RESOURCE))
        pages += 1
        assert len(page.items) <= 7
        seen.extend((i.cluster, i.namespace, i.name) for i in page.items)
        token = token_of(page)
        if not token:
            break
        # Between pages, other writers insert new objects (sorting before and after the cursor),
        # update existing ones in place, and delete some of the new ones.
        events: list[Event] = []
        for _ in range(3):
            rv += 1
            key = (rng.choice(CLUSTERS), rng.choice(("a", "m", "z", "b")), f"new-{rv}-{rng.choice('aoz')}")
            added.append(key)
            events.append(_item(group, *key, rv))
        for c, ns, n in rng.sample(initial, 4):
            rv += 1
            events.append(_item(group, c, ns, n, rv))
        if added and rng.random() < 0.5:
            c, ns, n = added.pop(rng.randrange(len(added)))
            rv += 1
            events = [e for e in events if (e.cluster, e.namespace, e.name) != (c, ns, n)]
            events.append(Delete(c, group, "v1", PAGING_RESOURCE, ns, n, rv))
        write(store, events)
    assert not token, "paging did not finish"
    assert len(seen) == len(set(seen)), "an object was returned twice"
    assert set(initial) <= set(seen), "an object present throughout was skipped"
    still = list_sync(store, search(group=group, resource=PAGING_RESOURCE)).items
    assert {o.cluster for o in still} == set(CLUSTERS)
    assert {(o.cluster, o.namespace, o.name) for o in still} == set(initial) | set(added)
