"""OpenAPI v3 for the Kubernetes-shaped API below each ``/resources`` prefix (``kubectl explain``).

The store keeps objects, not their schemas, so the schemas of built-in kinds come from the models of
the ``kubernetes`` Python client (pydantic models carrying the Kubernetes API field documentation),
converted to the OpenAPI v3 shapes kubectl's explain templates read: ``components.schemas`` with
``x-kubernetes-group-version-kind``, ``paths`` naming the GVK of each resource, ``$ref``/``allOf`` for
nested types. Custom resources (no schema known here) get an open object schema with apiVersion,
kind and metadata. Documents are built once per group/version and content, in a worker thread.

Only the prefixed endpoints are served (``.../resources/openapi/v3[/...]``): the root
``/openapi/v2`` and ``/openapi/v3`` of this aggregated server answer a 404 Status, so the host's
aggregator never merges these definitions into its own spec.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from apiserver.responses import status_response
from common.errors import NotFound
from common.storage import ServedResource

_VERSION_PREFIX = re.compile(r"^(?:[A-Z][a-z]+)*?V\d+(?:(?:alpha|beta)\d+)?(?=[A-Z])")
_DOC_SUFFIX = re.compile(r"\n\nAttributes:\n.*", re.DOTALL)
_lock = threading.Lock()


def _missing(request: Request) -> Response:
    return status_response(
        NotFound(
            f"{request.url.path} is not served: OpenAPI is served below "
            "/apis/clusterpedia.io/v1beta1/resources/openapi/v3",
            details={},
        )
    )


async def v2(request: Request) -> Response:
    return _missing(request)


OPENAPI_V2_PROTOBUF = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
"""What kube-apiserver answers (kubectl asks for the older ``...spec.v2@v1.0+protobuf``, whose "@"
Go's media type parser refuses in an answer)."""


def empty_v2(accept: str) -> Response:
    """An OpenAPI v2 document without definitions, for the all-clusters view: kubectl's client-side
    validation (``create -f``, ``apply``) downloads one before it sends a write, fails without
    it ("failed to download openapi"), and skips the kinds it does not describe. So a write there
    reaches the API tier and gets its 400 naming the clusters (below one cluster the member's own
    document is served). Protobuf (an empty ``openapi_v2.Document`` is zero bytes) or JSON."""
    if "protobuf" in accept:
        return Response(b"", media_type=OPENAPI_V2_PROTOBUF)
    body = {"swagger": "2.0", "info": {"title": "Clusterpedia (all clusters)", "version": "v1"}, "paths": {}}
    return Response(json.dumps(body).encode(), media_type="application/json")


async def v3_index(request: Request) -> Response:
    return _missing(request)


async def v3_group(request: Request) -> Response:
    return _missing(request)


def _gv_path(group: str, version: str) -> str:
    return f"api/{version}" if not group else f"apis/{group}/{version}"


def _kinds(rows: Iterable[ServedResource], group: str, version: str) -> list[tuple[str, str, bool]]:
    """(resource, kind, namespaced) served in group/version, one per resource."""
    seen: dict[str, tuple[str, str, bool]] = {}
    for r in rows:
        if r.group == group and r.version == version:
            seen.setdefault(r.resource, (r.resource, r.kind, r.namespaced))
    return sorted(seen.values())


def index_document(rows: Iterable[ServedResource], path_prefix: str) -> dict[str, Any]:
    """``/openapi/v3``: one entry per served group/version; the URL carries the full request prefix
    (old clients use it as is, new ones strip their own prefix and add it back)."""
    rows = list(rows)
    paths: dict[str, Any] = {}
    for group, version in sorted({(r.group, r.version) for r in rows}):
        digest = hashlib.sha256(json.dumps(_kinds(rows, group, version)).encode()).hexdigest()[:16].upper()
        gv = _gv_path(group, version)
        paths[gv] = {"serverRelativeURL": f"{path_prefix}/openapi/v3/{gv}?hash={digest}"}
    return {"paths": paths}


def _model_class(group: str, version: str, kind: str) -> Any:
    """The ``kubernetes`` client model of a built-in kind (None for custom resources)."""
    from kubernetes import client as k8s

    v = version[:1].upper() + version[1:]
    first = group.split(".")[0] if group else "core"
    prefix = "".join(p[:1].upper() + p[1:] for p in first.split("-"))
    for name in (f"{prefix}{v}{kind}", f"{v}{kind}"):
        cls = getattr(k8s, name, None)
        if cls is not None and hasattr(cls, "model_json_schema"):
            return cls
    return None


def _short_name(model: str) -> str:
    """``V1DeploymentSpec`` -> ``DeploymentSpec`` (what kube's own schemas show as type names)."""
    return _VERSION_PREFIX.sub("", model) or model


def _description(node: dict[str, Any]) -> str:
    return _DOC_SUFFIX.sub("", str(node.get("description", ""))).strip()


def _convert(node: Any, names: dict[str, str]) -> dict[str, Any]:
    """A pydantic JSON-schema node -> an OpenAPI v3 schema node."""
    if not isinstance(node, dict):
        return {}
    description = _description(node)
    if "anyOf" in node:
        options = [o for o in node["anyOf"] if not (isinstance(o, dict) and o.get("type") == "null")]
        out = _convert(options[0], names) if len(options) == 1 else {}
    elif "$ref" in node:
        target = names[node["$ref"].rsplit("/", 1)[-1]]
        out = {"allOf": [{"$ref": f"#/components/schemas/{target}"}]}
    else:
        out = {}
        if "type" in node:
            out["type"] = node["type"]
        if "format" in node:
            out["format"] = node["format"]
        if "enum" in node:
            out["enum"] = node["enum"]
        if node.get("type") == "array":
            out["items"] = _unwrap_ref(_convert(node.get("items", {}), names))
        if isinstance(node.get("additionalProperties"), dict):
            out["additionalProperties"] = _unwrap_ref(_convert(node["additionalProperties"], names))
        if isinstance(node.get("properties"), dict):
            out["type"] = "object"
            out["properties"] = {k: _convert(v, names) for k, v in node["properties"].items()}
            if node.get("required"):
                out["required"] = list(node["required"])
        if not out:  # an untyped field (arbitrary JSON)
            out = {"x-kubernetes-preserve-unknown-fields": True}
    if description:
        out["description"] = description
    return out


def _unwrap_ref(node: dict[str, Any]) -> dict[str, Any]:
    """Array items and map values are plain ``$ref``s in kube's specs, not ``allOf`` wrappers."""
    if list(node) == ["allOf"] and len(node["allOf"]) == 1:
        return dict(node["allOf"][0])
    return node


@lru_cache(maxsize=512)
def _builtin_schemas(group: str, version: str, kind: str) -> tuple[str, str] | None:
    """(root schema name, JSON of the schemas it needs) for a built-in kind, or None."""
    cls = _model_class(group, version, kind)
    if cls is None:
        return None
    with _lock:  # pydantic schema generation is not meant to run concurrently on one model
        raw = cls.model_json_schema(by_alias=True)
    defs: dict[str, Any] = raw.pop("$defs", {})
    root_model = cls.__name__
    defs[root_model] = raw
    names: dict[str, str] = {}
    taken: set[str] = set()
    for model in sorted(defs, key=lambda m: (m != root_model, m)):
        short = _short_name(model)
        names[model] = short if short not in taken else model
        taken.add(names[model])
    schemas = {names[m]: _convert(d, names) for m, d in defs.items()}
    return names[root_model], json.dumps(schemas)


def _custom_schema(group: str, version: str, kind: str) -> dict[str, Any]:
    return {
        "type": "object",
        "description": f"{kind} is a custom resource synchronised by Clusterpedia; its schema is not stored.",
        "x-kubernetes-preserve-unknown-fields": True,
        "properties": {
            "apiVersion": {"type": "string", "description": "APIVersion of the object."},
            "kind": {"type": "string", "description": "Kind of the object."},
            "metadata": {
                "type": "object",
                "x-kubernetes-preserve-unknown-fields": True,
                "description": "Standard object's metadata.",
            },
        },
    }


def group_version_document(rows: Iterable[ServedResource], group: str, version: str) -> dict[str, Any] | None:
    """The OpenAPI v3 document of one group/version (None when nothing of it is served)."""
    kinds = _kinds(rows, group, version)
    if not kinds:
        return None
    schemas: dict[str, Any] = {}
    paths: dict[str, Any] = {}
    prefix = f"/api/{version}" if not group else f"/apis/{group}/{version}"
    for resource, kind, namespaced in kinds:
        gvk = {"group": group, "version": version, "kind": kind}
        built = _builtin_schemas(group, version, kind)
        if built is None:
            root = f"{group}.{version}.{kind}"
            schemas[root] = _custom_schema(group, version, kind)
        else:
            root, needed = built
            for name, schema in json.loads(needed).items():
                schemas.setdefault(name, schema)
        schemas[root] = {**schemas[root], "x-kubernetes-group-version-kind": [gvk]}
        operation = {"get": {"x-kubernetes-group-version-kind": gvk, "responses": {}}}
        if namespaced:
            paths[f"{prefix}/namespaces/{{namespace}}/{resource}"] = operation
            paths[f"{prefix}/namespaces/{{namespace}}/{resource}/{{name}}"] = operation
        paths[f"{prefix}/{resource}"] = operation
        if not namespaced:
            paths[f"{prefix}/{resource}/{{name}}"] = operation
    return {
        "openapi": "3.0.0",
        "info": {"title": "Clusterpedia", "version": version},
        "paths": paths,
        "components": {"schemas": schemas},
    }
