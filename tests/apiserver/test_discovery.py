"""Discovery documents built from what has been synced (pure)."""

from __future__ import annotations

from apiserver.discovery import (
    WRITE_VERBS,
    aggregated,
    api_group,
    api_group_list,
    api_resource_list,
    api_versions,
    find_resource,
    version_priority,
)
from apiserver.openapi import group_version_document, index_document
from common.storage import ServedResource


def rt(
    cluster: str,
    group: str,
    version: str,
    resource: str,
    kind: str,
    namespaced: bool = True,
    short: tuple[str, ...] = (),
) -> ServedResource:
    return ServedResource(
        cluster, group, version, resource, kind, namespaced, short, ("get", "list", "watch"), version, ""
    )


ROWS = [
    rt("cluster-1", "", "v1", "pods", "Pod", short=("po",)),
    rt("cluster-1", "apps", "v1", "deployments", "Deployment", short=("deploy",)),
    rt("cluster-2", "apps", "v1", "deployments", "Deployment", short=("deploy",)),
    rt("cluster-2", "", "v1", "namespaces", "Namespace", namespaced=False, short=("ns",)),
    rt("cluster-1", "example.com", "v1beta1", "widgets", "Widget"),
    rt("cluster-2", "example.com", "v1", "widgets", "Widget"),
]


def test_version_priority() -> None:
    versions = ["v1alpha1", "v2", "v1beta2", "foo", "v1", "v1beta1", "v10"]
    assert sorted(versions, key=version_priority) == [
        "v10",
        "v2",
        "v1",
        "v1beta2",
        "v1beta1",
        "v1alpha1",
        "foo",
    ]


def test_legacy_documents() -> None:
    assert api_versions(ROWS)["versions"] == ["v1"]
    groups = api_group_list(ROWS)["groups"]
    assert [g["name"] for g in groups] == ["apps", "example.com"]
    widget = api_group(ROWS, "example.com")
    assert widget is not None
    assert [v["version"] for v in widget["versions"]] == ["v1", "v1beta1"]
    assert widget["preferredVersion"] == {"groupVersion": "example.com/v1", "version": "v1"}
    assert api_group(ROWS, "nope") is None
    core = api_resource_list(ROWS, "", "v1")
    assert core is not None
    assert core["groupVersion"] == "v1"
    assert [(r["name"], r["kind"], r["namespaced"], r.get("shortNames")) for r in core["resources"]] == [
        ("namespaces", "Namespace", False, ["ns"]),
        ("pods", "Pod", True, ["po"]),
    ]
    assert core["resources"][1]["verbs"] == ["get", "list"]
    assert core["resources"][1]["singularName"] == "pod"
    assert api_resource_list(ROWS, "apps", "v2") is None


def test_one_cluster_sees_only_its_rows() -> None:
    only = [r for r in ROWS if r.cluster == "cluster-1"]
    assert [g["name"] for g in api_group_list(only)["groups"]] == ["apps", "example.com"]
    assert api_resource_list(only, "", "v1") is not None
    assert [r["name"] for r in api_resource_list(only, "", "v1")["resources"]] == ["pods"]  # type: ignore[index]


def test_aggregated_documents() -> None:
    legacy = aggregated(ROWS, legacy=True, version="v2beta1")
    assert legacy["apiVersion"] == "apidiscovery.k8s.io/v2beta1"
    assert len(legacy["items"]) == 1 and "name" not in legacy["items"][0]["metadata"]
    pods = legacy["items"][0]["versions"][0]["resources"][1]
    assert pods == {
        "resource": "pods",
        "responseKind": {"group": "", "version": "v1", "kind": "Pod"},
        "scope": "Namespaced",
        "singularResource": "pod",
        "verbs": ["get", "list"],
        "shortNames": ["po"],
        "categories": ["all"],
    }
    apis = aggregated(ROWS, legacy=False, version="v2")
    assert [i["metadata"]["name"] for i in apis["items"]] == ["apps", "example.com"]
    assert [v["version"] for v in apis["items"][1]["versions"]] == ["v1", "v1beta1"]


def test_find_resource_spans_versions() -> None:
    found = find_resource(ROWS, "example.com", "v1", "widgets")
    assert found is not None
    exact, same = found
    assert exact.cluster == "cluster-2"
    assert {r.cluster for r in same} == {"cluster-1", "cluster-2"}
    assert find_resource(ROWS, "example.com", "v2", "widgets") is None


def test_openapi_v3_for_explain() -> None:
    index = index_document(ROWS, "/apis/clusterpedia.io/v1beta1/resources")
    assert set(index["paths"]) == {
        "api/v1",
        "apis/apps/v1",
        "apis/example.com/v1",
        "apis/example.com/v1beta1",
    }
    url = index["paths"]["apis/apps/v1"]["serverRelativeURL"]
    assert url.startswith("/apis/clusterpedia.io/v1beta1/resources/openapi/v3/apis/apps/v1?hash=")
    doc = group_version_document(ROWS, "apps", "v1")
    assert doc is not None
    gvk = {"group": "apps", "version": "v1", "kind": "Deployment"}
    assert (
        doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments"]["get"][
            "x-kubernetes-group-version-kind"
        ]
        == gvk
    )
    schemas = doc["components"]["schemas"]
    deployment = schemas["Deployment"]
    assert deployment["x-kubernetes-group-version-kind"] == [gvk]
    assert deployment["properties"]["spec"] == {"allOf": [{"$ref": "#/components/schemas/DeploymentSpec"}]}
    replicas = schemas["DeploymentSpec"]["properties"]["replicas"]
    assert replicas["type"] == "integer" and "Number of desired pods" in replicas["description"]
    containers = schemas["PodSpec"]["properties"]["containers"]
    assert containers["type"] == "array" and containers["items"] == {"$ref": "#/components/schemas/Container"}
    assert schemas["ObjectMeta"]["properties"]["labels"]["additionalProperties"] == {"type": "string"}
    widget = group_version_document(ROWS, "example.com", "v1")
    assert widget is not None
    custom = widget["components"]["schemas"]["example.com.v1.Widget"]
    assert custom["x-kubernetes-preserve-unknown-fields"] is True
    assert group_version_document(ROWS, "apps", "v2") is None
    core = group_version_document(ROWS, "", "v1")
    assert core is not None and "/api/v1/namespaces/{name}" in core["paths"]


def test_one_cluster_lists_the_write_verbs_its_member_serves() -> None:
    """Below one cluster writes are forwarded to the member: its own write verbs are listed; the
    all-clusters view stays get/list (a write there is a 400)."""
    member_verbs = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
    pods = ServedResource("cluster-1", "", "v1", "pods", "Pod", True, (), member_verbs, "v1", "")
    read_only = ServedResource("cluster-1", "", "v1", "events", "Event", True, (), ("get", "list"), "v1", "")
    doc = api_resource_list([pods, read_only], "", "v1", writable=True)
    assert doc is not None
    assert {r["name"]: r["verbs"] for r in doc["resources"]} == {
        "events": ["get", "list"],
        "pods": ["get", "list", "create", "update", "patch", "delete", "deletecollection"],
    }
    assert api_resource_list([pods], "", "v1")["resources"][0]["verbs"] == ["get", "list"]  # type: ignore[index]
    agg = aggregated([pods], legacy=True, version="v2", writable=True)
    assert agg["items"][0]["versions"][0]["resources"][0]["verbs"][2:] == list(WRITE_VERBS)
