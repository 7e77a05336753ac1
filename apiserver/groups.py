"""The documents of Clusterpedia's own API groups, and the rendering of collection resources.

An aggregated apiserver serves its groups' discovery (``/apis``, ``/apis/{group}``,
``/apis/{group}/{version}``): the kube-aggregator reads ``/apis/{group}/{version}`` to mark the
APIService Available and to merge the group into the host's discovery, which is how the seed's
``kubectl api-resources | grep pedia.clusterpedia.io`` finds ``collectionresources`` and ``resources``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from importlib import metadata as importlib_metadata
from typing import Any

import msgspec
from starlette.responses import Response

from apiserver.collections import Collection
from apiserver.printers.format import since
from apiserver.responses import ObjectRendering, json_response, table_content_type
from apiserver.types import ListPage

_decoder = msgspec.json.Decoder()

CLUSTERPEDIA_GROUP = "clusterpedia.io"
PEDIA_GROUP = "pedia.clusterpedia.io"
COLLECTION_GROUP_VERSIONS = {(CLUSTERPEDIA_GROUP, "v1beta1"), (PEDIA_GROUP, "v1alpha1")}


def _group(name: str, version: str) -> dict[str, Any]:
    gv = {"groupVersion": f"{name}/{version}", "version": version}
    return {"name": name, "versions": [gv], "preferredVersion": gv}


GROUPS: dict[str, dict[str, Any]] = {
    CLUSTERPEDIA_GROUP: {"kind": "APIGroup", "apiVersion": "v1", **_group(CLUSTERPEDIA_GROUP, "v1beta1")},
    PEDIA_GROUP: {"kind": "APIGroup", "apiVersion": "v1", **_group(PEDIA_GROUP, "v1alpha1")},
}

APIS: dict[str, Any] = {
    "kind": "APIGroupList",
    "apiVersion": "v1",
    "groups": [_group(CLUSTERPEDIA_GROUP, "v1beta1"), _group(PEDIA_GROUP, "v1alpha1")],
}


def _resource_list(group: str, version: str) -> dict[str, Any]:
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}",
        "resources": [
            {
                "name": "collectionresources",
                "singularName": "collectionresource",
                "namespaced": False,
                "kind": "CollectionResource",
                "verbs": ["get", "list"],
            },
            {
                "name": "resources",
                "singularName": "resources",
                "namespaced": False,
                "kind": "Resources",
                # kubectl api-resources hides resources without verbs; GETs below it are the API
                "verbs": ["get"],
            },
        ],
    }


RESOURCE_LISTS: dict[tuple[str, str], dict[str, Any]] = {
    (CLUSTERPEDIA_GROUP, "v1beta1"): _resource_list(CLUSTERPEDIA_GROUP, "v1beta1"),
    (PEDIA_GROUP, "v1alpha1"): _resource_list(PEDIA_GROUP, "v1alpha1"),
}


def aggregated_apis(version: str) -> dict[str, Any]:
    """``/apis`` as an ``APIGroupDiscoveryList`` (the aggregator asks for it first)."""
    items = []
    for (group, gv), doc in sorted(RESOURCE_LISTS.items()):
        resources = [
            {
                "resource": r["name"],
                "responseKind": {"group": group, "version": gv, "kind": r["kind"]},
                "scope": "Cluster",
                "singularResource": r["singularName"],
                "verbs": r["verbs"],
            }
            for r in doc["resources"]
        ]
        items.append(
            {
                "metadata": {"name": group, "creationTimestamp": None},
                "versions": [{"version": gv, "resources": resources, "freshness": "Current"}],
            }
        )
    return {
        "kind": "APIGroupDiscoveryList",
        "apiVersion": f"apidiscovery.k8s.io/{version}",
        "metadata": {},
        "items": items,
    }


def version_info() -> dict[str, Any]:
    """``/version``, shaped like kube-apiserver's (kubectl version prints gitVersion)."""
    try:
        version = importlib_metadata.version("clusterpedia-py")
    except importlib_metadata.PackageNotFoundError:
        version = "0.0.0"
    major, _, rest = version.partition(".")
    minor = rest.partition(".")[0]
    return {
        "major": major,
        "minor": minor,
        "gitVersion": f"v{version}",
        "gitCommit": "",
        "gitTreeState": "",
        "buildDate": "",
        "goVersion": "",
        "compiler": "cpython",
        "platform": "linux/amd64",
    }


