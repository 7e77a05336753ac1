"""The HTTP surface of the API tier over every storage backend (SQLite, PostgreSQL, MariaDB, memory):
discovery, lists, tables, gets, errors.

Requests go through the ASGI app in-process (httpx's ASGI transport); the store is filled with the
writer's own upsert statements. kubectl's own behaviour on top of this is covered in tests/e2e.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from apiserver.app import build_app
from apiserver.metrics import request_kind
from common.settings import ApiserverSettings, Settings
from common.storage import Store
from common.storage.revisions import stamp
from common.storage.sql.store import SqlStore
from common.types import MEMBER_RV_ANNOTATION
from tests.apiserver.storefill import add_objects, add_type, stored_bytes

P = "/apis/clusterpedia.io/v1beta1/resources"
TABLE = (
    "application/json;as=Table;v=v1;g=meta.k8s.io,"
    "application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
)
AGG_V2 = (
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"
)
AGG_V2BETA1 = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"

HOST_ONLY = ApiserverSettings(authorization_mode="host-only")
"""These tests read everything; member-rbac is tested in tests/apiserver/test_app_permissions.py."""


def deployment(name: str, ns: str, replicas: int = 1, rv: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": ns,
            "resourceVersion": str(rv),
            "creationTimestamp": "2024-01-01T00:00:00Z",
            "labels": {"app": name},
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"spec": {"containers": [{"name": name, "image": f"{name}:1"}]}},
        },
        "status": {"readyReplicas": replicas, "updatedReplicas": replicas, "availableReplicas": replicas},
    }


WIDGET_COLUMNS = json.dumps(
    [
        {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]
).encode()


@pytest.fixture(scope="module")
def store(backend: Store) -> Store:
    """The same store contents on every backend (the ``backend`` fixture)."""
    for cluster in ("cluster-1", "cluster-2"):
        add_type(backend, cluster, "apps", "v1", "deployments", "Deployment", short_names=["deploy"])
        add_type(backend, cluster, "", "v1", "namespaces", "Namespace", namespaced=False, short_names=["ns"])
    add_type(backend, "cluster-1", "", "v1", "pods", "Pod", short_names=["po"])
    add_objects(
        backend, "cluster-1", "apps", "v1", "deployments", [deployment("coredns", "kube-system", 2, 10)]
    )
    add_objects(
        backend,
        "cluster-2",
        "apps",
        "v1",
        "deployments",
        [deployment("coredns", "kube-system", 2, 11), deployment("web", "default", 1, 12)],
    )
    for cluster in ("cluster-1", "cluster-2"):
        add_objects(
            backend,
            cluster,
            "",
            "v1",
            "namespaces",
            [
                {
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {"name": n},
                    "status": {"phase": "Active"},
                }
                for n in ("default", "kube-system")
            ],
        )
    # the same CRD synced in two versions: cluster-1 serves v1beta1, cluster-2 v1
    add_type(
        backend, "cluster-1", "example.com", "v1beta1", "widgets", "Widget", printer_columns=WIDGET_COLUMNS
    )
    add_type(backend, "cluster-2", "example.com", "v1", "widgets", "Widget", printer_columns=WIDGET_COLUMNS)
    widget = {"kind": "Widget", "metadata": {"name": "w", "namespace": "default"}, "spec": {"size": 3}}
    add_objects(
        backend,
        "cluster-1",
        "example.com",
        "v1beta1",
        "widgets",
        [{**widget, "apiVersion": "example.com/v1beta1"}],
    )
    add_objects(
        backend, "cluster-2", "example.com", "v1", "widgets", [{**widget, "apiVersion": "example.com/v1"}]
    )
    return backend


@pytest.fixture(scope="module")
def app(store: Store, backend_url: str) -> Any:
    return build_app(Settings(storage=backend_url, apiserver=HOST_ONLY), store)


def call(app: Any, path: str, accept: str = "", method: str = "GET") -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as client:
            headers = {"accept": accept} if accept else {}
            return await client.request(method, path, headers=headers)

    return asyncio.run(go())


def status_of(resp: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = resp.json()
    assert body["kind"] == "Status" and body["status"] == "Failure"
    assert body["code"] == resp.status_code
    return body


def test_discovery_legacy_and_aggregated(app: Any) -> None:
    r = call(app, P + "/api")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.json()["versions"] == ["v1"]
    r = call(app, P + "/apis", AGG_V2)
    assert r.headers["content-type"] == "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    assert [i["metadata"]["name"] for i in r.json()["items"]] == ["apps", "example.com"]
    r = call(app, P + "/api", AGG_V2BETA1)
    assert r.json()["apiVersion"] == "apidiscovery.k8s.io/v2beta1"
    core = {x["resource"] for x in r.json()["items"][0]["versions"][0]["resources"]}
    assert core == {"namespaces", "pods"}
    r = call(app, P + "/clusters/cluster-2/api", AGG_V2BETA1)
    assert {x["resource"] for x in r.json()["items"][0]["versions"][0]["resources"]} == {"namespaces"}
    r = call(app, P + "/apis/example.com")
    assert r.json()["preferredVersion"]["version"] == "v1"
    r = call(app, P + "/clusters/cluster-1/apis/example.com/v1beta1")
    assert [x["name"] for x in r.json()["resources"]] == ["widgets"]
    nf = call(app, P + "/clusters/cluster-9/api")
    assert nf.status_code == 404 and 'cluster "cluster-9" not found' in status_of(nf)["message"]


def test_json_list_splices_stored_bytes(app: Any, store: Store) -> None:
    r = call(app, P + "/apis/apps/v1/deployments")
    assert r.status_code == 200
    body = r.json()
    assert body["kind"] == "DeploymentList" and body["apiVersion"] == "apps/v1"
    assert body["metadata"]["resourceVersion"]
    assert [
        (i["metadata"]["annotations"]["shadow.clusterpedia.io/cluster-name"], i["metadata"]["name"])
        for i in body["items"]
    ] == [
        ("cluster-1", "coredns"),
        ("cluster-2", "web"),
        ("cluster-2", "coredns"),
    ]
    # each item is the stored JSON, byte for byte (PostgreSQL's JSONB keeps its own normal form)
    # (with its store revision spliced into metadata.resourceVersion)
    revision = int(body["items"][1]["metadata"]["resourceVersion"])
    web = stamp(stored_bytes("cluster-2", deployment("web", "default", 1, 12)), revision)
    if store.name != "postgresql":
        assert web in r.content
    assert body["items"][1] == json.loads(web)
    assert body["items"][1]["metadata"]["annotations"][MEMBER_RV_ANNOTATION] == "12"


def test_table_has_cluster_column_first(app: Any) -> None:
    r = call(app, P + "/apis/apps/v1/namespaces/kube-system/deployments", TABLE)
    assert r.headers["content-type"] == "application/json;as=Table;v=v1;g=meta.k8s.io"
    table = r.json()
    assert table["kind"] == "Table" and table["apiVersion"] == "meta.k8s.io/v1"
    names = [(c["name"], c["priority"]) for c in table["columnDefinitions"]]
    assert names == [
        ("Cluster", 0),
        ("Name", 0),
        ("Ready", 0),
        ("Up-to-date", 0),
        ("Available", 0),
        ("Age", 0),
        ("Containers", 1),
        ("Images", 1),
        ("Selector", 1),
    ]
    cells = [row["cells"][:5] for row in table["rows"]]
    assert cells == [["cluster-1", "coredns", "2/2", 2, 2], ["cluster-2", "coredns", "2/2", 2, 2]]
    obj = table["rows"][0]["object"]
    assert obj["kind"] == "PartialObjectMetadata" and obj["metadata"]["namespace"] == "kube-system"
    none = call(app, P + "/apis/apps/v1/deployments?includeObject=None", TABLE).json()
    assert all("object" not in row for row in none["rows"])
    full = call(app, P + "/apis/apps/v1/deployments?includeObject=Object", TABLE).json()
    assert full["rows"][0]["object"]["kind"] == "Deployment"
    beta = call(app, P + "/apis/apps/v1/deployments", "application/json;as=Table;v=v1beta1;g=meta.k8s.io")
    assert beta.json()["apiVersion"] == "meta.k8s.io/v1beta1"


def test_search_conditions_reach_the_store(app: Any) -> None:
    sel = "search.clusterpedia.io/clusters%20in%20(cluster-2),search.clusterpedia.io/orderby%3Dname_desc"
    r = call(app, P + f"/apis/apps/v1/deployments?labelSelector={sel}", TABLE)
    assert [row["cells"][:2] for row in r.json()["rows"]] == [["cluster-2", "web"], ["cluster-2", "coredns"]]
    r = call(app, P + "/clusters/cluster-1/apis/apps/v1/deployments")
    assert [i["metadata"]["name"] for i in r.json()["items"]] == ["coredns"]
    page = call(app, P + "/apis/apps/v1/deployments?limit=2").json()
    assert len(page["items"]) == 2 and page["metadata"]["continue"]
    rest = call(app, P + f"/apis/apps/v1/deployments?limit=2&continue={page['metadata']['continue']}").json()
    assert len(rest["items"]) == 1 and "continue" not in rest["metadata"]


def test_only_metadata(app: Any) -> None:
    body = call(app, P + "/apis/apps/v1/namespaces/default/deployments?onlyMetadata=true").json()
    assert body["kind"] == "PartialObjectMetadataList" and body["apiVersion"] == "meta.k8s.io/v1"
    (item,) = body["items"]
    assert item["kind"] == "PartialObjectMetadata" and item["metadata"]["name"] == "web"
    assert "spec" not in item


@pytest.mark.parametrize("paging", ["limit=2", "size=2&withContinue=true"])
def test_continue_token_is_bound_to_its_list(app: Any, paging: str) -> None:
    """A token is bound to its list (resource, cluster path, namespace), as kube-apiserver binds a
    continue key to the list's prefix; the other conditions may change between pages."""
    token = call(app, P + f"/apis/apps/v1/deployments?{paging}").json()["metadata"]["continue"]
    for other in (
        P + "/api/v1/pods",
        P + "/clusters/cluster-1/apis/apps/v1/deployments",
        P + "/apis/apps/v1/namespaces/default/deployments",
    ):
        r = call(app, f"{other}?{paging}&continue={token}")
        assert r.status_code == 400 and "issued for a different list" in status_of(r)["message"]
    r = call(app, P + f"/apis/apps/v1/deployments?{paging}&clusters=cluster-2&continue={token}")
    assert r.status_code == 200


