"""member-rbac in the API tier, over the memory store: lists, gets, collections and counts show a
caller exactly what the members' stored RBAC lets them read (the end-to-end version, against real
members' own decisions, is tests/e2e/test_caller_permissions.py)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from apiserver.app import build_app
from apiserver.auth import UserInfo
from apiserver.identities import IdentityMapping, PediaClusterIdentities
from apiserver.pediaclusters import PediaClusterDirectory
from apiserver.permissions import User
from apiserver.visibility import narrowed
from common.settings import ApiserverSettings, Settings
from common.storage import Store, open_store
from common.storage.query import Grant, Search, SetFilter
from common.types import RBAC_GROUP
from tests.apiserver.hostlist import Host
from tests.apiserver.storefill import add_objects, add_type

R = "/apis/clusterpedia.io/v1beta1/resources"


class AsUser:
    """Stands in for the auth middleware: the identity comes from test headers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            name = headers.get(b"x-test-user", b"system:anonymous").decode()
            groups = tuple(g for g in headers.get(b"x-test-groups", b"").decode().split(",") if g)
            scope.setdefault("state", {})["user"] = UserInfo(name, (*groups, "system:authenticated"))
        await self.app(scope, receive, send)


def rbac(store: Store, cluster: str, kind: str, resource: str, objects: list[dict[str, Any]]) -> None:
    add_objects(
        store,
        cluster,
        RBAC_GROUP,
        "v1",
        resource,
        [{"apiVersion": f"{RBAC_GROUP}/v1", "kind": kind, **o} for o in objects],
    )


def ref(kind: str, name: str) -> dict[str, str]:
    return {"apiGroup": RBAC_GROUP, "kind": kind, "name": name}


@pytest.fixture(scope="module")
def app() -> Any:
    store = open_store("memory://permissions-app")
    for cluster in ("c1", "c2"):
        add_type(store, cluster, "", "v1", "configmaps", "ConfigMap")
        add_type(store, cluster, "", "v1", "namespaces", "Namespace", namespaced=False)
        add_type(store, cluster, "apps", "v1", "deployments", "Deployment")
        add_objects(
            store,
            cluster,
            "",
            "v1",
            "configmaps",
            [
                {"kind": "ConfigMap", "metadata": {"name": f"cm-{i}", "namespace": ns}}
                for ns in ("a", "b")
                for i in range(3)
            ],
        )
        add_objects(
            store, cluster, "", "v1", "namespaces", [{"kind": "Namespace", "metadata": {"name": "a"}}]
        )
        add_objects(
            store,
            cluster,
            "apps",
            "v1",
            "deployments",
            [{"kind": "Deployment", "metadata": {"name": "web", "namespace": "a"}}],
        )
        rbac(
            store,
            cluster,
            "ClusterRole",
            "clusterroles",
            [
                {
                    "metadata": {"name": "read-all"},
                    "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["get", "list"]}],
                },
                {
                    "metadata": {"name": "cm-1"},
                    "rules": [
                        {
                            "apiGroups": [""],
                            "resources": ["configmaps"],
                            "resourceNames": ["cm-1"],
                            "verbs": ["get"],
                        }
                    ],
                },
            ],
        )
    # c1: dev reads namespace a (every resource); c2: ops read everything, dev reads cm-1 in b
    rbac(
        store,
        "c1",
        "RoleBinding",
        "rolebindings",
        [
            {
                "metadata": {"name": "dev-a", "namespace": "a"},
                "roleRef": ref("ClusterRole", "read-all"),
                "subjects": [{"kind": "User", "name": "dev"}],
            },
        ],
    )
    rbac(
        store,
        "c2",
        "ClusterRoleBinding",
        "clusterrolebindings",
        [
            {
                "metadata": {"name": "ops"},
                "roleRef": ref("ClusterRole", "read-all"),
                "subjects": [{"kind": "Group", "name": "ops"}],
            },
        ],
    )
    rbac(
        store,
        "c2",
        "RoleBinding",
        "rolebindings",
        [
            {
                "metadata": {"name": "dev-cm-1", "namespace": "b"},
                "roleRef": ref("ClusterRole", "cm-1"),
                "subjects": [{"kind": "User", "name": "dev"}],
            },
        ],
    )
    settings = Settings(
        storage="memory://permissions-app", apiserver=ApiserverSettings(authorization_mode="member-rbac")
    )
    return AsUser(build_app(settings, store))


