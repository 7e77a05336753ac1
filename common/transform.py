"""Turn a member cluster's raw object bytes into the queue's ``Upsert`` / ``Delete`` events.

This is the per-object hot path, so only what has to change is decoded: the object's top level and
its ``metadata`` are split into ``msgspec.Raw`` values (byte slices of the input, not parsed), the
few metadata fields the events need are decoded from their slices, the annotations are decoded,
trimmed (the last-applied one when configured) and stamped with the cluster, ``managedFields`` is
dropped, and ``apiVersion``/``kind`` (which list items lack) are set. The encoder then writes the
untouched slices back verbatim, so ``spec``/``status`` -- most of an object -- are copied, never
turned into Python objects (profiled: decoding and re-encoding whole objects was ~28 % of the
synchro's CPU). Nothing about the object is kept afterwards.

Secrets are stored with their values emptied (``synchro.redact_secret_values``, on by default): the
keys of ``data`` and ``stringData`` stay (kubectl's DATA column counts them), the values become
"", the last-applied annotation (which repeats them) goes, and the annotation
:data:`REDACTED_ANNOTATION` says so. The store then holds no member credentials, whoever can read it.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from common.events import Delete, Upsert
from common.types import CLUSTER_ANNOTATION, EVENT_SUBJECT_FIELDS, GVR, MEMBER_RV_ANNOTATION

LAST_APPLIED_ANNOTATION = "kubectl.kubernetes.io/last-applied-configuration"
REDACTED_ANNOTATION = "clusterpedia.io/redacted"
"""Set to ``values`` on a Secret whose data/stringData values were emptied before storing."""

_encoder = msgspec.json.Encoder()


class _Meta(msgspec.Struct):
    name: str = ""
    namespace: str = ""
    resourceVersion: str = ""


class _MetaOnly(msgspec.Struct):
    metadata: _Meta = msgspec.field(default_factory=_Meta)


_meta_decoder = msgspec.json.Decoder(_MetaOnly)

RawFields = dict[str, msgspec.Raw]
_fields_decoder = msgspec.json.Decoder(RawFields)
_opt_fields_decoder = msgspec.json.Decoder(RawFields | None)
_str_decoder = msgspec.json.Decoder(str | None)
_annotations_decoder = msgspec.json.Decoder(dict[str, str] | None)
_map_decoder = msgspec.json.Decoder(dict[str, msgspec.Raw] | None)
_EMPTY = msgspec.Raw(b'""')


_Field = msgspec.Raw | dict[str, msgspec.Raw] | dict[str, msgspec.Raw | dict[str, str]] | str | None
"""A top-level field of an object on its way out: untouched bytes, or a rebuilt mapping."""


def _redacted(raw: msgspec.Raw | None) -> dict[str, msgspec.Raw] | None:
    """A data/stringData map with every value emptied (its keys kept)."""
    values = _map_decoder.decode(raw) if raw is not None else None
    return None if values is None else dict.fromkeys(values, _EMPTY)


class _OwnerRef(msgspec.Struct):
    uid: str | None = None
    controller: bool | None = None


_owners_decoder = msgspec.json.Decoder(list[_OwnerRef] | None)
_ref_decoder = msgspec.json.Decoder(_OwnerRef | None)


def _text(fields: RawFields, key: str) -> str:
    raw = fields.get(key)
    return (_str_decoder.decode(raw) or "") if raw is not None else ""


class NamespaceFilter:
    """``spec.namespaces``: include (empty: all) minus exclude; cluster-scoped objects always pass."""

    __slots__ = ("exclude", "include")

    def __init__(self, include: Iterable[str] | None = None, exclude: Iterable[str] | None = None) -> None:
        self.include = frozenset(include or ())
        self.exclude = frozenset(exclude or ())

    def allows(self, namespace: str) -> bool:
        if not namespace:
            return True
        if self.include and namespace not in self.include:
            return False
        return namespace not in self.exclude


def parse_resource_version(value: str) -> int:
    """resourceVersions are opaque strings to clients, but etcd-backed ones are integers; the
    writer's guard and the epoch design need them as integers."""
    try:
        return int(value)
    except ValueError:
        return 0