def test_get_one_object(app: Any) -> None:
    r = call(app, P + "/clusters/cluster-2/apis/apps/v1/namespaces/default/deployments/web")
    assert r.status_code == 200
    revision = int(r.json()["metadata"]["resourceVersion"])
    assert r.json() == json.loads(
        stamp(stored_bytes("cluster-2", deployment("web", "default", 1, 12)), revision)
    )
    r = call(app, P + "/apis/apps/v1/namespaces/default/deployments/web", TABLE)
    assert r.json()["rows"][0]["cells"][:2] == ["cluster-2", "web"]
    ambiguous = call(app, P + "/apis/apps/v1/namespaces/kube-system/deployments/coredns")
    assert ambiguous.status_code == 400
    assert status_of(ambiguous)["message"] == (
        'deployments.apps "coredns" exists in several clusters (cluster-1, cluster-2): name the cluster,'
        " e.g. kubectl --cluster cluster-1 get deployments.apps coredns"
    )
    missing = call(app, P + "/clusters/cluster-1/apis/apps/v1/namespaces/default/deployments/web")
    assert missing.status_code == 404 and status_of(missing)["reason"] == "NotFound"
    assert status_of(missing)["message"] == 'deployments.apps "web" not found'
    hostile = call(app, P + "/clusters/cluster-1/apis/apps/v1/namespaces/default/deployments/x';%20DROP")
    assert (
        hostile.status_code == 404
        and status_of(hostile)["message"] == 'deployments.apps "x\'; DROP" not found'
    )
    ns = call(app, P + "/clusters/cluster-1/api/v1/namespaces/default")
    assert ns.json()["kind"] == "Namespace"
    partial = call(
        app,
        P + "/clusters/cluster-1/api/v1/namespaces/default",
        "application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io",
    )
    assert partial.json()["kind"] == "PartialObjectMetadata"