def get(app: Any, path: str, user: str = "", groups: str = "") -> tuple[int, Any]:
    async def go() -> httpx.Response:
        headers = {"x-test-user": user, "x-test-groups": groups} if user else {}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://t") as c:
            return await c.get(path, headers=headers)

    resp = asyncio.run(go())
    return resp.status_code, resp.json()


def names(body: Any) -> list[tuple[str, str, str]]:
    return [
        (
            i["metadata"]["annotations"]["shadow.clusterpedia.io/cluster-name"],
            i["metadata"].get("namespace", ""),
            i["metadata"]["name"],
        )
        for i in body["items"]
    ]


def test_lists_show_what_each_member_allows(app: Any) -> None:
    code, body = get(app, f"{R}/api/v1/configmaps", "dev")
    assert code == 200
    assert names(body) == [("c1", "a", f"cm-{i}") for i in range(3)] + [("c2", "b", "cm-1")]
    code, body = get(app, f"{R}/api/v1/configmaps", "nobody")
    assert (code, body["items"]) == (200, [])
    code, body = get(app, f"{R}/api/v1/configmaps?limit=2&withRemainingCount=true", "someone", "ops")
    assert [c for c, _, _ in names(body)] == ["c2", "c2"] and body["metadata"]["remainingItemCount"] == 4
    # cluster-scoped objects need cluster-wide rights: dev's RoleBinding in c1 gives no namespaces
    code, body = get(app, f"{R}/api/v1/namespaces", "dev")
    assert (code, body["items"]) == (200, [])
    code, body = get(app, f"{R}/api/v1/namespaces", "someone", "ops")
    assert names(body) == [("c2", "", "a")]


def watch(app: Any, path: str, user: str, groups: str = "") -> list[dict[str, Any]]:
    """The events of a watch that ends after a second (what it catches up on from its position)."""

    async def go() -> httpx.Response:
        headers = {"x-test-user": user, "x-test-groups": groups}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://t") as c:
            return await c.get(path, headers=headers)

    resp = asyncio.run(go())
    assert resp.status_code == 200, resp.text
    return [json.loads(line) for line in resp.text.splitlines() if line]


def test_watches_show_what_each_member_allows(app: Any) -> None:
    store = open_store("memory://permissions-app")
    for cluster in ("c1", "c2"):  # a resource of this test alone: the others' lists stay as they are
        add_type(store, cluster, "", "v1", "services", "Service")
    deadline = time.monotonic() + 10  # the API's catalog of resource types refreshes itself
    while (listed := get(app, f"{R}/api/v1/services", "dev"))[0] != 200:
        assert time.monotonic() < deadline, listed
        time.sleep(0.1)
    at = listed[1]["metadata"]["resourceVersion"]
    for cluster in ("c1", "c2"):
        objects = [
            {"kind": "Service", "metadata": {"name": name, "namespace": ns}}
            for ns in ("a", "b")
            for name in ("s1", "s2")
        ]
        add_objects(store, cluster, "", "v1", "services", objects)

    def seen(user: str, groups: str = "", query: str = f"resourceVersion={at}&") -> list[tuple[str, ...]]:
        path = f"{R}/api/v1/services?watch=1&{query}timeoutSeconds=1"
        return sorted(
            (
                e["type"],
                e["object"]["metadata"]["annotations"]["shadow.clusterpedia.io/cluster-name"],
                e["object"]["metadata"]["namespace"],
                e["object"]["metadata"]["name"],
            )
            for e in watch(app, path, user, groups)
        )

    # dev reads namespace a of c1 and one configmap of c2; ops everything of c2: as in lists
    assert seen("dev") == [("ADDED", "c1", "a", "s1"), ("ADDED", "c1", "a", "s2")]
    assert seen("someone", "ops") == [("ADDED", "c2", ns, n) for ns in ("a", "b") for n in ("s1", "s2")]
    assert seen("nobody") == []
    # a watch with the current state first shows what the list shows
    assert seen("dev", query="") == [("ADDED", "c1", "a", "s1"), ("ADDED", "c1", "a", "s2")]


