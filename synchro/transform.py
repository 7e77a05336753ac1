"""Turn a member cluster's raw object bytes into the queue's ``Upsert`` / ``Delete`` events.

This is the per-object hot path. Each object is decoded once by msgspec into plain dicts, trimmed
(``managedFields`` always, the last-applied annotation when configured), stamped with the cluster
annotation and the ``apiVersion``/``kind`` that list items lack, and encoded once. Nothing about
the object is kept afterwards.
"""

from __future__ import annotations

from typing import Any

import msgspec

from common.events import Delete, Upsert
from common.types import CLUSTER_ANNOTATION, GVR

LAST_APPLIED_ANNOTATION = "kubectl.kubernetes.io/last-applied-configuration"

_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()


class _Meta(msgspec.Struct):
    name: str = ""
    namespace: str = ""
    resourceVersion: str = ""


class _MetaOnly(msgspec.Struct):
    metadata: _Meta = msgspec.field(default_factory=_Meta)


_meta_decoder = msgspec.json.Decoder(_MetaOnly)


class NamespaceFilter:
    """``spec.namespaces``: include (empty: all) minus exclude; cluster-scoped objects always pass."""

    __slots__ = ("exclude", "include")

    def __init__(self, include: list[str] | None = None, exclude: list[str] | None = None) -> None:
        self.include = frozenset(include or ())
        self.exclude = frozenset(exclude or ())

    def allows(self, namespace: str) -> bool:
        if not namespace:
            return True
        if self.include and namespace not in self.include:
            return False
        return namespace not in self.exclude

    @property
    def active(self) -> bool:
        return bool(self.include or self.exclude)


def parse_resource_version(value: str) -> int:
    """resourceVersions are opaque strings to clients, but etcd-backed ones are integers; the
    writer's guard and the epoch design need them as integers."""
    try:
        return int(value)
    except ValueError:
        return 0


class ObjectTransformer:
    """Builds events for one resource of one cluster (the per-resource constants bound once)."""

    __slots__ = ("_api_version", "cluster", "gvr", "kind", "namespaces", "strip_last_applied")

    def __init__(
        self,
        cluster: str,
        gvr: GVR,
        kind: str,
        *,
        strip_last_applied: bool = True,
        namespaces: NamespaceFilter | None = None,
    ) -> None:
        self.cluster = cluster
        self.gvr = gvr
        self.kind = kind
        self.strip_last_applied = strip_last_applied
        self.namespaces = namespaces or NamespaceFilter()
        self._api_version = gvr.api_version

    def upsert(self, raw: bytes, epoch: int) -> Upsert | None:
        """The Upsert for one object, or None when the namespace filter drops it."""
        obj: dict[str, Any] = _decoder.decode(raw)
        meta: dict[str, Any] = obj.get("metadata") or {}
        namespace: str = meta.get("namespace") or ""
        if not self.namespaces.allows(namespace):
            return None
        meta.pop("managedFields", None)
        annotations: dict[str, str] | None = meta.get("annotations")
        if annotations is None:
            annotations = meta["annotations"] = {}
        elif self.strip_last_applied:
            annotations.pop(LAST_APPLIED_ANNOTATION, None)
        annotations[CLUSTER_ANNOTATION] = self.cluster
        obj["metadata"] = meta
        # List items carry neither apiVersion nor kind; watch events do, in the watched version.
        obj["apiVersion"] = self._api_version
        obj["kind"] = self.kind
        owner_uid = ""
        for ref in meta.get("ownerReferences") or ():
            if ref.get("controller"):
                owner_uid = ref.get("uid", "")
                break
        return Upsert(
            cluster=self.cluster,
            group=self.gvr.group,
            version=self.gvr.version,
            resource=self.gvr.resource,
            kind=self.kind,
            namespace=namespace,
            name=meta.get("name", ""),
            uid=meta.get("uid", ""),
            resource_version=parse_resource_version(meta.get("resourceVersion", "")),
            epoch=epoch,
            owner_uid=owner_uid,
            created_at=meta.get("creationTimestamp") or "",
            object=_encoder.encode(obj),
        )

    def delete(self, raw: bytes) -> Delete | None:
        """The Delete for a DELETED watch event's object (its last state), or None when filtered."""
        meta = _meta_decoder.decode(raw).metadata
        if not self.namespaces.allows(meta.namespace):
            return None
        return Delete(
            cluster=self.cluster,
            group=self.gvr.group,
            version=self.gvr.version,
            resource=self.gvr.resource,
            namespace=meta.namespace,
            name=meta.name,
            resource_version=parse_resource_version(meta.resourceVersion),
        )


def resource_version_of(raw: bytes) -> str:
    """metadata.resourceVersion of an object (a BOOKMARK carries only that)."""
    return _meta_decoder.decode(raw).metadata.resourceVersion
