"""Collection resources: several group/resources listed as one (`kubectl get collectionresources workloads`).

Collections come from ``Settings.apiserver.collections`` (``workloads`` = deployments.apps +
daemonsets.apps + statefulsets.apps by default). A collection list is one search of the store over all
its members (``Search.group_resources``) with every search condition applying, ordered by cluster,
then group and resource (so kinds stay together within a cluster, as the seed's output shows), then
namespace and name; keyset paging and continue work as for any list.
"""

from __future__ import annotations

import dataclasses
import re

from apiserver.types import GroupResource, Search
from common.errors import NotFound
from common.settings import ApiserverSettings

COLLECTION_GROUP_RESOURCE = "collectionresources.pedia.clusterpedia.io"

_GR = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9.]*[a-z0-9])?)?")


@dataclasses.dataclass(frozen=True, slots=True)
class Collection:
    name: str
    resources: tuple[GroupResource, ...]

    @property
    def resource_names(self) -> list[str]:
        """``["deployments.apps", ...]`` as configured and as ``kubectl get collectionresources`` prints."""
        return [f"{gr.resource}.{gr.group}" if gr.group else gr.resource for gr in self.resources]


def parse_group_resource(text: str) -> GroupResource:
    """``deployments.apps`` -> (apps, deployments); ``pods`` -> ("", pods)."""
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
    for collection in list_collections(settings):
        if collection.name == name:
            return collection
    raise NotFound(
        f'{COLLECTION_GROUP_RESOURCE} "{name}" not found',
        details={"name": name, "group": "pedia.clusterpedia.io", "kind": "collectionresources"},
    )


def collection_search(settings: ApiserverSettings, name: str, search: Search) -> Search:
    """The search over the members of collection ``name`` (``search`` parsed with any
    group/version/resource: they are replaced by the collection's members). Raises NotFound."""
    collection = get_collection(settings, name)
    return dataclasses.replace(
        search, group="", version="", resource="", group_resources=collection.resources
    )
