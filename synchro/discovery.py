"""Which resources of a member cluster to sync, in which version: a pure resolver plus its fetch.

``spec.resources`` names groups and plural resources; the member's discovery documents (``/api``,
``/apis``, ``/apis/{group}/{version}``) say which versions are served, which one is preferred, the
kind, scope, verbs and short names. A resource the member does not serve becomes a
:class:`Missing` entry (reported in the status) instead of an error for the whole cluster.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from common.pediacluster import ResourceSelector
from common.types import GVR
from synchro.client import ApiError, KubeClient

BUILTIN_GROUPS = frozenset({"", "apps", "batch", "autoscaling", "policy", "extensions"})
"""Built-in groups besides the ``*.k8s.io`` ones: their kinds have no CRD to read columns from."""


# -- the member's discovery documents, typed (a wrong type is the cluster's UnexpectedAnswer) ------


class VersionInfo(msgspec.Struct, frozen=True):
    """``/version``"""

    gitVersion: str = ""


class APIVersions(msgspec.Struct, frozen=True):
    """``/api``"""

    versions: tuple[str, ...] | None = None


class GroupVersion(msgspec.Struct, frozen=True):
    version: str


class APIGroup(msgspec.Struct, frozen=True):
    name: str
    versions: tuple[GroupVersion, ...] | None = None
    preferredVersion: GroupVersion | None = None


class APIGroupList(msgspec.Struct, frozen=True):
    """``/apis``"""

    groups: tuple[APIGroup, ...] | None = None


class APIResource(msgspec.Struct, frozen=True):
    name: str
    kind: str = ""
    namespaced: bool = False
    verbs: tuple[str, ...] | None = None
    shortNames: tuple[str, ...] | None = None


class APIResourceList(msgspec.Struct, frozen=True):
    """``/api/{version}``, ``/apis/{group}/{version}``"""

    resources: tuple[APIResource, ...] | None = None


class _CRDVersion(msgspec.Struct, frozen=True):
    name: str = ""
    additionalPrinterColumns: list[dict[str, Any]] | None = None


class _CRDSpec(msgspec.Struct, frozen=True):
    group: str = ""
    versions: tuple[_CRDVersion, ...] | None = None


class CustomResourceDefinition(msgspec.Struct, frozen=True):
    spec: _CRDSpec = _CRDSpec()


class CustomResourceDefinitionList(msgspec.Struct, frozen=True):
    items: tuple[CustomResourceDefinition, ...] | None = None


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
    resources: dict[tuple[str, str], tuple[APIResource, ...]] = field(default_factory=dict)
    """(group, version) -> APIResourceList.resources"""
    failed: dict[tuple[str, str], str] = field(default_factory=dict)
    """(group, version) -> error of a discovery document that could not be read: what that
    group serves is unknown (not "nothing"), so its resources must not be purged."""

    def failed_groups(self) -> dict[str, str]:
        """group -> the first discovery error of one of its versions."""
        out: dict[str, str] = {}
        for (group, version), error in sorted(self.failed.items()):
            out.setdefault(group, f"discovery of {gv_path(group, version)} failed: {error}")
        return out


SpecResources = Sequence[ResourceSelector]


def spec_wants(spec_resources: SpecResources) -> list[tuple[str, list[str], list[str]]]:
    """Normalise ``spec.resources`` into (group, resources, versions), merging repeated groups."""
    merged: dict[str, tuple[list[str], list[str]]] = {}
    for entry in spec_resources or ():
        res, vers = merged.setdefault(entry.group, ([], []))
        res.extend(r for r in entry.resources if r not in res)
        vers.extend(v for v in entry.versions if v not in vers)
    return [(g, r, v) for g, (r, v) in merged.items()]


def _listable(item: APIResource) -> bool:
    verbs = item.verbs or ()
    return "/" not in item.name and "list" in verbs and "watch" in verbs


def _target(group: str, version: str, item: APIResource) -> Target:
    return Target(
        gvr=GVR(group, version, item.name),
        kind=item.kind,
        namespaced=item.namespaced,
        verbs=item.verbs or (),
        short_names=item.shortNames or (),
    )


def resolve(
    disc: Discovery,
    spec_resources: SpecResources,
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
                    if name in ("*", item.name):
                        key = (group, item.name)
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
    """Discovery documents of the wanted groups (all groups when ``groups`` is None). ``/api`` or
    ``/apis`` of the wrong shape raise :class:`UnexpectedAnswer` (an :class:`ApiError`); a group
    version's list of the wrong shape marks that group version failed, as an error status does."""
    disc = Discovery()
    core = await client.get_typed("/api", APIVersions)
    disc.versions[""] = list(core.versions or ["v1"])
    apis = await client.get_typed("/apis", APIGroupList)
    for g in apis.groups or ():
        versions = [v.version for v in g.versions or ()]
        preferred = g.preferredVersion.version if g.preferredVersion is not None else None
        if preferred in versions:
            versions.remove(preferred)
            versions.insert(0, preferred)
        disc.versions[g.name] = versions
    wanted = [(g, v) for g, vs in disc.versions.items() if groups is None or g in groups for v in vs]

    async def one(group: str, version: str) -> None:
        try:
            body = await client.get_typed(gv_path(group, version), APIResourceList)
        except ApiError as exc:
            # An unavailable aggregated API (503) or a transient error: unknown, not missing.
            disc.failed[(group, version)] = str(exc)
            return
        disc.resources[(group, version)] = body.resources or ()

    await asyncio.gather(*(one(g, v) for g, v in wanted))
    return disc