class ObjectTransformer:
    """Builds events for one resource of one cluster (the per-resource constants bound once)."""

    __slots__ = (
        "_api_version",
        "_subject",
        "cluster",
        "gvr",
        "kind",
        "namespaces",
        "redact_values",
        "strip_last_applied",
    )

    def __init__(
        self,
        cluster: str,
        gvr: GVR,
        kind: str,
        *,
        strip_last_applied: bool = True,
        namespaces: NamespaceFilter | None = None,
        redact_values: bool = False,
    ) -> None:
        """``redact_values``: empty the values of ``data`` and ``stringData`` (for Secrets)."""
        self.cluster = cluster
        self.redact_values = redact_values
        self.gvr = gvr
        self.kind = kind
        self.strip_last_applied = strip_last_applied
        self.namespaces = namespaces or NamespaceFilter()
        self._api_version = gvr.api_version
        self._subject = EVENT_SUBJECT_FIELDS.get((gvr.group, gvr.resource))

    def upsert(self, raw: bytes | msgspec.Raw, epoch: int) -> Upsert | None:
        """The Upsert for one object, or None when the namespace filter drops it.

        ``raw`` may be a ``msgspec.Raw`` slice of a list page: it is read in place, not copied."""
        obj = _fields_decoder.decode(raw)
        meta_raw = obj.get("metadata")
        meta = (_opt_fields_decoder.decode(meta_raw) if meta_raw is not None else None) or {}
        namespace = _text(meta, "namespace")
        if not self.namespaces.allows(namespace):
            return None
        meta.pop("managedFields", None)
        ann_raw = meta.get("annotations")
        annotations = (_annotations_decoder.decode(ann_raw) if ann_raw is not None else None) or {}
        if self.strip_last_applied or self.redact_values:
            annotations.pop(LAST_APPLIED_ANNOTATION, None)
        annotations[CLUSTER_ANNOTATION] = self.cluster
        member_rv = _text(meta, "resourceVersion")
        if member_rv:
            annotations[MEMBER_RV_ANNOTATION] = member_rv
        resource_version = parse_resource_version(member_rv)
        # metadata first, resourceVersion first in it: the store splices its revision there when
        # the object is served (common.storage.revisions.stamp).
        out_meta: dict[str, msgspec.Raw | dict[str, str] | str] = {"resourceVersion": str(resource_version)}
        out_meta.update((k, v) for k, v in meta.items() if k != "resourceVersion")
        out_meta["annotations"] = annotations
        out: dict[
            str,
            msgspec.Raw | dict[str, msgspec.Raw] | dict[str, msgspec.Raw | dict[str, str] | str] | str | None,
        ]
        out = {"metadata": out_meta}
        out.update((k, v) for k, v in obj.items() if k != "metadata")
        if self.redact_values:
            annotations[REDACTED_ANNOTATION] = "values"
            for key in ("data", "stringData"):
                if key in obj:
                    out[key] = _redacted(obj[key])
        # List items carry neither apiVersion nor kind; watch events do, in the watched version.
        out["apiVersion"] = self._api_version
        out["kind"] = self.kind
        owner_uid = ""
        owners_raw = meta.get("ownerReferences")
        for ref in (_owners_decoder.decode(owners_raw) if owners_raw is not None else None) or ():
            if ref.controller:
                owner_uid = ref.uid or ""
                break
        if self._subject is not None and (subject_raw := obj.get(self._subject)) is not None:
            subject = _ref_decoder.decode(subject_raw)
            owner_uid = (subject.uid if subject is not None else None) or ""
        return Upsert(
            cluster=self.cluster,
            group=self.gvr.group,
            version=self.gvr.version,
            resource=self.gvr.resource,
            kind=self.kind,
            namespace=namespace,
            name=_text(meta, "name"),
            uid=_text(meta, "uid"),
            resource_version=resource_version,
            epoch=epoch,
            owner_uid=owner_uid,
            created_at=_text(meta, "creationTimestamp"),
            object=_encoder.encode(out),
        )

    def delete(self, raw: bytes | msgspec.Raw) -> Delete | None:
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


def resource_version_of(raw: bytes | msgspec.Raw) -> str:
    """metadata.resourceVersion of an object (a BOOKMARK carries only that)."""
    return _meta_decoder.decode(raw).metadata.resourceVersion
