"""Content negotiation and rendering: JSON lists spliced from stored bytes, Tables, Status errors.

kube-apiserver picks the representation from the Accept header's media-type parameters
(``as=Table;g=meta.k8s.io;v=v1`` for kubectl's tables, ``as=APIGroupDiscoveryList;
g=apidiscovery.k8s.io;v=v2`` for aggregated discovery) and answers with the matching Content-Type;
clients such as kubectl look at that Content-Type to decide how to decode. Lists are built as bytes:
each stored object is embedded with ``msgspec.Raw`` and never re-parsed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
from starlette.responses import Response

from common.errors import NotAcceptable, StatusError

JSON = "application/json"
_encoder = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class MediaType:
    type: str  # "application/json", "*/*", ...
    params: dict[str, str]

    @property
    def as_(self) -> str:
        return self.params.get("as", "")

    def matches_json(self) -> bool:
        return self.type in (JSON, "application/*", "*/*")


def parse_accept(header: str) -> list[MediaType]:
    """Media ranges in the order given (kubectl lists its preference first; q-values are rare)."""
    out: list[tuple[float, int, MediaType]] = []
    for i, part in enumerate(header.split(",")):
        part = part.strip()
        if not part:
            continue
        pieces = [p.strip() for p in part.split(";")]
        params: dict[str, str] = {}
        q = 1.0
        for p in pieces[1:]:
            key, _, value = p.partition("=")
            key, value = key.strip().lower(), value.strip().strip('"')
            if key == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
            elif key:
                params[key] = value
        if q > 0:
            out.append((-q, i, MediaType(pieces[0].lower(), params)))
    out.sort(key=lambda t: (t[0], t[1]))
    return [m for _, _, m in out] or [MediaType("*/*", {})]


@dataclass(frozen=True, slots=True)
class ObjectRendering:
    """What to answer a get/list with: ``kind`` is "json", "table" or "partial"."""

    kind: str
    meta_version: str = "v1"  # meta.k8s.io version for table/partial


def negotiate_object(accept: str) -> ObjectRendering:
    """Pick JSON, Table or PartialObjectMetadata(List) for a get/list (406 when none fits)."""
    for m in parse_accept(accept):
        if not m.matches_json():
            continue
        if not m.as_:
            return ObjectRendering("json")
        if m.params.get("g") != "meta.k8s.io" or m.params.get("v") not in ("v1", "v1beta1"):
            continue
        if m.as_ == "Table":
            return ObjectRendering("table", m.params["v"])
        if m.as_ in ("PartialObjectMetadata", "PartialObjectMetadataList"):
            return ObjectRendering("partial", m.params["v"])
    raise NotAcceptable(f"only application/json, Table and PartialObjectMetadata are served, not {accept!r}")


def negotiate_discovery(accept: str) -> str:
    """``v2`` / ``v2beta1`` for aggregated discovery, ``legacy`` for APIVersions/APIGroupList."""
    for m in parse_accept(accept):
        if not m.matches_json():
            continue
        if m.as_ == "APIGroupDiscoveryList" and m.params.get("g") == "apidiscovery.k8s.io":
            if m.params.get("v") in ("v2", "v2beta1"):
                return m.params["v"]
            continue
        if not m.as_:
            return "legacy"
    raise NotAcceptable(f"no acceptable discovery representation in {accept!r}")


def discovery_content_type(version: str) -> str:
    return f"{JSON};g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList"


def table_content_type(meta_version: str) -> str:
    return f"{JSON};as=Table;v={meta_version};g=meta.k8s.io"


def json_response(body: Any, *, status_code: int = 200, content_type: str = JSON) -> Response:
    data = body if isinstance(body, bytes) else _encoder.encode(body)
    return Response(data, status_code=status_code, media_type=content_type)


def status_response(error: StatusError) -> Response:
    return json_response(error.status(), status_code=error.code)


def list_bytes(*, kind: str, api_version: str, metadata: dict[str, Any], items: Sequence[bytes]) -> bytes:
    """``{"kind": "<Kind>List", ..., "items": [<stored bytes>...]}`` without parsing any item."""
    return _encoder.encode(
        {
            "kind": kind,
            "apiVersion": api_version,
            "metadata": metadata,
            "items": [msgspec.Raw(b) for b in items],
        }
    )