def _resource_types(collection: Collection) -> list[dict[str, str]]:
    return [{"group": gr.group, "resource": gr.resource} for gr in collection.resources]


def _column(name: str, description: str, fmt: str = "") -> dict[str, Any]:
    return {"name": name, "type": "string", "format": fmt, "description": description, "priority": 0}


def render_collection_list(
    collections: Sequence[Collection], group: str, version: str, rendering: ObjectRendering
) -> Response:
    """``kubectl get collectionresources``: NAME, RESOURCES."""
    api_version = f"{group}/{version}"
    items = [
        {
            "kind": "CollectionResource",
            "apiVersion": api_version,
            "metadata": {"name": c.name, "creationTimestamp": None},
            "resourceTypes": _resource_types(c),
        }
        for c in collections
    ]
    if rendering.kind == "table":
        meta_v = rendering.meta_version
        table = {
            "kind": "Table",
            "apiVersion": f"meta.k8s.io/{meta_v}",
            "metadata": {},
            "columnDefinitions": [
                _column("Name", "Name of the collection resource.", "name"),
                _column("Resources", "The group/resources the collection gathers."),
            ],
            "rows": [
                {
                    "cells": [c.name, ",".join(c.resource_names)],
                    "object": {
                        "kind": "PartialObjectMetadata",
                        "apiVersion": f"meta.k8s.io/{meta_v}",
                        "metadata": {"name": c.name, "creationTimestamp": None},
                    },
                }
                for c in collections
            ],
        }
        return json_response(table, content_type=table_content_type(meta_v))
    if rendering.kind == "partial":
        return json_response(
            {
                "kind": "PartialObjectMetadataList",
                "apiVersion": f"meta.k8s.io/{rendering.meta_version}",
                "metadata": {},
                "items": [
                    {
                        "kind": "PartialObjectMetadata",
                        "apiVersion": f"meta.k8s.io/{rendering.meta_version}",
                        "metadata": it["metadata"],
                    }
                    for it in items
                ],
            }
        )
    return json_response(
        {"kind": "CollectionResourceList", "apiVersion": api_version, "metadata": {}, "items": items}
    )


def render_collection(
    collection: Collection,
    page: ListPage,
    list_metadata: dict[str, Any],
    group: str,
    version: str,
    rendering: ObjectRendering,
    now: dt.datetime,
) -> Response:
    """``kubectl get collectionresources workloads``: CLUSTER GROUP VERSION KIND NAMESPACE NAME AGE."""
    api_version = f"{group}/{version}"
    if rendering.kind == "table":
        meta_v = rendering.meta_version
        rows = []
        for it in page.items:
            obj = _decoder.decode(it.object)
            metadata = obj.get("metadata", {}) if isinstance(obj, dict) else {}
            rows.append(
                {
                    "cells": [
                        it.cluster,
                        it.group,
                        it.version,
                        it.kind,
                        it.namespace,
                        it.name,
                        since(metadata.get("creationTimestamp"), now),
                    ],
                    "object": {
                        "kind": "PartialObjectMetadata",
                        "apiVersion": f"meta.k8s.io/{meta_v}",
                        "metadata": metadata,
                    },
                }
            )
        table = {
            "kind": "Table",
            "apiVersion": f"meta.k8s.io/{meta_v}",
            "metadata": list_metadata,
            "columnDefinitions": [
                _column("Cluster", "The member cluster of the object."),
                _column("Group", "API group of the object."),
                _column("Version", "API version of the object."),
                _column("Kind", "Kind of the object."),
                _column("Namespace", "Namespace of the object."),
                _column("Name", "Name of the object.", "name"),
                _column("Age", "Time since the object was created."),
            ],
            "rows": rows,
        }
        return json_response(table, content_type=table_content_type(meta_v))
    body = {
        "kind": "CollectionResource",
        "apiVersion": api_version,
        "metadata": {"name": collection.name, "creationTimestamp": None, **list_metadata},
        "resourceTypes": _resource_types(collection),
        "items": [msgspec.Raw(it.object) for it in page.items],
    }
    return json_response(body)
