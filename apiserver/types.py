"""Types the API tier passes between request handling (routing, tables) and the store (listing).

The parsed search itself (``Search`` and its parts) is defined in ``common.storage.query`` because
the SQL builders in ``common.storage.sql.selects`` read it; it is re-exported here so handlers import
everything from one place.

Store entry points (implemented in ``apiserver.listing`` and ``apiserver.collections``; they run the
synchronous SQLAlchemy work in a worker thread)::

    async def list_objects(engine: Engine, search: Search) -> ListPage
    async def get_object(engine: Engine, cluster: str, group: str, resource: str,
                         namespace: str, name: str) -> StoredObject
    async def list_collection(engine: Engine, settings: ApiserverSettings, name: str,
                              search: Search) -> ListPage

Requests are parsed by ``apiserver.search.parse_search(...)`` (pure; raises ``BadRequest``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from common.storage.query import (
    DEFAULT_ORDER_FIELDS,
    ORDER_FIELDS,
    Continue,
    FieldRequirement,
    GroupResource,
    LabelRequirement,
    Operator,
    OrderBy,
    Search,
    SetFilter,
)

__all__ = [
    "DEFAULT_ORDER_FIELDS",
    "ORDER_FIELDS",
    "Continue",
    "FieldRequirement",
    "GroupResource",
    "LabelRequirement",
    "ListPage",
    "Operator",
    "OrderBy",
    "Search",
    "SetFilter",
    "StoredObject",
]


@dataclass(frozen=True, slots=True)
class StoredObject:
    """One object as stored: its identity columns and the raw JSON (never parsed by the store side).

    ``object`` already carries the cluster annotation ``shadow.clusterpedia.io/cluster-name`` and has
    no managedFields. With ``Search.only_metadata`` it holds only ``apiVersion``, ``kind`` and
    ``metadata`` (render the list as ``PartialObjectMetadataList``)."""

    cluster: str
    group: str
    version: str
    resource: str
    kind: str
    namespace: str  # "" for cluster-scoped objects
    name: str
    resource_version: int
    created_at: dt.datetime | None  # naive UTC
    object: bytes


@dataclass(frozen=True, slots=True)
class ListPage:
    """One page of a list.

    ``continue_token``: "" when this is the last page (or, for offset paging, when the request did
    not ask ``withContinue``). ``remaining_item_count``: rows after this page, only when the request
    asked ``withRemainingCount`` and there is a next page; else None. ``resource_version``: the list
    resourceVersion for ``metadata.resourceVersion`` — the highest object resourceVersion among the
    matching rows of the first page (``"0"`` when empty), carried by continue tokens so every page of
    one list reports the same value. Member clusters have independent resourceVersions, so it is an
    opaque marker, not a watch position."""

    items: list[StoredObject]
    continue_token: str = ""
    remaining_item_count: int | None = None
    resource_version: str = "0"