def test_crd_served_in_every_synced_version(app: Any) -> None:
    v1 = call(app, P + "/apis/example.com/v1/widgets").json()
    assert v1["kind"] == "WidgetList"
    assert [i["apiVersion"] for i in v1["items"]] == ["example.com/v1", "example.com/v1"]
    v1beta1 = call(app, P + "/apis/example.com/v1beta1/namespaces/default/widgets", TABLE).json()
    assert [c["name"] for c in v1beta1["columnDefinitions"]] == ["Cluster", "Name", "Size", "Age"]
    assert [row["cells"][:3] for row in v1beta1["rows"]] == [["cluster-1", "w", 3], ["cluster-2", "w", 3]]
    # one cluster's API serves only the version synced from it
    assert (
        call(app, P + "/clusters/cluster-2/apis/example.com/v1beta1/namespaces/default/widgets/w").status_code
        == 404
    )
    one = call(app, P + "/clusters/cluster-2/apis/example.com/v1/namespaces/default/widgets/w").json()
    assert one["apiVersion"] == "example.com/v1" and one["spec"] == {"size": 3}


@pytest.mark.parametrize(
    ("method", "path", "accept", "code", "reason"),
    [
        # writes need a cluster; with one, this app (no host to reach members) refuses them
        ("POST", P + "/apis/apps/v1/namespaces/default/deployments", "", 400, "BadRequest"),
        (
            "DELETE",
            P + "/clusters/cluster-2/apis/apps/v1/namespaces/default/deployments/web",
            "",
            405,
            "MethodNotAllowed",
        ),
        ("PUT", "/apis/clusterpedia.io/v1beta1", "", 405, "MethodNotAllowed"),
        (
            "GET",
            P + "/clusters/cluster-2/apis/apps/v1/namespaces/default/deployments/web?watch=1",
            "",
            405,
            "MethodNotAllowed",
        ),
        ("GET", P + "/apis/apps/v1/deployments?watch=true&resourceVersion=abc", "", 400, "BadRequest"),
        ("GET", P + "/apis/apps/v1/deployments?watch=true&sendInitialEvents=true", "", 400, "BadRequest"),
        (
            "GET",
            P
            + "/apis/apps/v1/deployments?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan",
            "",
            400,
            "BadRequest",
        ),
        ("GET", P + "/apis/apps/v1/deployments?watch=true&resourceVersionMatch=Exact", "", 400, "BadRequest"),
        ("GET", P + "/apis/apps/v1/deployments?watch=true&timeoutSeconds=soon", "", 400, "BadRequest"),
        ("GET", P + "/apis/apps/v1/deployments?watch=true&labelSelector=a%20in%20(", "", 400, "BadRequest"),
        ("GET", P, "", 405, "MethodNotAllowed"),
        ("GET", P + "/apis/apps/v1/statefulsets", "", 404, "NotFound"),
        ("GET", P + "/apis/apps/v2/deployments", "", 404, "NotFound"),
        ("GET", P + "/api/v1/namespaces/default/namespaces", "", 404, "NotFound"),
        ("GET", P + "/apis/apps/v1/namespaces/default/deployments/web/scale", "", 400, "BadRequest"),
        (
            "GET",
            P + "/clusters/cluster-2/apis/apps/v1/namespaces/default/deployments/web/scale",
            "",
            404,
            "NotFound",
        ),
        ("GET", P + "/apis//apps", "", 404, "NotFound"),
        ("GET", P + "/bogus", "", 404, "NotFound"),
        ("GET", "/apis/other.io/v1", "", 404, "NotFound"),
        ("GET", "/nothing/here", "", 404, "NotFound"),
        ("GET", P + "/apis/apps/v1/deployments?labelSelector=a%20in%20(", "", 400, "BadRequest"),
        ("GET", P + "/apis/apps/v1/deployments?orderby=uid", "", 400, "BadRequest"),
        (
            "GET",
            P + "/apis/apps/v1/deployments?orderby=name%3Bdrop%20table%20resources",
            "",
            400,
            "BadRequest",
        ),
        ("GET", P + "/apis/apps/v1/deployments?limit=-1", "", 400, "BadRequest"),
        ("GET", P + "/apis/apps/v1/deployments?continue=not-a-token", "", 400, "BadRequest"),
        ("GET", P + "/apis/apps/v1/deployments?includeObject=Everything", TABLE, 400, "BadRequest"),
        ("GET", P + "/apis/apps/v1/deployments", "application/yaml", 406, "NotAcceptable"),
        (
            "GET",
            P + "/apis/apps/v1/deployments",
            "application/json;as=Table;v=v2;g=meta.k8s.io",
            406,
            "NotAcceptable",
        ),
        ("GET", P + "/apis/apps/v1/deployments?clusters=nope", "", 404, "NotFound"),
    ],
)
def test_errors_are_status_objects(
    app: Any, method: str, path: str, accept: str, code: int, reason: str
) -> None:
    r = call(app, path, accept, method)
    assert r.status_code == code, r.text
    body = status_of(r)
    assert body["reason"] == reason and body["message"]


