"""Fills a real store the way the writer does (``StoreWriter.apply``), from plain object dicts.

Tests of the HTTP half use it to put objects — hand-written or read back from real member clusters
with ``kubectl get -o json`` — into any store without running the sync pipeline.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from common.events import ResourceType, Upsert
from common.storage import StoreWriter
from common.types import CLUSTER_ANNOTATION, MEMBER_RV_ANNOTATION


def stored_bytes(cluster: str, obj: Mapping[str, Any]) -> bytes:
    """The object as the synchro stores it (synchro/transform.py): no managedFields, the cluster and
    member-resourceVersion annotations set, metadata first with resourceVersion first in it."""
    src = json.loads(json.dumps(obj))
    meta = src.pop("metadata", {})
    meta.pop("managedFields", None)
    rv = str(meta.pop("resourceVersion", "") or "")
    annotations = meta.setdefault("annotations", {})
    annotations[CLUSTER_ANNOTATION] = cluster
    if rv:
        annotations[MEMBER_RV_ANNOTATION] = rv
    out = {"metadata": {"resourceVersion": rv if rv.isdigit() else "0", **meta}, **src}
    return json.dumps(out, separators=(",", ":")).encode()


def add_type(
    store: StoreWriter,
    cluster: str,
    group: str,
    version: str,
    resource: str,
    kind: str,
    *,
    namespaced: bool = True,
    short_names: Iterable[str] = (),
    printer_columns: bytes = b"",
) -> None:
    event = ResourceType(
        cluster=cluster,
        group=group,
        version=version,
        resource=resource,
        kind=kind,
        namespaced=namespaced,
        short_names=list(short_names),
        verbs=["get", "list", "watch"],
        storage_version=version,
        printer_columns=printer_columns,
    )
    store.apply([], [], [event])


def add_objects(
    store: StoreWriter,
    cluster: str,
    group: str,
    version: str,
    resource: str,
    objects: Iterable[Mapping[str, Any]],
) -> int:
    events: list[Upsert] = []
    for i, obj in enumerate(objects):
        meta = obj.get("metadata", {})
        owner = next((r.get("uid", "") for r in meta.get("ownerReferences", []) if r.get("controller")), "")
        event = Upsert(
            cluster=cluster,
            group=group,
            version=version,
            resource=resource,
            kind=obj.get("kind", ""),
            namespace=meta.get("namespace", ""),
            name=meta["name"],
            uid=meta.get("uid", f"uid-{cluster}-{resource}-{i}"),
            resource_version=int(meta.get("resourceVersion", i + 1)),
            epoch=1,
            owner_uid=owner,
            created_at=meta.get("creationTimestamp", ""),
            object=stored_bytes(cluster, obj),
        )
        events.append(event)
    if events:  # sorted by key, as the writer applies them
        store.apply(sorted(events, key=lambda e: (e.namespace, e.name)), [], [])
    return len(events)
