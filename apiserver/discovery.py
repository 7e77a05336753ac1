"""Discovery documents for the Kubernetes-shaped API under each ``/resources`` prefix.

kubectl discovers before it acts: ``/api`` and ``/apis`` (legacy APIVersions / APIGroupList, or the
aggregated ``APIGroupDiscoveryList`` that kubectl 1.27+ asks for first), then ``/api/v1`` and
``/apis/{g}/{v}`` (APIResourceList). We list only what has been synced (``resource_types``): the
union over clusters under the all-clusters prefix, one cluster's rows under ``/clusters/{name}``.
All functions here are pure over those rows.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from common.storage import ServedResource

VERBS = ["get", "list"]
WRITE_VERBS = ("create", "update", "patch", "delete", "deletecollection")
"""Served below one cluster when the member serves them: forwarded to it as the caller."""


def verbs_of(r: ServedResource, *, writable: bool) -> list[str]:
    """``get``, ``list``, and below one cluster (``writable``) the write verbs the member lists."""
    return VERBS + [v for v in WRITE_VERBS if v in r.verbs] if writable else VERBS


_KUBE_VERSION = re.compile(r"^v(\d+)(?:(alpha|beta)(\d+))?$")

# kubectl get all: the built-in members of the "all" category.
_ALL_CATEGORY = {
    ("", "pods"),
    ("", "services"),
    ("", "replicationcontrollers"),
    ("apps", "deployments"),
    ("apps", "replicasets"),
    ("apps", "statefulsets"),
    ("apps", "daemonsets"),
    ("batch", "jobs"),
    ("batch", "cronjobs"),
    ("autoscaling", "horizontalpodautoscalers"),
}


def version_priority(version: str) -> tuple[int, int, int, str]:
    """Sort key putting the preferred version first: v2 > v1 > v1beta2 > v1beta1 > v1alpha1 > other."""
    m = _KUBE_VERSION.match(version)
    if m is None:
        return (3, 0, 0, version)
    major = int(m.group(1))
    stage = {"": 0, "beta": 1, "alpha": 2}[m.group(2) or ""]
    minor = int(m.group(3) or 0)
    return (stage, -major, -minor, version)


def _resources_by_gv(rows: Iterable[ServedResource]) -> dict[tuple[str, str], dict[str, ServedResource]]:
    """(group, version) -> resource -> first row seen (rows of several clusters are one resource)."""
    out: dict[tuple[str, str], dict[str, ServedResource]] = {}
    for r in rows:
        out.setdefault((r.group, r.version), {}).setdefault(r.resource, r)
    return out


def group_versions(rows: Iterable[ServedResource]) -> dict[str, list[str]]:
    """group -> versions, preferred first; groups in name order with the core group ("") first."""
    versions: dict[str, set[str]] = {}
    for r in rows:
        versions.setdefault(r.group, set()).add(r.version)
    return {g: sorted(versions[g], key=version_priority) for g in sorted(versions)}


def _gv(group: str, version: str) -> str:
    return f"{group}/{version}" if group else version


def api_versions(rows: Iterable[ServedResource]) -> dict[str, Any]:
    """``/api``: the core group's versions."""
    return {
        "kind": "APIVersions",
        "versions": group_versions(rows).get("", []),
        "serverAddressByClientCIDRs": [],
    }


def _group_doc(group: str, versions: Sequence[str]) -> dict[str, Any]:
    gvs = [{"groupVersion": _gv(group, v), "version": v} for v in versions]
    return {"name": group, "versions": gvs, "preferredVersion": gvs[0]}


def api_group_list(rows: Iterable[ServedResource]) -> dict[str, Any]:
    """``/apis``: every non-core group."""
    groups = [_group_doc(g, vs) for g, vs in group_versions(rows).items() if g]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(rows: Iterable[ServedResource], group: str) -> dict[str, Any] | None:
    versions = group_versions(rows).get(group)
    if not group or not versions:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group_doc(group, versions)}


def _singular(kind: str) -> str:
    return kind.lower()


def api_resource_list(
    rows: Iterable[ServedResource], group: str, version: str, *, writable: bool = False
) -> dict[str, Any] | None:
    """``/api/v1`` or ``/apis/{g}/{v}``; None when nothing of that group/version is synced.
    ``writable``: one cluster's document (see :func:`verbs_of`)."""
    resources = _resources_by_gv(rows).get((group, version))
    if not resources:
        return None
    items = []
    for name in sorted(resources):
        r = resources[name]
        item: dict[str, Any] = {
            "name": r.resource,
            "singularName": _singular(r.kind),
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": verbs_of(r, writable=writable),
        }
        if r.short_names:
            item["shortNames"] = list(r.short_names)
        if (group, r.resource) in _ALL_CATEGORY:
            item["categories"] = ["all"]
        items.append(item)
    gv = _gv(group, version)
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": items}


def find_resource(
    rows: Iterable[ServedResource], group: str, version: str, resource: str
) -> tuple[ServedResource, list[ServedResource]] | None:
    """The row serving ``resource.group`` in ``version`` (for kind / scope), plus every row of that
    resource in any version (the clusters whose objects a list returns); None when not served."""
    same = [r for r in rows if r.group == group and r.resource == resource]
    exact = [r for r in same if r.version == version]
    if not exact:
        return None
    return exact[0], same


def aggregated(
    rows: Iterable[ServedResource], *, legacy: bool, version: str, writable: bool = False
) -> dict[str, Any]:
    """``APIGroupDiscoveryList`` (apidiscovery.k8s.io ``version``) for ``/api`` (legacy) or ``/apis``."""
    by_gv = _resources_by_gv(rows)
    items = []
    for group, versions in group_versions(rows).items():
        if (group == "") != legacy:
            continue
        version_docs = []
        for v in versions:
            resources = by_gv.get((group, v), {})
            docs = []
            for name in sorted(resources):
                r = resources[name]
                doc: dict[str, Any] = {
                    "resource": r.resource,
                    "responseKind": {"group": group, "version": v, "kind": r.kind},
                    "scope": "Namespaced" if r.namespaced else "Cluster",
                    "singularResource": _singular(r.kind),
                    "verbs": verbs_of(r, writable=writable),
                }
                if r.short_names:
                    doc["shortNames"] = list(r.short_names)
                if (group, r.resource) in _ALL_CATEGORY:
                    doc["categories"] = ["all"]
                docs.append(doc)
            version_docs.append({"version": v, "resources": docs, "freshness": "Current"})
        metadata: dict[str, Any] = {"creationTimestamp": None}
        if group:
            metadata["name"] = group
        items.append({"metadata": metadata, "versions": version_docs})
    return {
        "kind": "APIGroupDiscoveryList",
        "apiVersion": f"apidiscovery.k8s.io/{version}",
        "metadata": {},
        "items": items,
    }
