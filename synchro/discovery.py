"""Which resources of a member cluster to sync, in which version: a pure resolver plus its fetch.

``spec.resources`` names groups and plural resources; the member's discovery documents (``/api``,
``/apis``, ``/apis/{group}/{version}``) say which versions are served, which one is preferred, the
kind, scope, verbs and short names. A resource the member does not serve becomes a
:class:`Missing` entry (reported in the status) instead of an error for the whole cluster.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import msgspec

from common.types import GVR
from synchro.client import ApiError, KubeClient

BUILTIN_GROUPS = frozenset({"", "apps", "batch", "autoscaling", "policy", "extensions"})
"""Built-in groups besides the ``*.k8s.io`` ones: their kinds have no CRD to read columns from."""


@dataclass(frozen=True, slots=True)
class Target:
    """One resource to list and watch, in one version."""

    gvr: GVR
    kind: str
    namespaced: bool
    verbs: tuple[str, ...] = ()
    short_names: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Missing:
    group: str
    resource: str
    message: str


@dataclass(slots=True)
class Discovery:
    """The member's discovery: group -> (versions in preference order, per-version resources)."""

    versions: dict[str, list[str]] = field(default_factory=dict)
    resources: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    """(group, version) -> APIResourceList.resources"""


def spec_wants(spec_resources: list[dict[str, Any]]) -> list[tuple[str, list[str], list[str]]]:
    """Normalise ``spec.resources`` into (group, resources, versions), merging repeated groups."""
    merged: dict[str, tuple[list[str], list[str]]] = {}
    for entry in spec_resources or ():
        group = str(entry.get("group") or "")
        res, vers = merged.setdefault(group, ([], []))
        res.extend(r for r in entry.get("resources") or () if r not in res)
        vers.extend(v for v in entry.get("versions") or () if v not in vers)
    return [(g, r, v) for g, (r, v) in merged.items()]


def _listable(item: dict[str, Any]) -> bool:
    verbs = item.get("verbs") or ()
    return "/" not in item.get("name", "") and "list" in verbs and "watch" in verbs


def _target(group: str, version: str, item: dict[str, Any]) -> Target:
    return Target(
        gvr=GVR(group, version, item["name"]),
        kind=item.get("kind", ""),
        namespaced=bool(item.get("namespaced")),
        verbs=tuple(item.get("verbs") or ()),
        short_names=tuple(item.get("shortNames") or ()),
    )


def resolve(
    disc: Discovery,
    spec_resources: list[dict[str, Any]],
    *,
    custom_groups: frozenset[str] = frozenset(),
) -> tuple[list[Target], list[Missing]]:
    """Targets for the spec (first served version of ``versions``, else the preferred one), plus
    the requested resources the member does not serve. ``custom_groups`` (groups served by CRDs)
    are added whole when ``syncAllCustomResources`` is set by the caller."""
    targets: dict[tuple[str, str], Target] = {}
    missing: list[Missing] = []
    wants = spec_wants(spec_resources)
    for group in sorted(custom_groups):
        if not any(g == group for g, _, _ in wants):
            wants.append((group, ["*"], []))
    for group, names, versions in wants:
        served = disc.versions.get(group)
        if not served:
            for name in names:
                shown = "*" if name == "*" else name
                missing.append(Missing(group, shown, f"group {group!r} is not served by the cluster"))
            continue
        order = [v for v in versions if v in served] if versions else served
        if not order:
            for name in names:
                missing.append(
                    Missing(group, name, f"none of versions {versions} of group {group!r} is served")
                )
            continue
        for name in names:
            found = False
            for version in order:
                for item in disc.resources.get((group, version), ()):
                    if not _listable(item):
                        continue
                    if name in ("*", item["name"]):
                        key = (group, item["name"])
                        if key not in targets:
                            targets[key] = _target(group, version, item)
                        found = True
                if found and name != "*":
                    break
            if not found:
                where = f"{group}/{'|'.join(order)}" if group else "v1"
                missing.append(
                    Missing(group, name, f"resource {name!r} not found in {where} (or not listable)")
                )
    return list(targets.values()), missing


def gv_path(group: str, version: str) -> str:
    return f"/api/{version}" if not group else f"/apis/{group}/{version}"


async def fetch_discovery(client: KubeClient, groups: set[str] | None) -> Discovery:
    """Discovery documents of the wanted groups (all groups when ``groups`` is None)."""
    disc = Discovery()
    core = await client.get_json("/api")
    disc.versions[""] = list(core.get("versions") or ["v1"])
    apis = await client.get_json("/apis")
    for g in apis.get("groups") or ():
        versions = [v["version"] for v in g.get("versions") or ()]
        preferred = (g.get("preferredVersion") or {}).get("version")
        if preferred in versions:
            versions.remove(preferred)
            versions.insert(0, preferred)
        disc.versions[g["name"]] = versions
    wanted = [(g, v) for g, vs in disc.versions.items() if groups is None or g in groups for v in vs]

    async def one(group: str, version: str) -> None:
        try:
            body = await client.get_json(gv_path(group, version))
        except ApiError:
            return  # an unavailable aggregated API: its resources read as missing
        disc.resources[(group, version)] = list(body.get("resources") or ())

    await asyncio.gather(*(one(g, v) for g, v in wanted))
    return disc


def is_builtin_group(group: str) -> bool:
    return group in BUILTIN_GROUPS or group.endswith(".k8s.io")


async def crd_groups(client: KubeClient) -> frozenset[str]:
    """Groups served by CustomResourceDefinitions (for ``syncAllCustomResources``)."""
    body = await client.get_json("/apis/apiextensions.k8s.io/v1/customresourcedefinitions")
    return frozenset(item["spec"]["group"] for item in body.get("items") or ())


async def printer_columns(client: KubeClient, target: Target) -> bytes | None:
    """The CRD's ``additionalPrinterColumns`` of the synced version as JSON (None: not a CRD)."""
    name = f"{target.gvr.resource}.{target.gvr.group}"
    try:
        crd = await client.get_json(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
    except ApiError as exc:
        if exc.code in (403, 404):
            return None
        raise
    for version in crd.get("spec", {}).get("versions") or ():
        if version.get("name") == target.gvr.version:
            return msgspec.json.encode(version.get("additionalPrinterColumns") or [])
    return b"[]"
