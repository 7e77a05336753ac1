"""The pure half of control through Clusterpedia: impersonation headers, bounded bodies, the
resourceVersion translation on the way in, and what an answer does to the store."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from apiserver.auth import request_attributes, write_verb
from apiserver.control import (
    MEMBER_RV_ANNOTATION,
    annotate_answer,
    deleted_keys,
    events_after_delete,
    forwarded_headers,
    impersonation_headers,
    read_body,
    relayed_headers,
    store_events,
    switching_head,
    translate_body,
    upgrade_of,
    with_revision,
)
from apiserver.permissions import User
from apiserver.routing import parse_path
from common.errors import BadRequest, Conflict, RequestEntityTooLarge
from common.transform import NamespaceFilter, ObjectTransformer
from common.types import CLUSTER_ANNOTATION, GVR

P = "/apis/clusterpedia.io/v1beta1/resources"


def test_impersonation_headers_carry_the_mapped_user_groups_and_escaped_extra() -> None:
    headers = impersonation_headers(
        User("oidc:alice", frozenset({"devs", "system:authenticated"})),
        {"scopes": ("read", "write"), "acme.com/project": ("p1",)},
    )
    assert headers == [
        ("Impersonate-User", "oidc:alice"),
        ("Impersonate-Group", "devs"),
        ("Impersonate-Group", "system:authenticated"),
        ("Impersonate-Extra-acme.com%2Fproject", "p1"),
        ("Impersonate-Extra-scopes", "read"),
        ("Impersonate-Extra-scopes", "write"),
    ]


def test_impersonation_refuses_header_injection() -> None:
    with pytest.raises(BadRequest):
        impersonation_headers(User("eve\r\nImpersonate-Group: system:masters"), {})


def test_only_allowed_client_headers_are_forwarded() -> None:
    client = [
        ("content-type", "application/merge-patch+json"),
        ("accept", "application/vnd.kubernetes.protobuf, application/json"),
        ("authorization", "Bearer stolen"),
        ("impersonate-user", "system:admin"),
        ("impersonate-group", "system:masters"),
        ("x-remote-user", "root"),
        ("user-agent", "kubectl/v1.32"),
    ]
    assert forwarded_headers(client, stream=False) == [
        ("content-type", "application/merge-patch+json"),
        ("user-agent", "kubectl/v1.32"),
        ("Accept", "application/json"),
    ]
    assert ("accept", "application/vnd.kubernetes.protobuf, application/json") in forwarded_headers(
        client, stream=True
    )


def test_member_warnings_are_relayed_but_not_those_about_clusterpedias_own_token() -> None:
    member = [
        ("Content-Type", "application/json"),
        ("Warning", '299 - "apps/v1beta1 Deployment is deprecated"'),
        ("Warning", '299 - "Use tokens from the TokenRequest API ... auto-generated secret-based tokens."'),
        ("Set-Cookie", "x=y"),
    ]
    assert relayed_headers(member) == member[:2]


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for p in parts:
        yield p


def test_bodies_are_bounded() -> None:
    async def main() -> None:
        assert await read_body(_chunks(b"ab", b"cd"), "4", 4) == b"abcd"
        with pytest.raises(RequestEntityTooLarge) as err:
            await read_body(_chunks(b"ab", b"cde"), None, 4)  # chunked, no length
        assert err.value.code == 413 and "apiserver.max_request_body_bytes" in err.value.message
        with pytest.raises(RequestEntityTooLarge):
            await read_body(_chunks(), "5", 4)  # refused before reading

    anyio.run(main)


def stored(rv: str, member_rv: str | None) -> bytes:
    annotations = {CLUSTER_ANNOTATION: "c1"}
    if member_rv is not None:
        annotations[MEMBER_RV_ANNOTATION] = member_rv
    return json.dumps(
        {"kind": "ConfigMap", "metadata": {"name": "x", "resourceVersion": rv, "annotations": annotations}}
    ).encode()


def body(rv: str | None, **annotations: str) -> bytes:
    meta: dict[str, Any] = {"name": "x", "annotations": {"keep": "me", **annotations}}
    if rv is not None:
        meta["resourceVersion"] = rv
    return json.dumps({"kind": "ConfigMap", "metadata": meta, "data": {"a": "1"}}).encode()


def test_without_the_member_annotation_the_body_passes_unchanged() -> None:
    """Today's objects: metadata.resourceVersion is the member's own."""
    original = body("41")
    assert translate_body(original, stored("40", None), resource="configmaps") == original
    assert translate_body(original, None, resource="configmaps") == original


def test_a_global_revision_is_translated_to_the_members() -> None:
    sent = translate_body(body("900"), stored("900", "41"), resource="configmaps")
    obj = json.loads(sent)
    assert obj["metadata"]["resourceVersion"] == "41"
    assert obj["metadata"]["annotations"] == {"keep": "me"}
    assert obj["data"] == {"a": "1"}


def test_a_stale_global_revision_is_a_409() -> None:
    with pytest.raises(Conflict) as err:
        translate_body(body("899"), stored("900", "41"), group="", resource="configmaps", name="x")
    status = err.value.status()
    assert (status["code"], status["reason"]) == (409, "Conflict")
    assert status["message"] == (
        'Operation cannot be fulfilled on configmaps "x": the object has been modified; please apply'
        " your changes to the latest version and try again"
    )


def test_an_answer_is_served_with_the_stores_revision_and_written_back_from_it() -> None:
    answer = annotate_answer(body("41"), "c1")
    served = json.loads(with_revision(answer, 900))
    assert served["metadata"]["resourceVersion"] == "900"
    assert served["metadata"]["annotations"] == {
        "keep": "me",
        CLUSTER_ANNOTATION: "c1",
        MEMBER_RV_ANNOTATION: "41",
    }
    # a client that writes again from the answer sends the member's version to the member
    again = translate_body(json.dumps(served).encode(), stored("900", "41"), resource="configmaps")
    assert json.loads(again)["metadata"]["resourceVersion"] == "41"
    status = b'{"kind":"Status","status":"Success"}'
    assert with_revision(status, 900) == status


def test_clusterpedias_annotations_never_reach_the_member() -> None:
    sent = translate_body(body(None, **{CLUSTER_ANNOTATION: "c1", MEMBER_RV_ANNOTATION: "3"}), None)
    assert json.loads(sent)["metadata"]["annotations"] == {"keep": "me"}


@pytest.mark.parametrize(
    "raw", [b'[{"op":"replace","path":"/data/a","value":"2"}]', b"metadata:\n  name: x\n", b"\x0a\x02k8s"]
)
def test_bodies_that_are_not_json_objects_pass_through(raw: bytes) -> None:
    assert translate_body(raw, stored("900", "41")) == raw


def test_answers_get_the_cluster_annotation_and_statuses_stay_as_they_are() -> None:
    obj = json.loads(annotate_answer(b'{"kind":"ConfigMap","metadata":{"name":"x"}}', "c1"))
    assert obj["metadata"]["annotations"] == {CLUSTER_ANNOTATION: "c1"}
    lst = json.loads(annotate_answer(b'{"kind":"ConfigMapList","items":[{"metadata":{}}]}', "c1"))
    assert lst["items"][0]["metadata"]["annotations"] == {CLUSTER_ANNOTATION: "c1"}
    status = b'{"kind":"Status","code":403}'
    assert annotate_answer(status, "c1") == status
    assert annotate_answer(b"plain log line", "c1") == b"plain log line"


def cm(name: str, rv: str, **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "ns", "resourceVersion": rv, **meta},
    }


TRANSFORMER = ObjectTransformer("c1", GVR("", "v1", "configmaps"), "ConfigMap")


def test_a_written_object_is_upserted() -> None:
    events = store_events("PUT", 200, json.dumps(cm("x", "7")).encode(), TRANSFORMER, "ConfigMap")
    assert events is not None and not events.deletes
    (up,) = events.upserts
    assert (up.cluster, up.namespace, up.name, up.resource_version, up.epoch) == ("c1", "ns", "x", 7, 0)
    assert json.loads(up.object)["metadata"]["annotations"][CLUSTER_ANNOTATION] == "c1"


def test_what_a_delete_removed() -> None:
    status = b'{"kind":"Status","status":"Success","details":{"name":"x","kind":"deployments"}}'
    assert deleted_keys(status, "ns", "x") == [("ns", "x")]
    assert deleted_keys(json.dumps(cm("x", "9")).encode(), "ns", "x") == [("ns", "x")]
    answer = {"kind": "ConfigMapList", "items": [cm("b", "5"), cm("a", "6")]}
    assert deleted_keys(json.dumps(answer).encode(), "ns", "") == [("ns", "b"), ("ns", "a")]


def listing(rv: str, *items: dict[str, Any]) -> bytes:
    return json.dumps({"kind": "ConfigMapList", "metadata": {"resourceVersion": rv}, "items": items}).encode()


def test_deleted_objects_are_tombstoned_at_the_resource_version_of_the_list_after() -> None:
    """After the deletion's own: the object's late watch events and the DELETED one change nothing."""
    events = events_after_delete([("ns", "b"), ("ns", "a")], listing("120"), TRANSFORMER)
    assert [(d.namespace, d.name, d.resource_version) for d in events.deletes] == [
        ("ns", "a", 120),
        ("ns", "b", 120),
    ]
    assert not events.upserts


def test_objects_still_listed_after_a_delete_are_stored_as_listed() -> None:
    pending = cm("x", "9", finalizers=["f"], deletionTimestamp="2026-01-01T00:00:00Z")
    events = events_after_delete([("ns", "x"), ("ns", "y")], listing("10", pending), TRANSFORMER)
    assert [(u.name, u.resource_version) for u in events.upserts] == [("x", 9)]
    assert [(d.name, d.resource_version) for d in events.deletes] == [("y", 10)]


def test_without_a_listing_a_delete_stores_nothing() -> None:
    for got in (None, b'{"kind":"Status","code":403}', listing("")):
        events = events_after_delete([("ns", "x")], got, TRANSFORMER)
        assert not events.upserts and not events.deletes


def test_answers_that_are_not_the_written_object_store_nothing() -> None:
    scale = b'{"kind":"Scale","metadata":{"name":"x"}}'
    assert store_events("PUT", 200, scale, TRANSFORMER, "ConfigMap") is None
    assert store_events("PUT", 409, json.dumps(cm("x", "1")).encode(), TRANSFORMER, "ConfigMap") is None
    assert store_events("DELETE", 200, json.dumps(cm("x", "1")).encode(), TRANSFORMER, "ConfigMap") is None


def test_objects_outside_the_synced_namespaces_are_not_stored() -> None:
    only = ObjectTransformer(
        "c1", GVR("", "v1", "configmaps"), "ConfigMap", namespaces=NamespaceFilter(include=["other"])
    )
    events = store_events("POST", 201, json.dumps(cm("x", "1")).encode(), only, "ConfigMap")
    assert events is not None and not events.upserts


def test_write_verbs_in_the_hosts_subject_access_review() -> None:
    path = P + "/clusters/c1/apis/apps/v1/namespaces/ns/deployments"
    assert request_attributes(path, "POST").verb == "create"
    assert request_attributes(path + "/web", "PUT").verb == "update"
    assert request_attributes(path + "/web/scale", "PATCH").verb == "patch"
    assert request_attributes(path + "/web", "DELETE").verb == "delete"
    assert request_attributes(path, "DELETE").verb == "deletecollection"
    assert request_attributes(path + "/web/status", "GET").verb == "get"
    assert request_attributes(path, "POST").namespace == "ns"
    assert write_verb("POST", False) == "create"


def test_subresources_are_parsed() -> None:
    r = parse_path("/clusters/c1/api/v1/namespaces/ns/pods/p/log")
    assert (r.action, r.cluster, r.resource, r.name, r.subresource) == ("get", "c1", "pods", "p", "log")
    r = parse_path("/clusters/c1/api/v1/namespaces/ns/pods/p/proxy/a/b")
    assert (r.name, r.subresource) == ("p", "proxy")
    r = parse_path("/clusters/c1/api/v1/namespaces/ns/status")
    assert (r.resource, r.name, r.subresource, r.namespace) == ("namespaces", "ns", "status", "")
    r = parse_path("/clusters/c1/api/v1/nodes/n1/status")
    assert (r.resource, r.name, r.subresource) == ("nodes", "n1", "status")
    assert parse_path("/api/v1/namespaces/ns/configmaps").action == "list"


def test_upgrade_requests_forward_their_upgrade_headers() -> None:
    spdy = [
        ("Connection", "Upgrade"),
        ("Upgrade", "SPDY/3.1"),
        ("X-Stream-Protocol-Version", "v4.channel.k8s.io"),
    ]
    assert upgrade_of(spdy) == "SPDY/3.1"
    assert forwarded_headers(spdy, stream=True) == [
        ("Upgrade", "SPDY/3.1"),
        ("X-Stream-Protocol-Version", "v4.channel.k8s.io"),
        ("Connection", "Upgrade"),
    ]
    ws = [("connection", "keep-alive, Upgrade"), ("upgrade", "websocket"), ("sec-websocket-key", "k")]
    assert upgrade_of(ws) == "websocket"
    assert ("sec-websocket-key", "k") in forwarded_headers(ws, stream=True)
    # without Connection: Upgrade there is no upgrade, and its headers stay behind
    assert upgrade_of([("upgrade", "websocket")]) == ""
    assert forwarded_headers([("upgrade", "websocket"), ("sec-websocket-key", "k")], stream=True) == []


def test_the_switching_head_repeats_the_members_choice() -> None:
    head = switching_head([(b"Upgrade", b"SPDY/3.1"), (b"X-Stream-Protocol-Version", b"v4.channel.k8s.io")])
    assert head == (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: SPDY/3.1\r\n"
        b"X-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n"
    )