def test_gets_answer_403_like_the_member(app: Any) -> None:
    code, body = get(app, f"{R}/clusters/c1/api/v1/namespaces/b/configmaps/cm-0", "dev")
    assert code == 403 and body["reason"] == "Forbidden"
    assert body["message"] == (
        'configmaps "cm-0" is forbidden: User "dev" cannot get resource "configmaps" in API group ""'
        ' in the namespace "b"'
    )
    assert get(app, f"{R}/clusters/c1/api/v1/namespaces/a/configmaps/cm-0", "dev")[0] == 200
    assert get(app, f"{R}/clusters/c1/api/v1/namespaces/a/configmaps/missing", "dev")[0] == 404
    # without a cluster: cm-1 in b is readable in c2 only, so it is found there (not a 400 "several")
    code, body = get(app, f"{R}/api/v1/namespaces/b/configmaps/cm-1", "dev")
    assert code == 200 and body["metadata"]["annotations"]["shadow.clusterpedia.io/cluster-name"] == "c2"
    assert get(app, f"{R}/api/v1/namespaces/b/configmaps/cm-2", "dev")[0] == 403
    assert get(app, f"{R}/clusters/c2/api/v1/namespaces/b/configmaps/cm-1", "dev")[0] == 200
    assert get(app, f"{R}/clusters/c1/api/v1/namespaces/b/configmaps/cm-1", "dev")[0] == 403


def test_collections_are_filtered_per_member_resource(app: Any) -> None:
    code, body = get(app, "/apis/pedia.clusterpedia.io/v1alpha1/collectionresources/workloads", "dev")
    assert code == 200 and names(body) == [("c1", "a", "web")]


def test_rbac_objects_stay_out_of_discovery(app: Any) -> None:
    code, body = get(app, f"{R}/apis", "someone", "ops")
    assert code == 200 and RBAC_GROUP not in [g["name"] for g in body["groups"]]


def mapped_app(items: list[dict[str, Any]] | None) -> Any:
    store = open_store("memory://permissions-app")  # the store the first fixture filled
    settings = Settings(
        storage="memory://permissions-app", apiserver=ApiserverSettings(authorization_mode="member-rbac")
    )
    identities = PediaClusterIdentities(PediaClusterDirectory(Host(items)))
    return AsUser(build_app(settings, store, identities=identities))


def test_identity_mappings_per_cluster(app: Any) -> None:
    """c2 knows people with an "corp:" prefix: the host's "dev" is "corp:dev" there (so dev's c2
    binding no longer applies), system groups stay; a malformed mapping shows nothing; until the
    PediaClusters were read once, nothing either."""
    prefixed = mapped_app(
        [
            {
                "metadata": {"name": "c2"},
                "spec": {"identity": {"usernamePrefix": "corp:", "groupPrefix": "corp:"}},
            }
        ]
    )
    code, body = get(prefixed, f"{R}/api/v1/configmaps", "dev")
    assert [c for c, _, _ in names(body)] == ["c1"] * 3
    code, body = get(prefixed, f"{R}/api/v1/configmaps", "someone", "ops")
    assert names(body) == []  # the group is corp:ops in c2
    extra = mapped_app([{"metadata": {"name": "c2"}, "spec": {"identity": {"extraGroups": ["ops"]}}}])
    code, body = get(extra, f"{R}/api/v1/configmaps", "anyone")
    assert {c for c, _, _ in names(body)} == {"c2"} and len(names(body)) == 6
    broken = mapped_app([{"metadata": {"name": "c1"}, "spec": {"identity": {"usernamePrefix": 7}}}])
    code, body = get(broken, f"{R}/api/v1/configmaps", "dev")
    assert names(body) == [("c2", "b", "cm-1")]
    unknown = mapped_app(None)
    code, body = get(unknown, f"{R}/api/v1/configmaps", "dev")
    assert (code, body["items"]) == (200, [])


