import msgspec

from common.events import Delete, Upsert
from common.types import CLUSTER_ANNOTATION, GVR
from synchro.transform import LAST_APPLIED_ANNOTATION, NamespaceFilter, ObjectTransformer

DEPLOY = GVR("apps", "v1", "deployments")


def item(**meta: object) -> bytes:
    base: dict[str, object] = {
        "name": "web",
        "namespace": "default",
        "uid": "u-1",
        "resourceVersion": "42",
        "creationTimestamp": "2026-01-02T03:04:05Z",
        "managedFields": [{"manager": "kubectl"}],
        "annotations": {LAST_APPLIED_ANNOTATION: "{}", "keep": "me"},
        "ownerReferences": [
            {"uid": "not-controller", "kind": "X", "name": "x"},
            {"uid": "owner-uid", "kind": "ReplicaSet", "name": "rs", "controller": True},
        ],
    }
    base.update(meta)
    return msgspec.json.encode({"metadata": base, "spec": {"replicas": 2}})


def test_list_item_becomes_a_complete_upsert() -> None:
    up = ObjectTransformer("c1", DEPLOY, "Deployment").upsert(item(), epoch=40)
    assert isinstance(up, Upsert)
    assert (up.cluster, up.group, up.version, up.resource, up.kind) == (
        "c1",
        "apps",
        "v1",
        "deployments",
        "Deployment",
    )
    assert (up.namespace, up.name, up.uid, up.resource_version, up.epoch) == ("default", "web", "u-1", 42, 40)
    assert up.owner_uid == "owner-uid"
    assert up.created_at == "2026-01-02T03:04:05Z"
    obj = msgspec.json.decode(up.object)
    assert obj["apiVersion"] == "apps/v1" and obj["kind"] == "Deployment"
    assert "managedFields" not in obj["metadata"]
    assert obj["metadata"]["annotations"] == {"keep": "me", CLUSTER_ANNOTATION: "c1"}
    assert obj["spec"] == {"replicas": 2}


def test_last_applied_kept_when_configured_and_core_api_version() -> None:
    tr = ObjectTransformer("c2", GVR("", "v1", "configmaps"), "ConfigMap", strip_last_applied=False)
    up = tr.upsert(item(annotations=None, ownerReferences=None), epoch=1)
    assert up is not None
    obj = msgspec.json.decode(up.object)
    assert obj["apiVersion"] == "v1"
    assert obj["metadata"]["annotations"] == {CLUSTER_ANNOTATION: "c2"}
    assert up.owner_uid == ""
    up2 = tr.upsert(item(), epoch=1)
    assert up2 is not None
    assert LAST_APPLIED_ANNOTATION in msgspec.json.decode(up2.object)["metadata"]["annotations"]


def test_namespace_filter() -> None:
    f = NamespaceFilter(include=["a", "b"], exclude=["b"])
    assert f.allows("a") and not f.allows("b") and not f.allows("c") and f.allows("")
    assert NamespaceFilter(exclude=["kube-system"]).allows("default")
    tr = ObjectTransformer("c1", DEPLOY, "Deployment", namespaces=NamespaceFilter(exclude=["default"]))
    assert tr.upsert(item(), epoch=1) is None
    assert tr.delete(item()) is None


def test_delete_event() -> None:
    d = ObjectTransformer("c1", DEPLOY, "Deployment").delete(item(resourceVersion="99"))
    assert d == Delete("c1", "apps", "v1", "deployments", "default", "web", 99)
