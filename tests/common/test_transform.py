from typing import Any

import msgspec
import pytest

from common.events import Delete, Upsert
from common.transform import LAST_APPLIED_ANNOTATION, REDACTED_ANNOTATION, NamespaceFilter, ObjectTransformer
from common.types import CLUSTER_ANNOTATION, GVR, MEMBER_RV_ANNOTATION

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
    assert obj["metadata"]["annotations"] == {
        "keep": "me",
        CLUSTER_ANNOTATION: "c1",
        MEMBER_RV_ANNOTATION: "42",
    }
    assert obj["spec"] == {"replicas": 2}


def test_last_applied_kept_when_configured_and_core_api_version() -> None:
    tr = ObjectTransformer("c2", GVR("", "v1", "configmaps"), "ConfigMap", strip_last_applied=False)
    up = tr.upsert(item(annotations=None, ownerReferences=None), epoch=1)
    assert up is not None
    obj = msgspec.json.decode(up.object)
    assert obj["apiVersion"] == "v1"
    assert obj["metadata"]["annotations"] == {CLUSTER_ANNOTATION: "c2", MEMBER_RV_ANNOTATION: "42"}
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


def reference_object(raw: bytes, cluster: str, api_version: str, kind: str, strip: bool) -> dict[str, Any]:
    """What an upsert's object must mean, written the plain way: decode everything, edit, compare."""
    obj: dict[str, Any] = msgspec.json.decode(raw)
    meta: dict[str, Any] = obj.get("metadata") or {}
    meta.pop("managedFields", None)
    annotations: dict[str, str] = meta.get("annotations") or {}
    if strip:
        annotations.pop(LAST_APPLIED_ANNOTATION, None)
    annotations[CLUSTER_ANNOTATION] = cluster
    member_rv = meta.get("resourceVersion") or ""
    if member_rv:
        annotations[MEMBER_RV_ANNOTATION] = member_rv
    # the store's revision is spliced in when served (common.storage.revisions): a placeholder here
    meta["resourceVersion"] = member_rv if member_rv.isdigit() else "0"
    meta["annotations"] = annotations
    obj["metadata"] = meta
    obj["apiVersion"], obj["kind"] = api_version, kind
    return obj


ODD_TEXT = 'quote " backslash \\ slash / tab \t newline \n nul \u0000 sep \u2028 <a&b> é 日本 🚀'

SHAPES: dict[str, bytes] = {
    "list item, no annotations": msgspec.json.encode(
        {"metadata": {"name": "a", "namespace": "n", "uid": "u", "resourceVersion": "7"}, "spec": {"x": 1}}
    ),
    "annotations null, ownerReferences null": msgspec.json.encode(
        {"metadata": {"name": "a", "annotations": None, "ownerReferences": None}, "data": {"k": "v"}}
    ),
    "no metadata at all": b'{"spec":{"replicas":1}}',
    "metadata null": b'{"metadata":null,"spec":{}}',
    "managedFields and last-applied": item(),
    "only last-applied": item(annotations={LAST_APPLIED_ANNOTATION: '{"big":"' + "x" * 5000 + '"}'}),
    "unicode and escapes everywhere": msgspec.json.encode(
        {
            "metadata": {
                "name": "é",
                "namespace": "日本",
                "labels": {"k": ODD_TEXT},
                "annotations": {ODD_TEXT: ODD_TEXT},
            },
            "data": {"text": ODD_TEXT, ODD_TEXT: [ODD_TEXT]},
        }
    ),
    # What Go's encoding/json writes: <, > and & as \u escapes; the meaning must survive.
    "go-style escapes": (
        b'{"metadata":{"name":"a\\u003cb","annotations":{"x":"\\u0026\\u003e\\ud83d\\ude80"}},'
        b'"data":{"s":"\\u003chtml\\u003e \\"q\\" \\\\ \\/"}}'
    ),
    "numbers": b'{"metadata":{"name":"n"},"spec":{"big":123456789012345678901234567890,"f":1.5e-7,"z":-0.0}}',
    "watch object with apiVersion and kind": msgspec.json.encode(
        {"apiVersion": "apps/v1beta2", "kind": "Deployment", "metadata": {"name": "w"}, "spec": {}}
    ),
    "whitespace between tokens": (
        b' { "metadata" : { "name" : "ws" , "annotations" : { "a" : "b" } } , "spec" : [ 1 , 2 ] } '
    ),
}


