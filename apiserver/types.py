"""Types the API tier passes between request handling (routing, tables) and the store.

The parsed search (``Search`` and its parts) and what the store answers (``ListPage``,
``StoredObject``) are defined by the storage layer (``common.storage``), which every backend shares;
they are re-exported here so handlers import everything from one place. Requests are parsed by
``apiserver.search.parse_search(...)`` (pure; raises ``BadRequest``) and answered by a
``common.storage.StoreReader``.
"""

from __future__ import annotations

from common.storage.base import ListPage, StoredObject
from common.storage.grouping import GroupCount, GroupField
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
    "GroupCount",
    "GroupField",
    "GroupResource",
    "LabelRequirement",
    "ListPage",
    "Operator",
    "OrderBy",
    "Search",
    "SetFilter",
    "StoredObject",
]
