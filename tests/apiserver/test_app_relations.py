"""Relationship queries through the API tier (memory store): both spellings, errors as Status
objects, watch refused, and member-rbac on the objects a relation walks through (the end-to-end
version against a real member is in tests/e2e/test_kubectl_insight.py)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest

from apiserver.app import build_app
from common.settings import ApiserverSettings, Settings
from common.storage import open_store
from tests.apiserver.storefill import add_objects, add_type
from tests.apiserver.test_app_permissions import AsUser, get, names, rbac, ref

R = "/apis/clusterpedia.io/v1beta1/resources"
C = "/apis/clusterpedia.io/v1beta1/collectionresources"
P = "search.clusterpedia.io/"


def _owned(kind: str, uid: str) -> list[dict[str, Any]]:
    return [{"apiVersion": "apps/v1", "kind": kind, "name": "x", "uid": uid, "controller": True}]


def _meta(name: str, uid: str, ns: str = "a", **extra: Any) -> dict[str, Any]:
    return {"name": name, "uid": uid, **({"namespace": ns} if ns else {}), **extra}


def _role(name: str, ns: str, *resources: str) -> dict[str, Any]:
    rules = [{"apiGroups": ["", "apps"], "resources": list(resources), "verbs": ["list"]}]
    return {"metadata": {"name": name, "namespace": ns} if ns else {"name": name}, "rules": rules}


def _binding(name: str, ns: str, role: str, user: str, *, cluster_role: bool = False) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": ns} if ns else {"name": name},
        "roleRef": ref("ClusterRole" if cluster_role else "Role", role),
        "subjects": [{"kind": "User", "name": user}],
    }


def _fill(url: str) -> Any:
    store = open_store(url)
    c = "c1"
    for group, resource, kind, namespaced in (
        ("apps", "deployments", "Deployment", True),
        ("apps", "replicasets", "ReplicaSet", True),
        ("", "pods", "Pod", True),
        ("", "services", "Service", True),
        ("", "nodes", "Node", False),
        ("", "events", "Event", True),
    ):
        add_type(store, c, group, "v1", resource, kind, namespaced=namespaced)
    add_objects(
        store, c, "apps", "v1", "deployments", [{"kind": "Deployment", "metadata": _meta("web", "d1")}]
    )
    rs = {"kind": "ReplicaSet", "metadata": _meta("web-1", "rs1", ownerReferences=_owned("Deployment", "d1"))}
    add_objects(store, c, "apps", "v1", "replicasets", [rs])
    pod_meta = _meta("web-1-a", "p1", labels={"app": "web"}, ownerReferences=_owned("ReplicaSet", "rs1"))
    pods = [
        {"kind": "Pod", "metadata": pod_meta, "spec": {"nodeName": "n1"}},
        {"kind": "Pod", "metadata": _meta("other", "p2", labels={"app": "db"}), "spec": {}},
    ]
    add_objects(store, c, "", "v1", "pods", pods)
    add_objects(
        store,
        c,
        "",
        "v1",
        "services",
        [{"kind": "Service", "metadata": _meta("web", "s1"), "spec": {"selector": {"app": "web"}}}],
    )
    add_objects(store, c, "", "v1", "nodes", [{"kind": "Node", "metadata": _meta("n1", "n1", ns="")}])
    event = {"kind": "Event", "metadata": _meta("p1.1", "e1"), "involvedObject": {"uid": "p1", "kind": "Pod"}}
    add_objects(store, c, "", "v1", "events", [event])
    # admin lists everything; "no-rs" lists pods and deployments in a, not replicasets; "no-svc"
    # lists pods, not services; "no-pods" lists nodes (cluster-wide), not pods
    rbac(store, c, "ClusterRole", "clusterroles", [_role("all", "", "*"), _role("nodes", "", "nodes")])
    rbac(store, c, "Role", "roles", [_role("pods-deps", "a", "pods", "deployments")])
    rbac(
        store,
        c,
        "ClusterRoleBinding",
        "clusterrolebindings",
        [
            _binding("admin", "", "all", "admin", cluster_role=True),
            _binding("np", "", "nodes", "no-pods", cluster_role=True),
        ],
    )
    rbac(
        store,
        c,
        "RoleBinding",
        "rolebindings",
        [_binding("no-rs", "a", "pods-deps", "no-rs"), _binding("no-svc", "a", "pods-deps", "no-svc")],
    )
    return store


@pytest.fixture(scope="module")
def rbac_app() -> Any:
    store = _fill("memory://relations-app-rbac")
    settings = Settings(
        storage="memory://relations-app-rbac", apiserver=ApiserverSettings(authorization_mode="member-rbac")
    )
    return AsUser(build_app(settings, store))


@pytest.fixture(scope="module")
def app() -> Any:
    store = _fill("memory://relations-app")
    settings = Settings(
        storage="memory://relations-app", apiserver=ApiserverSettings(authorization_mode="host-only")
    )
    return build_app(settings, store)


def label(selector: str) -> str:
    return "labelSelector=" + quote(selector)


def test_both_spellings_give_the_same_answers(app: Any) -> None:
    for path, want in (
        (f"{R}/apis/apps/v1/deployments?relation=owners&ofUID=p1", [("c1", "a", "web")]),
        (
            f"{R}/apis/apps/v1/deployments?{label(f'{P}relation=top-owner,{P}of-uid=p1')}",
            [("c1", "a", "web")],
        ),
        (f"{R}/apis/apps/v1/replicasets?{label(f'{P}relation=owners,{P}of-uid=p1')}", [("c1", "a", "web-1")]),
        (
            f"{R}/clusters/c1/api/v1/namespaces/a/pods?{label(f'{P}relation=selected,{P}of-name=web')}",
            [("c1", "a", "web-1-a")],
        ),
        (f"{R}/clusters/c1/api/v1/nodes?relation=node&ofName=web-1-a&ofNamespace=a", [("c1", "", "n1")]),
        (f"{R}/api/v1/nodes?{label(f'{P}relation=node,{P}of-uid=p1')}", [("c1", "", "n1")]),
        (
            f"{R}/api/v1/namespaces/a/events?{label(f'{P}relation=events,{P}of-uid=p1')}",
            [("c1", "a", "p1.1")],
        ),
        (f"{R}/api/v1/namespaces/a/pods?relation=selected&ofUID=s1&labelSelector=app%3Ddb", []),
        (f"{C}/workloads?relation=owners&ofUID=rs1", [("c1", "a", "web")]),
    ):
        code, body = get(app, path)
        assert code == 200, body
        assert names(body) == want, path


@pytest.mark.parametrize(
    ("query", "status", "message"),
    [
        ("relation=owners&ofUID=p1%27%20OR%201%3D1", 400, "invalid ofUID"),
        ("relation=owners&ofName=web-1-a&ofGR=pods", 400, "exactly one cluster"),
        ("relation=siblings&ofUID=p1", 400, 'unknown relation "siblings"'),
        ("ofUID=p1", 400, "needs relation"),
        ("relation=owners&ofUID=p1&ofName=web", 400, "not both"),
        ("relation=node&ofUID=p1", 400, 'relation "node" lists nodes only'),
        (label(f"{P}relation=owners,{P}of-uid=p1,{P}of-uid=p2"), 400, "given twice"),
        ("relation=owners&ofUID=p1&watch=1", 400, "cannot be watched"),
        ("relation=owners&ofName=x&ofGR=pods&clusters=nowhere", 404, 'cluster "nowhere" not found'),
    ],
)
def test_bad_relations_are_status_errors(app: Any, query: str, status: int, message: str) -> None:
    code, body = get(app, f"{R}/api/v1/pods?{query}")
    assert code == status and body["kind"] == "Status" and body["code"] == status
    assert message in body["message"], body


def test_a_relation_on_a_collection_that_cannot_hold_its_answer_is_400(app: Any) -> None:
    code, body = get(app, f"{C}/workloads?relation=selected&ofUID=s1")
    assert (code, body["kind"]) == (400, "Status") and 'relation "selected" lists pods only' in body[
        "message"
    ]


def test_the_walk_reads_only_what_the_caller_may_list(rbac_app: Any) -> None:
    deployments = f"{R}/apis/apps/v1/deployments?relation=owners&ofUID=p1"
    assert names(get(rbac_app, deployments, "admin")[1]) == [("c1", "a", "web")]
    # no-rs may list the pod and the Deployment, but not the ReplicaSet between them
    assert names(get(rbac_app, f"{R}/apis/apps/v1/deployments", "no-rs")[1]) == [("c1", "a", "web")]
    code, body = get(rbac_app, deployments, "no-rs")
    assert (code, names(body)) == (200, [])
    pods = f"{R}/api/v1/pods?relation=selected&ofUID=s1"
    assert names(get(rbac_app, pods, "admin")[1]) == [("c1", "a", "web-1-a")]
    assert names(get(rbac_app, pods, "no-svc")[1]) == []  # the Service is not theirs to list
    nodes = f"{R}/api/v1/nodes?relation=node&ofUID=p1"
    assert names(get(rbac_app, nodes, "admin")[1]) == [("c1", "", "n1")]
    assert names(get(rbac_app, f"{R}/api/v1/nodes", "no-pods")[1]) == [("c1", "", "n1")]
    assert names(get(rbac_app, nodes, "no-pods")[1]) == []  # the Pod is not theirs to list
