"""The paging rules every backend follows, written once (pure): continue positions, the next page,
remainingItemCount, the list's resourceVersion, metadata-only objects.

A backend supplies two functions — the rows of a page after an optional keyset key (or at an offset)
and how many rows match after a key — and :func:`list_page` does the rest, so keyset and offset
paging, the tokens they produce and the errors for a token that does not fit are the same on every
store. Rows are read by attribute (``cluster``, ``api_group``, ``resource``, ``namespace``,
``name``, ``created_at``, ``resource_version``): a SQLAlchemy ``Row`` and the memory backend's rows
both qualify.

Paging, two kinds:
- keyset (kubectl's ``limit``/``continue``, ``--chunk-size``): the position carries the last row's
  values of the full order key; the next page is the rows strictly after it. Each page costs
  O(page) however deep, and an object present throughout a paged list is returned exactly once
  even while other rows are inserted, updated or deleted between pages (objects created or deleted
  meanwhile may or may not appear, as with kube-apiserver's continue).
- offset (the ``size``/``offset`` search conditions): LIMIT/OFFSET; a next position (the next
  offset) only when the search asks ``with_continue``.
One row more than the page is fetched to know whether there is a next page.

``ListPage.resource_version``: the store's head revision the first page was read at (a backend with a
change feed passes it), else an opaque marker — the highest member resourceVersion on the first page
(``"0"`` when empty); carried in the continue position so every page of one list reports the same
value.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

import msgspec

from common.storage.base import StorageRejected, StoredObject
from common.storage.query import Continue, OrderBy, Search, full_order
from common.storage.revisions import stamp

NULL_CREATED_AT = dt.datetime(1970, 1, 1)
"""Objects without a creation time sort (and page) as if created at the epoch."""

Key = tuple[str | int, ...]


class PagedRow(Protocol):
    @property
    def resource_version(self) -> Any: ...
    @property
    def created_at(self) -> dt.datetime | None: ...


R = TypeVar("R", bound=PagedRow)


def order_names(order: Sequence[OrderBy]) -> tuple[str, ...]:
    """``("name", "-cluster", ...)``: how a continue position records the order it was issued for."""
    return tuple(("-" if o.desc else "") + o.field for o in order)


def key_value(field: str, value: str | int) -> Any:
    """A continue-key value as the field compares (raises ValueError if malformed)."""
    if field == "created_at":
        return dt.datetime.fromisoformat(str(value))
    if field == "resource_version":
        return int(value)
    return str(value)


def continue_key(token: Continue, order: Sequence[OrderBy]) -> Key:
    """The keyset key of ``token`` for a search in ``order``; StorageRejected when it does not fit."""
    if token.order != order_names(order):
        raise StorageRejected(
            "invalid continue token: it was issued for a different orderby; repeat the first request's"
            " orderby or start again without continue"
        )
    try:
        for o, v in zip(order, token.key, strict=True):
            key_value(o.field, v)
    except ValueError:
        raise StorageRejected("invalid continue token: bad key") from None
    return token.key


def row_key(row: PagedRow, order: Sequence[OrderBy]) -> Key:
    """The values of ``row`` for the fields of ``order``, as a continue position records them."""
    key: list[str | int] = []
    for o in order:
        if o.field == "created_at":
            key.append((row.created_at or NULL_CREATED_AT).isoformat())
        elif o.field == "resource_version":
            key.append(int(row.resource_version))
        else:
            key.append(str(getattr(row, o.field)))
    return tuple(key)


def _max_rv(rows: Sequence[PagedRow]) -> str:
    return str(max((int(r.resource_version) for r in rows), default=0))


class PageQuery(msgspec.Struct, frozen=True):
    """What one page reads: rows strictly after the keyset key ``after`` (None: from the start), at
    ``offset`` (offset paging), at most ``limit`` (a page and one more, None: every row); and
    whether the rows matching after ``after`` (offset paging: all of them) are counted."""

    after: Key | None
    limit: int | None
    offset: int | None
    counts: bool


def page_query(search: Search) -> PageQuery:
    """The reads behind one page of ``search`` (raises StorageRejected for a continue token that does
    not fit). A backend may run them in one statement (PostgreSQL does) and hand the results to
    :func:`list_page`."""
    page_size = search.page_size
    limit = page_size + 1 if page_size is not None else None
    token = search.continue_token
    counts = page_size is not None and search.with_remaining_count
    if search.offset_paging:
        offset = token.offset if token is not None and token.offset is not None else (search.offset or 0)
        return PageQuery(None, limit, offset, counts)
    after = continue_key(token, full_order(search)) if token is not None else None
    return PageQuery(after, limit, None, counts)


def list_page(
    search: Search,
    fetch: Callable[[Key | None, int | None, int | None], Sequence[R]],
    count: Callable[[Key | None], int],
    *,
    head: int | None = None,
) -> tuple[list[R], Continue | None, int | None, str]:
    """One page of ``search``: (rows, next position, remaining count, list resourceVersion).

    ``fetch(after, limit, offset)``: rows matching ``search`` in its total order, strictly after the
    keyset key ``after`` when given, from ``offset``, at most ``limit``. ``count(after)``: how many
    match (after ``after``); called with the ``after`` of the fetch (None for offset paging), only
    when the page is full and the search asks ``with_remaining_count``. ``head``: the revision the
    rows were read at (backends with a change feed). Raises StorageRejected for a continue token
    that does not fit."""
    q = page_query(search)
    token = search.continue_token
    page_size = search.page_size

    def first_rv(rows: Sequence[PagedRow]) -> str:
        if token is not None and token.resource_version:
            return token.resource_version
        return str(head) if head is not None else _max_rv(rows)

    rows = list(fetch(q.after, q.limit, q.offset))
    more = page_size is not None and len(rows) > page_size
    rows = rows[:page_size] if page_size is not None else rows
    rv = first_rv(rows)
    nxt: Continue | None = None
    remaining: int | None = None
    if q.offset is not None:
        if more and search.with_continue:
            nxt = Continue(offset=q.offset + len(rows), resource_version=rv)
        if more and q.counts:
            remaining = max(0, count(None) - q.offset - len(rows))
        return rows, nxt, remaining, rv
    if more:
        order = full_order(search)
        nxt = Continue(key=row_key(rows[-1], order), order=order_names(order), resource_version=rv)
        if q.counts:
            # The page is the first rows after its start: the remaining ones are all those but the
            # page (a plain count on a first page; no row-value comparison per row there).
            remaining = max(0, count(q.after) - len(rows))
    return rows, nxt, remaining, rv


class StoredRow(PagedRow, Protocol):
    """A row as every backend reads it back (the SQL ``Row`` and the memory rows qualify)."""

    @property
    def cluster(self) -> str: ...
    @property
    def api_group(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def resource(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def namespace(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def object(self) -> str | bytes: ...


def stored_object(row: StoredRow, metadata_only: bool = False) -> StoredObject:
    """The ``StoredObject`` of ``row`` (only the object's metadata if asked), its revision stamped in
    when the row has one; one call per row."""
    obj = row.object
    raw = obj.encode() if isinstance(obj, str) else bytes(obj)
    revision = int(getattr(row, "revision", 0) or 0)
    if revision:
        raw = stamp(raw, revision)
    return StoredObject(
        cluster=row.cluster,
        group=row.api_group,
        version=row.version,
        resource=row.resource,
        kind=row.kind,
        namespace=row.namespace,
        name=row.name,
        resource_version=int(row.resource_version),
        created_at=row.created_at,
        object=only_metadata(raw) if metadata_only else raw,
        revision=revision,
    )


class _Metadata(msgspec.Struct):
    apiVersion: str = ""
    kind: str = ""
    metadata: msgspec.Raw = msgspec.Raw(b"{}")


_metadata_decoder = msgspec.json.Decoder(_Metadata)
_encoder = msgspec.json.Encoder()


def only_metadata(raw: bytes) -> bytes:
    """``apiVersion``, ``kind`` and ``metadata`` of a stored object (``Search.only_metadata``)."""
    return _encoder.encode(_metadata_decoder.decode(raw))