def test_identity_mapping_keeps_system_names() -> None:
    m = IdentityMapping(usernamePrefix="oidc:", groupPrefix="oidc:", extraGroups=["x"])
    user = m.apply(User("alice", frozenset({"dev", "system:authenticated"})))
    assert user == User("oidc:alice", frozenset({"oidc:dev", "system:authenticated", "x"}))
    sa = m.apply(User("system:serviceaccount:ns:sa", frozenset({"system:serviceaccounts"})))
    assert sa.name == "system:serviceaccount:ns:sa" and sa.groups == frozenset(
        {"system:serviceaccounts", "x"}
    )


def test_narrowed_conditions_keep_the_same_rows(app: Any) -> None:
    """The API tier narrows a caller's grants to the search's clusters and namespaces."""
    assert names(get(app, f"{R}/clusters/c2/api/v1/namespaces/b/configmaps", "dev")[1]) == [
        ("c2", "b", "cm-1")
    ]
    assert names(get(app, f"{R}/clusters/c1/api/v1/namespaces/b/configmaps", "dev")[1]) == []
    body = get(app, f"{R}/api/v1/namespaces/a/configmaps?clusters=c1", "dev")[1]
    assert names(body) == [("c1", "a", f"cm-{i}") for i in range(3)]
    body = get(app, f"{R}/api/v1/configmaps?namespaces=b", "dev")[1]
    assert names(body) == [("c2", "b", "cm-1")]
    grants = (
        Grant("c1", "", "configmaps", namespaces=("a", "b"), named_in=(("b", "x"), ("c", "y"))),
        Grant("c2", "", "configmaps", everywhere=True),
        Grant("c3", "", "configmaps", namespaces=("c",)),
    )
    search = Search(group="", resource="configmaps", namespaces=SetFilter(include=("b",)))
    assert narrowed(grants, search) == (
        Grant("c1", "", "configmaps", namespaces=("b",), named_in=(("b", "x"),)),
        Grant("c2", "", "configmaps", everywhere=True),
    )
    assert narrowed(grants, Search(group="", resource="configmaps", single_cluster="c3")) == (grants[2],)


def test_rbac_objects_that_do_not_decode_grant_nothing_and_break_nothing(app: Any) -> None:
    """A member's RBAC object is data: one that is not RBAC-shaped (a hostile or broken member) is
    skipped, the others still decide, and no request fails."""
    store = open_store("memory://permissions-app")
    rbac(
        store, "c1", "ClusterRole", "clusterroles", [{"metadata": {"name": "broken"}, "rules": "everything"}]
    )
    rbac(
        store,
        "c1",
        "ClusterRoleBinding",
        "clusterrolebindings",
        [{"metadata": {"name": "b"}, "roleRef": ref("ClusterRole", "broken"), "subjects": "nobody"}],
    )
    fresh = build_app(
        Settings(
            storage="memory://permissions-app", apiserver=ApiserverSettings(authorization_mode="member-rbac")
        ),
        store,
    )
    code, body = get(AsUser(fresh), f"{R}/api/v1/configmaps", "dev")
    assert code == 200 and names(body) == [("c1", "a", f"cm-{i}") for i in range(3)] + [("c2", "b", "cm-1")]


def test_group_counts_count_only_what_each_member_allows(app: Any) -> None:
    """Group-by counts apply the caller's grants in the store's query: never more than the list."""
    path = f"{R}/api/v1/configmaps?groupBy=cluster,namespace"

    def counted(user: str, groups: str = "") -> list[tuple[str, str, int]]:
        code, body = get(app, path, user, groups)
        assert code == 200, body
        return [(i["group"]["cluster"], i["group"]["namespace"], i["count"]) for i in body["items"]]

    assert counted("dev") == [("c1", "a", 3), ("c2", "b", 1)]
    assert counted("someone", "ops") == [("c2", "a", 3), ("c2", "b", 3)]
    assert counted("nobody") == []
    code, body = get(app, f"{R}/clusters/c1/api/v1/configmaps?groupBy=namespace", "someone", "ops")
    assert (code, body["items"]) == (200, [])