def test_group_documents_and_collections(app: Any) -> None:
    apis = call(app, "/apis").json()
    assert [g["name"] for g in apis["groups"]] == ["clusterpedia.io", "pedia.clusterpedia.io"]
    agg = call(app, "/apis", AGG_V2)
    assert agg.headers["content-type"].endswith(";as=APIGroupDiscoveryList")
    assert [i["metadata"]["name"] for i in agg.json()["items"]] == [g["name"] for g in apis["groups"]]
    kinds = {r["responseKind"]["kind"] for r in agg.json()["items"][1]["versions"][0]["resources"]}
    assert kinds == {"CollectionResource", "Resources"}
    for group, version in (("clusterpedia.io", "v1beta1"), ("pedia.clusterpedia.io", "v1alpha1")):
        doc = call(app, f"/apis/{group}/{version}").json()
        assert {(r["name"], r["kind"]) for r in doc["resources"]} == {
            ("collectionresources", "CollectionResource"),
            ("resources", "Resources"),
        }
        assert call(app, f"/apis/{group}").json()["preferredVersion"]["version"] == version
    listing = call(app, "/apis/pedia.clusterpedia.io/v1alpha1/collectionresources", TABLE).json()
    assert listing["rows"][0]["cells"] == ["workloads", "deployments.apps,daemonsets.apps,statefulsets.apps"]
    workloads = call(app, "/apis/clusterpedia.io/v1beta1/collectionresources/workloads", TABLE).json()
    assert [c["name"] for c in workloads["columnDefinitions"]] == [
        "Cluster",
        "Group",
        "Version",
        "Kind",
        "Namespace",
        "Name",
        "Age",
    ]
    assert [r["cells"][:6] for r in workloads["rows"]] == [
        ["cluster-1", "apps", "v1", "Deployment", "kube-system", "coredns"],
        ["cluster-2", "apps", "v1", "Deployment", "default", "web"],
        ["cluster-2", "apps", "v1", "Deployment", "kube-system", "coredns"],
    ]
    raw = call(
        app, "/apis/pedia.clusterpedia.io/v1alpha1/collectionresources/workloads?namespaces=default"
    ).json()
    assert raw["kind"] == "CollectionResource" and [i["metadata"]["name"] for i in raw["items"]] == ["web"]
    nf = call(app, "/apis/pedia.clusterpedia.io/v1alpha1/collectionresources/nope")
    assert nf.status_code == 404 and status_of(nf)["reason"] == "NotFound"


