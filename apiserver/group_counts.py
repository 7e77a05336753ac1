"""Serves a group-by search: the store's counts as a JSON list or as the Table kubectl prints.

A list request whose search has group fields (``groupBy`` / ``search.clusterpedia.io/group-by``,
parsed by :mod:`apiserver.grouping`) is answered with counts instead of objects, computed by the
store (``StoreReader.count_groups``) over the search restricted to what the caller may read.

- JSON: ``{"kind": "GroupCountList", "apiVersion": "clusterpedia.io/v1beta1", "metadata": {...},
  "groupBy": [field, ...], "items": [{"kind": "GroupCount", "apiVersion": ..., "group": {field:
  value, ...}, "count": N}, ...]}``, items ordered by their values (docs/api.md).
- Table (``kubectl get``): one string column per group field, then ``Count``. Each row carries a
  ``PartialObjectMetadata`` whose namespace is the group's namespace (when grouped by namespace),
  which is what kubectl's ``-A`` prints in its NAMESPACE column.

Paging: the groups are one ordered list; ``limit`` (kubectl's ``--chunk-size``) pages it with a
continue token that holds the offset of the next group and fits only this group-by of this list.
What pages or orders objects does not apply to groups and is a 400 rather than ignored: ``size``,
``offset``, ``orderby``, ``withContinue``, ``onlyMetadata``, ``includeObject=Object`` and a
PartialObjectMetadata Accept; so is a watch (the API tier refuses it before it starts).
"""

from __future__ import annotations

import hashlib
from typing import Any

from starlette.responses import Response

from apiserver.responses import ObjectRendering, json_response, table_content_type
from apiserver.search import encode_continue
from apiserver.tables import table_options
from apiserver.types import Continue, GroupCount, Search
from common.errors import BadRequest, NotAcceptable
from common.storage import StoreReader

API_VERSION = "clusterpedia.io/v1beta1"
LIST_KIND = "GroupCountList"
ITEM_KIND = "GroupCount"


def group_scope(search: Search, list_scope: str) -> str:
    """Fingerprint of a group-by list: the list's scope (``apiserver.search.continue_scope``) and
    its group fields, so that a list's continue token is refused for its group counts and back."""
    text = f"{list_scope}|group-by|{'|'.join(f.name for f in search.group_by)}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def check_group_search(search: Search) -> None:
    """400 for the conditions that page or order objects (they mean nothing for groups)."""
    refused = [
        name
        for name, given in (
            ("size", search.size is not None),
            ("offset", search.offset is not None),
            ("orderby", bool(search.orderby)),
            ("withContinue", search.with_continue),
            ("onlyMetadata", search.only_metadata),
        )
        if given
    ]
    if refused:
        raise BadRequest(
            f"{', '.join(refused)} cannot be combined with group-by: groups are ordered by their values"
            " and paged with limit and continue"
        )


def _start(search: Search, scope: str) -> int:
    token = search.continue_token
    if token is None:
        return 0
    if token.offset is None or token.scope != scope:
        raise BadRequest(
            "invalid continue token: it was not issued for these group counts (another list, another"
            " group-by, or a list of objects); continue with the request that returned it"
        )
    return token.offset


async def respond(
    store: StoreReader,
    search: Search,
    rendering: ObjectRendering,
    query: Any,
    *,
    list_scope: str,
    max_groups: int,
) -> Response:
    """The response to a group-by list (``search`` already narrowed to the caller's grants);
    ``query``: the request's query parameters (``includeObject``, ``noHeaders``)."""
    check_group_search(search)
    if rendering.kind == "partial":
        raise NotAcceptable("group counts have no object metadata: ask for JSON or a Table")
    options = table_options(query, rendering.meta_version) if rendering.kind == "table" else None
    if options is not None and options.include_object == "Object":
        raise BadRequest("includeObject=Object cannot be combined with group-by: a group has no object")
    scope = group_scope(search, list_scope)
    start = _start(search, scope)
    groups = await store.count_groups(search, max_groups)
    end = len(groups) if search.limit is None else start + search.limit
    page, rest = groups[start:end], len(groups) - min(end, len(groups))
    meta: dict[str, Any] = {}
    if rest > 0:
        meta["continue"] = encode_continue(Continue(offset=end, scope=scope))
        if search.with_remaining_count:
            meta["remainingItemCount"] = rest
    names = [f.name for f in search.group_by]
    if options is None:
        return json_response(
            {
                "kind": LIST_KIND,
                "apiVersion": API_VERSION,
                "metadata": meta,
                "groupBy": names,
                "items": [
                    {
                        "kind": ITEM_KIND,
                        "apiVersion": API_VERSION,
                        "group": dict(zip(names, g.values, strict=True)),
                        "count": g.count,
                    }
                    for g in page
                ],
            }
        )
    return json_response(
        _table(
            search,
            page,
            meta,
            include_metadata=options.include_object == "Metadata",
            no_headers=options.no_headers,
            version=options.table_version,
        ),
        content_type=table_content_type(options.table_version),
    )


def _table(
    search: Search,
    page: list[GroupCount],
    meta: dict[str, Any],
    *,
    include_metadata: bool,
    no_headers: bool,
    version: str,
) -> dict[str, Any]:
    columns = [
        {
            "name": f.name,
            "type": "string",
            "format": "",
            "description": f'The objects\' {f.name} ("" when missing).',
            "priority": 0,
        }
        for f in search.group_by
    ]
    columns.append(
        {
            "name": "Count",
            "type": "integer",
            "format": "",
            "description": "How many objects of the search have these values.",
            "priority": 0,
        }
    )
    ns_at = next(
        (
            i
            for i, f in enumerate(search.group_by)
            if f.column == "namespace" or f.path == ("metadata", "namespace")
        ),
        None,
    )
    rows: list[dict[str, Any]] = []
    for g in page:
        row: dict[str, Any] = {"cells": [*g.values, g.count]}
        if include_metadata:
            metadata = {"namespace": g.values[ns_at]} if ns_at is not None and g.values[ns_at] else {}
            row["object"] = {
                "kind": "PartialObjectMetadata",
                "apiVersion": f"meta.k8s.io/{version}",
                "metadata": metadata,
            }
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": f"meta.k8s.io/{version}",
        "metadata": meta,
        "columnDefinitions": [] if no_headers else columns,
        "rows": rows,
    }
