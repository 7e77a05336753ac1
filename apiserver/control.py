"""Control through Clusterpedia: what a write sends to a member and what its answer does (pure).

Writes (create, update, patch, delete, deletecollection) and subresources (``status``, ``scale``,
``log``, ``exec``...) under ``.../resources/clusters/{name}/...`` are not evaluated here: they go
to that member as the caller (DESIGN section 8), whose own authorizer decides. This module builds
that request and reads the answer; :mod:`apiserver.forwarding` sends it.

* **As the caller**: Kubernetes impersonation headers from the user the host authenticated,
  mapped by the PediaCluster's ``spec.identity`` exactly as member-rbac maps it
  (:mod:`apiserver.identities`). Only an allow-list of the client's headers is forwarded: an
  ``Impersonate-*`` or ``Authorization`` header a client sends never reaches a member.
* **Bodies** are bytes, bounded (``apiserver.max_request_body_bytes``) and not evaluated; a JSON
  object body is decoded only to translate ``metadata.resourceVersion`` and to drop the
  annotations Clusterpedia adds (:func:`translate_body`), anything else is passed through.
* **Double write + response** (the seed's words): a successful answer goes into the store through
  the writer's guarded path (:func:`store_events`, :func:`events_after_delete`) before the client
  gets it, so the next get or list shows it; the synchro's later watch events for the same object
  carry the same or older resourceVersions and change nothing (the guard).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from apiserver.permissions import User
from common.errors import BadRequest, Conflict, RequestEntityTooLarge
from common.events import Delete, Upsert
from common.transform import ObjectTransformer
from common.types import CLUSTER_ANNOTATION, MEMBER_RV_ANNOTATION

ADDED_ANNOTATIONS = (CLUSTER_ANNOTATION, MEMBER_RV_ANNOTATION)
"""What Clusterpedia adds to the objects it serves: never sent back to a member."""

STREAMED_SUBRESOURCES = frozenset({"log", "exec", "attach", "portforward", "proxy"})
"""Answers relayed as a byte stream, whatever their content type."""
FORWARDED_HEADERS = ("content-type", "accept", "user-agent", "content-encoding", "x-stream-protocol-version")
"""The client's headers a member sees (besides impersonation and the PediaCluster's credentials)."""

_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()

# RFC 7230 tchar: what may stand in a header name unescaped (client-go's headerKeyEscape).
_TCHAR = frozenset("!#$&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _escape_extra_key(key: str) -> str:
    return "".join(c if c in _TCHAR and c != "%" else "".join(f"%{b:02X}" for b in c.encode()) for c in key)


def impersonation_headers(user: User, extra: Mapping[str, Iterable[str]]) -> list[tuple[str, str]]:
    """``Impersonate-User``, one ``Impersonate-Group`` per group (sorted) and
    ``Impersonate-Extra-<key>`` per extra value (the key percent-escaped as client-go does)."""
    headers = [("Impersonate-User", user.name)]
    headers += [("Impersonate-Group", g) for g in sorted(user.groups)]
    for key in sorted(extra):
        headers += [(f"Impersonate-Extra-{_escape_extra_key(key)}", v) for v in extra[key]]
    for name, value in headers:
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
            raise BadRequest(f"{name} would carry control characters: refusing to forward")
    return headers


UPGRADE_HEADERS = (
    "upgrade",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
)
"""Also forwarded for an upgrade request (with ``Connection: Upgrade``)."""


def upgrade_of(client_headers: Iterable[tuple[str, str]]) -> str:
    """The protocol an upgrade request asks for (``SPDY/3.1``, ``websocket``), "" for others."""
    headers = [(k.lower(), v) for k, v in client_headers]
    connection = {t.strip().lower() for k, v in headers if k == "connection" for t in v.split(",")}
    upgrade = next((v.strip() for k, v in headers if k == "upgrade"), "")
    return upgrade if "upgrade" in connection else ""


def forwarded_headers(client_headers: Iterable[tuple[str, str]], *, stream: bool) -> list[tuple[str, str]]:
    """The client's headers from the allow-list (and an upgrade's). Answers that are stored or
    annotated are asked for in JSON (kubectl may prefer protobuf); streamed ones keep the
    client's Accept."""
    client_headers = list(client_headers)
    allowed = FORWARDED_HEADERS + (UPGRADE_HEADERS if upgrade_of(client_headers) else ())
    out = [(k, v) for k, v in client_headers if k.lower() in allowed]
    if allowed is not FORWARDED_HEADERS:
        out.append(("Connection", "Upgrade"))
    if not stream:
        out = [(k, v) for k, v in out if k.lower() != "accept"] + [("Accept", "application/json")]
    return out