def test_probes_version_metrics_openapi(app: Any) -> None:
    assert call(app, "/healthz").text == "ok"
    assert call(app, "/readyz").status_code == 200 and call(app, "/livez").status_code == 200
    assert call(app, "/version").json()["gitVersion"].startswith("v")
    assert call(app, P + "/version").json()["gitVersion"].startswith("v")
    metrics = call(app, "/metrics").text
    assert "clusterpedia_apiserver_requests_total" in metrics
    for path in ("/openapi/v2", "/openapi/v3", "/openapi/v3/apis/clusterpedia.io/v1beta1"):
        r = call(app, path)
        assert r.status_code == 404 and status_of(r)["reason"] == "NotFound"
    # the all-clusters view: an empty v2 document (kubectl validates writes with it before sending)
    assert call(app, P + "/openapi/v2").json()["paths"] == {}
    pb = call(app, P + "/openapi/v2", "application/com.github.proto-openapi.spec.v2@v1.0+protobuf")
    assert (pb.status_code, pb.content) == (200, b"")
    index = call(app, P + "/clusters/cluster-2/openapi/v3").json()["paths"]
    assert set(index) == {"api/v1", "apis/apps/v1", "apis/example.com/v1"}
    assert index["api/v1"]["serverRelativeURL"].startswith(P + "/clusters/cluster-2/openapi/v3/api/v1?hash=")
    doc = call(app, P + "/openapi/v3/apis/example.com/v1beta1").json()
    assert doc["paths"]["/apis/example.com/v1beta1/namespaces/{namespace}/widgets"]["get"][
        "x-kubernetes-group-version-kind"
    ] == {"group": "example.com", "version": "v1beta1", "kind": "Widget"}
    assert call(app, P + "/openapi/v3/apis/apps/v9").status_code == 404


def test_metrics_label_requests_by_kind() -> None:
    assert request_kind(P + "/apis/apps/v1") == "discovery"
    assert request_kind(P + "/clusters/c/api/v1/namespaces") == "list"
    assert request_kind(P + "/api/v1/namespaces/x") == "get"
    assert request_kind(P + "/apis/apps/v1/namespaces/a/deployments") == "list"
    assert request_kind(P + "/apis/apps/v1/namespaces/a/deployments/x/status") == "subresource"
    assert request_kind("/apis/pedia.clusterpedia.io/v1alpha1/collectionresources/workloads") == "collection"
    assert request_kind("/readyz") == "probe"


def test_store_down_is_a_503_status(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'missing' / 'store.db'}"  # its directory does not exist
    app = build_app(Settings(storage=url, apiserver=HOST_ONLY), SqlStore(url))
    r = call(app, P + "/api")
    assert r.status_code == 503 and status_of(r)["reason"] == "ServiceUnavailable"
    assert call(app, "/readyz").status_code == 503
    assert call(app, "/livez").status_code == 200