def is_builtin_group(group: str) -> bool:
    return group in BUILTIN_GROUPS or group.endswith(".k8s.io")


async def crd_groups(client: KubeClient) -> frozenset[str]:
    """Groups served by CustomResourceDefinitions (for ``syncAllCustomResources``)."""
    path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    body = await client.get_typed(path, CustomResourceDefinitionList)
    return frozenset(item.spec.group for item in body.items or () if item.spec.group)


async def printer_columns(client: KubeClient, target: Target) -> bytes | None:
    """The CRD's ``additionalPrinterColumns`` of the synced version as JSON (None: not a CRD)."""
    name = f"{target.gvr.resource}.{target.gvr.group}"
    try:
        crd = await client.get_typed(
            f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}", CustomResourceDefinition
        )
    except ApiError as exc:
        if exc.code in (403, 404):
            return None
        raise
    for version in crd.spec.versions or ():
        if version.name == target.gvr.version:
            return msgspec.json.encode(version.additionalPrinterColumns or [])
    return b"[]"


def requested(spec_resources: SpecResources, key: tuple[str, str], *, sync_all: bool) -> bool:
    """Whether the spec still asks for ``key`` (group, resource), by name or by ``*``."""
    group, resource = key
    for g, names, _ in spec_wants(spec_resources):
        if g == group and (resource in names or "*" in names):
            return True
    return sync_all and not is_builtin_group(group)


@dataclass(frozen=True, slots=True)
class Removals:
    purge: list[tuple[str, str]]
    """Resources to stop and purge: no longer requested, or seen unserved twice in a row."""
    keep: dict[tuple[str, str], str]
    """Resources not yielded by this discovery but left as they are, with the reason why."""
    missing_once: set[tuple[str, str]]
    """Requested resources this (successful) discovery did not find: purged if the next one
    does not find them either."""


def removals(
    known: list[tuple[str, str]],
    wanted: set[tuple[str, str]],
    disc: Discovery,
    spec_resources: SpecResources,
    *,
    sync_all: bool,
    missing_before: set[tuple[str, str]],
) -> Removals:
    """Decide what to do with synced resources that discovery did not yield this time.

    A purge deletes data, so it needs certainty: a group whose discovery document failed is
    unknown (kept syncing as it is), and a resource still in the spec must be seen missing by two
    successful discoveries in a row (a CRD being re-created, an API server restarting)."""
    failed = disc.failed_groups()
    purge: list[tuple[str, str]] = []
    keep: dict[tuple[str, str], str] = {}
    missing_once: set[tuple[str, str]] = set()
    for key in known:
        if key in wanted:
            continue
        if not requested(spec_resources, key, sync_all=sync_all):
            purge.append(key)
        elif key[0] in failed:
            keep[key] = failed[key[0]]
            if key in missing_before:
                missing_once.add(key)  # still unconfirmed: the next good discovery decides
        elif key in missing_before:
            purge.append(key)
        else:
            keep[key] = "not served by the member in the last discovery; purged if still missing next time"
            missing_once.add(key)
    return Removals(purge, keep, missing_once)
