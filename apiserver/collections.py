"""Collection resources: several group/resources listed as one (`kubectl get collectionresources workloads`).

Collections come from two places:

- ``Settings.apiserver.collections`` (``workloads`` = deployments.apps + daemonsets.apps +
  statefulsets.apps by default), fixed for the life of the process;
- ``CollectionResourceDefinition`` objects (``policy.clusterpedia.io/v1alpha1``, cluster-scoped)
  that operators create in the host with kubectl. The API tier reads their list with the host
  credentials through the same reader as the PediaClusters (``apiserver/pediaclusters.py``: one
  LIST per ``refresh_seconds`` at most, only when a collection request asks, the last good list
  kept while the host does not answer). Each valid object is served beside the configured ones.

The objects are hostile input: the CRD's schema refuses most mistakes at ``kubectl create``, and
each object is validated again here (``parse_definition``); an invalid one, one named like a
configured collection (the settings win: a deployment's configured names cannot be redefined from
the host), or one beyond ``MAX_CUSTOM_COLLECTIONS`` is left out, with the reason logged once.

A group's resources may be given as ``["*"]``: every resource of that group the store has synced
(from the catalog, expanded per request, so a newly synced resource joins the collection).

A collection list is one search of the store over all its members (``Search.group_resources``)
with every search condition applying, ordered by cluster, then group and resource (so kinds stay
together within a cluster, as the seed's output shows), then namespace and name; keyset paging and
continue work as for any list.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from apiserver.pediaclusters import PediaClusterDirectory
from apiserver.types import GroupResource, Search
from common.errors import NotFound
from common.settings import ApiserverSettings

log = logging.getLogger(__name__)

COLLECTION_GROUP_RESOURCE = "collectionresources.pedia.clusterpedia.io"
DEFINITIONS = "/apis/policy.clusterpedia.io/v1alpha1/collectionresourcedefinitions"
"""Where the host serves the CollectionResourceDefinitions (charts/clusterpedia/crds/)."""
WILDCARD = "*"
"""``resources: ["*"]``: every synced resource of the group."""
MAX_CUSTOM_COLLECTIONS = 256
"""CollectionResourceDefinitions served at most (by name order); more are left out and logged."""
MAX_COLLECTION_MEMBERS = 128
"""Group/resources one collection may name (the CRD allows 32 groups x 64 resources; a search over
more resources than this is no longer one cheap query)."""

_GR = re.compile(r"(\*|[a-z0-9]([-a-z0-9]*[a-z0-9])?)(\.[a-z0-9]([-a-z0-9.]*[a-z0-9])?)?")
_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_GROUP = re.compile(r"([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)?")


@dataclasses.dataclass(frozen=True, slots=True)
class Collection:
    name: str
    resources: tuple[GroupResource, ...]
    """Members; ``GroupResource(group, "*")`` for every synced resource of the group."""

    @property
    def resource_names(self) -> list[str]:
        """``["deployments.apps", "*.batch", ...]`` as configured and as ``kubectl get
        collectionresources`` prints."""
        return [f"{gr.resource}.{gr.group}" if gr.group else gr.resource for gr in self.resources]


def parse_group_resource(text: str) -> GroupResource:
    """``deployments.apps`` -> (apps, deployments); ``pods`` -> ("", pods); ``*.apps`` -> (apps, *)."""
    if not _GR.fullmatch(text):
        raise ValueError(f'invalid collection member "{text}": expected <resource>.<group> or <resource>')
    resource, _, group = text.partition(".")
    return GroupResource(group, resource)


def list_collections(settings: ApiserverSettings) -> list[Collection]:
    """Every configured collection, by name. Raises ValueError for a malformed configuration."""
    return [
        Collection(name, tuple(parse_group_resource(m) for m in members))
        for name, members in sorted(settings.collections.items())
    ]


def get_collection(settings: ApiserverSettings, name: str) -> Collection:
    return find_collection(list_collections(settings), name)


def find_collection(collections: Iterable[Collection], name: str) -> Collection:
    for collection in collections:
        if collection.name == name:
            return collection
    raise NotFound(
        f'{COLLECTION_GROUP_RESOURCE} "{name}" not found',
        details={"name": name, "group": "pedia.clusterpedia.io", "kind": "collectionresources"},
    )


def collection_search(settings: ApiserverSettings, name: str, search: Search) -> Search:
    """The search over the members of configured collection ``name``. Raises NotFound."""
    return member_search(get_collection(settings, name), search)


def member_search(collection: Collection, search: Search) -> Search:
    """The search over the members of ``collection`` (``search`` parsed with any
    group/version/resource: they are replaced by the collection's members; wildcards must have
    been expanded, see ``expand``)."""
    return dataclasses.replace(
        search, group="", version="", resource="", group_resources=collection.resources
    )


def expand(collection: Collection, synced: Iterable[tuple[str, str]]) -> Collection:
    """``collection`` with each ``group/*`` replaced by the synced (group, resource) pairs of that
    group, by resource name; explicit members stay as they are (they may be synced later)."""
    groups = {gr.group for gr in collection.resources if gr.resource == WILDCARD}
    if not groups:
        return collection
    found = sorted({(g, r) for g, r in synced if g in groups})
    members: dict[GroupResource, None] = {}
    for gr in collection.resources:
        if gr.resource == WILDCARD:
            members.update((GroupResource(g, r), None) for g, r in found if g == gr.group)
        else:
            members[gr] = None
    return dataclasses.replace(collection, resources=tuple(members))


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{what} is not a string")
    return value


def parse_definition(obj: Any) -> Collection:
    """A CollectionResourceDefinition as a Collection. Raises ValueError with the reason."""
    if not isinstance(obj, dict):
        raise ValueError("not an object")
    metadata = obj.get("metadata")
    name = _text(metadata.get("name") if isinstance(metadata, dict) else None, "metadata.name")
    if len(name) > 63 or not _NAME.fullmatch(name):
        raise ValueError("metadata.name is not a DNS label (lowercase letters, digits, '-'; at most 63)")
    spec = obj.get("spec")
    groups = spec.get("resources") if isinstance(spec, dict) else None
    if not isinstance(groups, list) or not groups:
        raise ValueError("spec.resources is not a non-empty list")
    members: dict[GroupResource, None] = {}
    for i, entry in enumerate(groups):
        if not isinstance(entry, dict):
            raise ValueError(f"spec.resources[{i}] is not an object")
        group = _text(entry.get("group", ""), f"spec.resources[{i}].group")
        if len(group) > 253 or not _GROUP.fullmatch(group):
            raise ValueError(f"spec.resources[{i}].group {group[:64]!r} is not an API group name")
        names = entry.get("resources")
        if not isinstance(names, list) or not names:
            raise ValueError(f"spec.resources[{i}].resources is not a non-empty list")
        for j, resource in enumerate(names):
            resource = _text(resource, f"spec.resources[{i}].resources[{j}]")
            if resource != WILDCARD and (len(resource) > 63 or not _NAME.fullmatch(resource)):
                where = f"spec.resources[{i}].resources[{j}]"
                raise ValueError(f"{where} {resource[:64]!r} is not a resource name")
            members[GroupResource(group, resource)] = None
            if len(members) > MAX_COLLECTION_MEMBERS:
                raise ValueError(f"more than {MAX_COLLECTION_MEMBERS} resources")
    wildcards = {gr.group for gr in members if gr.resource == WILDCARD}
    # group/* covers the group's named resources
    kept = (gr for gr in members if gr.resource == WILDCARD or gr.group not in wildcards)
    return Collection(name, tuple(kept))


def custom_collections(
    definitions: Mapping[str, Any], configured: Iterable[str]
) -> tuple[list[Collection], list[str]]:
    """The collections of a CollectionResourceDefinitionList, by name, and why objects were left
    out (one line each, naming the object)."""
    taken = set(configured)
    out: list[Collection] = []
    problems: list[str] = []
    items = definitions.get("items")
    parsed: list[Collection] = []
    for i, item in enumerate(items if isinstance(items, list) else ()):
        try:
            parsed.append(parse_definition(item))
        except ValueError as exc:
            meta = item.get("metadata") if isinstance(item, dict) else None
            raw_name = meta.get("name") if isinstance(meta, dict) else None
            label = repr(raw_name[:64]) if isinstance(raw_name, str) else f"#{i}"
            problems.append(f"CollectionResourceDefinition {label} ignored: {exc}")
    for collection in sorted(parsed, key=lambda c: c.name):
        if collection.name in taken:
            problems.append(
                f"CollectionResourceDefinition {collection.name!r} ignored: a collection of that name "
                "is configured (apiserver.collections) or defined twice"
            )
        elif len(out) >= MAX_CUSTOM_COLLECTIONS:
            problems.append(
                f"CollectionResourceDefinition {collection.name!r} ignored: more than "
                f"{MAX_CUSTOM_COLLECTIONS} custom collections"
            )
        else:
            taken.add(collection.name)
            out.append(collection)
    return out, problems


class Collections:
    """The configured collections plus the host's CollectionResourceDefinitions (``definitions``:
    the reader of their list; None: the configured ones only)."""

    def __init__(self, settings: ApiserverSettings, definitions: PediaClusterDirectory | None = None) -> None:
        self.configured = list_collections(settings)
        self.definitions = definitions
        self._source: dict[str, Any] | None = None
        self._all: list[Collection] = self.configured
        self._logged: set[str] = set()

    async def all(self) -> list[Collection]:
        """Every collection, by name."""
        if self.definitions is None:
            return self.configured
        current = await self.definitions.current()
        if current is None:  # never read (no CRD installed, host down): the configured ones
            return self.configured
        if current is not self._source:
            custom, problems = custom_collections(current, (c.name for c in self.configured))
            for problem in problems:
                if problem not in self._logged:
                    log.warning("%s", problem)
            self._logged = set(problems)
            self._all = sorted([*self.configured, *custom], key=lambda c: c.name)
            self._source = current
        return self._all

    async def get(self, name: str) -> Collection:
        """Collection ``name``, or NotFound."""
        return find_collection(await self.all(), name)


def synced_pairs(rows: Sequence[Any]) -> set[tuple[str, str]]:
    """(group, resource) of the catalog's rows (``ServedResource``)."""
    return {(r.group, r.resource) for r in rows}