def switching_head(member_headers: Iterable[tuple[bytes, bytes]]) -> bytes:
    """The 101 answer's head as the client gets it: the member's headers (the protocol it chose,
    e.g. ``X-Stream-Protocol-Version``, ``Sec-WebSocket-Accept``) but no credentials-related ones."""
    lines = [b"HTTP/1.1 101 Switching Protocols"]
    lines += [k + b": " + v for k, v in member_headers if k.lower() not in (b"set-cookie",)]
    return b"\r\n".join(lines) + b"\r\n\r\n"


RELAYED_HEADERS = ("content-type", "warning", "audit-id")
OWN_CREDENTIAL_WARNINGS = ("secret-based tokens",)
"""Warnings about the PediaCluster's credentials (a legacy ServiceAccount token), not about the
caller's request: they stay out of the caller's answer."""


def relayed_headers(member_headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The member's answer headers a client gets: content type, warnings (deprecations...)."""
    return [
        (k, v)
        for k, v in member_headers
        if k.lower() in RELAYED_HEADERS
        and not (k.lower() == "warning" and any(w in v for w in OWN_CREDENTIAL_WARNINGS))
    ]


async def read_body(chunks: AsyncIterable[bytes], content_length: str | None, limit: int) -> bytes:
    """The request body, refused with a 413 Status past ``limit`` bytes (as kube-apiserver's 3 MiB),
    before reading when Content-Length says so."""

    def too_large() -> RequestEntityTooLarge:
        return RequestEntityTooLarge(
            f"the request body is larger than {limit} bytes (apiserver.max_request_body_bytes)"
        )

    if content_length is not None and content_length.strip().isdigit() and int(content_length) > limit:
        raise too_large()
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > limit:
            raise too_large()
    return bytes(body)


def _json_object(data: bytes) -> dict[str, Any] | None:
    try:
        obj = _decoder.decode(data)
    except msgspec.DecodeError:
        return None
    return obj if isinstance(obj, dict) else None


def _annotations(obj: Mapping[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata")
    annotations = meta.get("annotations") if isinstance(meta, dict) else None
    return annotations if isinstance(annotations, dict) else {}


def conflict(resource: str, group: str, name: str) -> Conflict:
    gr = f"{resource}.{group}" if group else resource
    return Conflict(
        f'Operation cannot be fulfilled on {gr} "{name}": the object has been modified; please apply'
        " your changes to the latest version and try again",
        details={"name": name, "group": group, "kind": resource},
    )


def translate_body(
    body: bytes, stored: bytes | None, *, group: str = "", resource: str = "", name: str = ""
) -> bytes:
    """The body of a write as the member must see it.

    ``metadata.resourceVersion``: when the stored object (``stored``, as Clusterpedia serves it)
    carries :data:`MEMBER_RV_ANNOTATION`, its ``metadata.resourceVersion`` is Clusterpedia's
    revision: a body that names that revision is sent with the member's resourceVersion instead,
    any other is a 409 Conflict (it was read before the object last changed). Without the
    annotation the body's resourceVersion is the member's own and passes unchanged. Annotations
    Clusterpedia adds (:data:`ADDED_ANNOTATIONS`) are removed. A body that is not a JSON object
    (JSON patch, YAML, protobuf) is passed through untouched."""
    obj = _json_object(body)
    if obj is None or not isinstance(obj.get("metadata"), dict):
        return body
    meta: dict[str, Any] = obj["metadata"]
    changed = False
    annotations = meta.get("annotations")
    if isinstance(annotations, dict) and any(a in annotations for a in ADDED_ANNOTATIONS):
        meta["annotations"] = {k: v for k, v in annotations.items() if k not in ADDED_ANNOTATIONS}
        changed = True
    sent_rv = meta.get("resourceVersion")
    current = _json_object(stored) if stored is not None and sent_rv else None
    member_rv = _annotations(current).get(MEMBER_RV_ANNOTATION) if current is not None else None
    if current is not None and isinstance(member_rv, str):
        if sent_rv != (current.get("metadata") or {}).get("resourceVersion"):
            raise conflict(resource, group, name or str(meta.get("name") or ""))
        meta["resourceVersion"] = member_rv
        changed = True
    return _encoder.encode(obj) if changed else body


def _with_cluster(obj: dict[str, Any], cluster: str) -> dict[str, Any]:
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        annotations = meta.get("annotations")
        meta["annotations"] = {
            **(annotations if isinstance(annotations, dict) else {}),
            CLUSTER_ANNOTATION: cluster,
        }
    return obj


def annotate_answer(body: bytes, cluster: str) -> bytes:
    """A member's JSON answer with the cluster annotation on the object (or on each item of a
    list), as reads serve objects; a Status or anything not JSON is returned as it is."""
    obj = _json_object(body)
    if obj is None or obj.get("kind") == "Status":
        return body
    items = obj.get("items")
    if isinstance(items, list):
        obj["items"] = [_with_cluster(i, cluster) if isinstance(i, dict) else i for i in items]
    else:
        _with_cluster(obj, cluster)
    return _encoder.encode(obj)


def with_revision(body: bytes, revision: int) -> bytes:
    """A member's answer object as Clusterpedia serves objects: ``metadata.resourceVersion`` is the
    store's revision of it, the member's own in :data:`MEMBER_RV_ANNOTATION` -- so a client that
    writes again from the answer sends what :func:`translate_body` expects."""
    obj = _json_object(body)
    meta = obj.get("metadata") if obj is not None else None
    if obj is None or not isinstance(meta, dict) or not isinstance(meta.get("resourceVersion"), str):
        return body
    annotations = meta.get("annotations")
    meta["annotations"] = {
        **(annotations if isinstance(annotations, dict) else {}),
        MEMBER_RV_ANNOTATION: meta["resourceVersion"],
    }
    meta["resourceVersion"] = str(revision)
    return _encoder.encode(obj)


@dataclass(frozen=True, slots=True)
class StoreEvents:
    upserts: list[Upsert]
    deletes: list[Delete]


def store_events(
    method: str, code: int, body: bytes, transformer: ObjectTransformer, kind: str
) -> StoreEvents | None:
    """What a successful create, update or patch answer does to the store: the written object
    (``kind``) upserted. None for anything else (a Status, a Scale: see the caller; deletes:
    :func:`events_after_delete`)."""
    if not 200 <= code < 300 or method == "DELETE":
        return None
    obj = _json_object(body)
    if obj is None or obj.get("kind") != kind:
        return None
    upsert = transformer.upsert(_encoder.encode(obj), epoch=0)
    return StoreEvents([upsert] if upsert is not None else [], [])


Key = tuple[str, str]
"""(namespace, name) of an object of the request's resource."""


def deleted_keys(body: bytes, namespace: str, name: str) -> list[Key]:
    """What a successful DELETE removed, or began to remove: each item of a deletecollection's
    list, the returned object, or the path's name (most resources answer a delete with a
    ``Status``, which carries no resourceVersion)."""
    obj = _json_object(body) or {}
    items = obj.get("items")
    if isinstance(items, list):
        metas = [i.get("metadata") or {} for i in items if isinstance(i, dict)]
        return [(str(m.get("namespace") or ""), str(m.get("name") or "")) for m in metas if m.get("name")]
    return [(namespace, name)] if name else []


def events_after_delete(
    deleted: list[Key], listing: bytes | None, transformer: ObjectTransformer
) -> StoreEvents:
    """Store events for ``deleted`` objects from the member's list of them right after the delete
    (``listing``, read as the caller): an object still listed (finalizers, a grace period, or
    already created again) is upserted as listed; one that is gone is tombstoned at the list's
    resourceVersion, which is at or after the deletion's, so neither a late watch event of the
    object's life nor the DELETED event changes it back. Without a usable listing (the caller may
    delete but not list) nothing is stored: the synchro's DELETED event hides the object."""
    lst = _json_object(listing) if listing is not None else None
    items = lst.get("items") if lst is not None else None
    rv = str(((lst or {}).get("metadata") or {}).get("resourceVersion") or "")
    events = StoreEvents([], [])
    if not isinstance(items, list) or not rv.isdigit():
        return events
    present = {}
    for item in items:
        if isinstance(item, dict):
            meta = item.get("metadata") or {}
            present[(str(meta.get("namespace") or ""), str(meta.get("name") or ""))] = item
    for namespace, name in sorted(set(deleted)):
        item = present.get((namespace, name))
        if item is not None:
            upsert = transformer.upsert(_encoder.encode(item), epoch=0)
            if upsert is not None:
                events.upserts.append(upsert)
            continue
        meta = {"namespace": namespace, "name": name, "resourceVersion": rv}
        delete = transformer.delete(_encoder.encode({"metadata": meta}))
        if delete is not None:
            events.deletes.append(delete)
    return events