@pytest.mark.parametrize("strip", [True, False])
@pytest.mark.parametrize("shape", list(SHAPES))
def test_object_means_the_fully_decoded_edit(shape: str, strip: bool) -> None:
    raw = SHAPES[shape]
    up = ObjectTransformer("c9", DEPLOY, "Deployment", strip_last_applied=strip).upsert(raw, epoch=3)
    assert up is not None
    assert msgspec.json.decode(up.object) == reference_object(raw, "c9", "apps/v1", "Deployment", strip)
    assert up.object.startswith(b'{"metadata":{"resourceVersion":"')  # where the store splices its revision
    meta = (msgspec.json.decode(raw) or {}).get("metadata") or {}
    assert (up.name, up.namespace, up.uid) == (
        meta.get("name") or "",
        meta.get("namespace") or "",
        meta.get("uid") or "",
    )


def test_items_of_a_list_page_are_read_in_place() -> None:
    """List pages keep items as msgspec.Raw slices; the transformer takes them without a copy and
    the event owns its bytes (the page can be freed)."""

    class Page(msgspec.Struct):
        items: list[msgspec.Raw]

    body = b'{"items":[' + item() + b"," + SHAPES["unicode and escapes everywhere"] + b"]}"
    page = msgspec.json.decode(body, type=Page)
    tr = ObjectTransformer("c1", DEPLOY, "Deployment")
    ups = [tr.upsert(raw, epoch=1) for raw in page.items]
    del page, body
    assert [u.name if u else None for u in ups] == ["web", "é"]
    assert all(u is not None and type(u.object) is bytes for u in ups)
    assert ups[0] is not None and ups[0].owner_uid == "owner-uid"


def test_a_non_object_is_a_decode_error() -> None:
    with pytest.raises(msgspec.DecodeError):
        ObjectTransformer("c1", DEPLOY, "Deployment").upsert(b"[1,2]", epoch=1)


SECRETS = GVR("", "v1", "secrets")


def secret(**extra: object) -> bytes:
    return msgspec.json.encode(
        {
            "metadata": {
                "name": "db",
                "namespace": "default",
                "resourceVersion": "7",
                "annotations": {LAST_APPLIED_ANNOTATION: '{"data":{"password":"aHVudGVyMg=="}}'},
            },
            "type": "Opaque",
            "data": {"password": "aHVudGVyMg==", "user": "YWRtaW4="},
            **extra,
        }
    )


@pytest.mark.parametrize("strip", [True, False])
def test_secret_values_are_redacted(strip: bool) -> None:
    """Keys stay (kubectl's DATA column counts them), values and the last-applied copy of them go."""
    t = ObjectTransformer("c1", SECRETS, "Secret", strip_last_applied=strip, redact_values=True)
    up = t.upsert(secret(stringData={"token": "plain"}), epoch=1)
    assert up is not None
    assert b"aHVudGVyMg" not in up.object and b"plain" not in up.object
    obj = msgspec.json.decode(up.object)
    assert obj["data"] == {"password": "", "user": ""} and obj["stringData"] == {"token": ""}
    assert obj["type"] == "Opaque"
    assert obj["metadata"]["annotations"] == {
        REDACTED_ANNOTATION: "values",
        CLUSTER_ANNOTATION: "c1",
        MEMBER_RV_ANNOTATION: "7",
    }
    # a Secret without data, or with data: null, stays valid
    empty = t.upsert(msgspec.json.encode({"metadata": {"name": "e"}, "data": None}), epoch=1)
    assert empty is not None and msgspec.json.decode(empty.object)["data"] is None


def test_secret_values_kept_when_the_operator_opts_in() -> None:
    up = ObjectTransformer("c1", SECRETS, "Secret").upsert(secret(), epoch=1)
    assert up is not None and msgspec.json.decode(up.object)["data"]["password"] == "aHVudGVyMg=="
