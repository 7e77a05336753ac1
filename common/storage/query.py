"""A storage-neutral description of one search: what the API tier parsed, what the SQL builders read.

The API tier turns a kubectl request (path, label selector, field selector, URL query) into a
``Search``; ``common.storage.sql.selects`` turns a ``Search`` into a SQLAlchemy statement for the dialect
at hand. The types live in ``common`` because both sides need them and tiers never import each other;
``apiserver.types`` re-exports them for the API tier.

Everything here is already validated: label keys match the Kubernetes syntax, JSON path segments a
strict pattern, orderby fields the allow-list ``ORDER_FIELDS``. Values are still untrusted user
strings and only ever travel to the database as bound parameters.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from common.storage.relations import Relation

from common.storage.grouping import GroupField


class Operator(StrEnum):
    """Selector operators, as Kubernetes spells them (``==`` is normalised to ``=``)."""

    EQUALS = "="
    NOT_EQUALS = "!="
    IN = "in"
    NOT_IN = "notin"
    EXISTS = "exists"
    DOES_NOT_EXIST = "!"


@dataclass(frozen=True, slots=True)
class LabelRequirement:
    """One requirement on ``metadata.labels`` (``key``, ``!key``, ``key=v``, ``key in (a,b)`` ...)."""

    key: str
    operator: Operator
    values: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class FieldRequirement:
    """One requirement on a JSON path of the object, e.g. ``("status", "phase")`` = ``Running``.

    ``("metadata", "name")`` and ``("metadata", "namespace")`` are answered from columns; any other
    path through the dialect's JSON functions. A missing value compares as ``""``."""

    path: tuple[str, ...]
    operator: Operator
    values: tuple[str, ...]


ORDER_FIELDS: tuple[str, ...] = ("cluster", "namespace", "name", "created_at", "resource_version")
"""The only fields a search may order by (columns of ``resources``)."""

DEFAULT_ORDER_FIELDS: tuple[str, ...] = ("cluster", "namespace", "name")
"""Default order of a list of one resource; also the tie-breakers appended to any orderby."""

COLLECTION_ORDER_FIELDS: tuple[str, ...] = ("cluster", "api_group", "resource", "namespace", "name")
"""Default order (and tie-breakers) of a collection: per cluster, the kinds grouped, as the seed shows."""


class OrderBy(NamedTuple):
    field: str  # one of ORDER_FIELDS
    desc: bool = False


class GroupResource(NamedTuple):
    group: str  # "" for the core group
    resource: str


@dataclass(frozen=True, slots=True)
class Continue:
    """A decoded continue token.

    Keyset paging (``limit``): ``key`` holds the last returned row's values of the full order key and
    ``order`` names that key (``["name", "-cluster", ...]``) so that a token cannot be replayed with a
    different order. Offset paging (``size``/``offset`` with ``withContinue``): ``offset`` is where the
    next page starts. ``resource_version`` is the list resourceVersion of the first page, repeated on
    every following page. ``scope`` fingerprints what was listed (resource or collection, cluster
    path, namespace): a token is refused for another list, as kube-apiserver refuses a continue key
    outside the list's prefix."""

    key: tuple[str | int, ...] = ()
    order: tuple[str, ...] = ()
    offset: int | None = None
    resource_version: str = ""
    scope: str = ""


@dataclass(frozen=True, slots=True)
class SetFilter:
    """Include / exclude lists for clusters, namespaces and names.

    ``include`` None: no restriction; a tuple (possibly empty, which matches nothing) restricts to
    those values. ``exclude`` values are always removed."""

    include: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()

    def allows(self, value: str) -> bool:
        return (self.include is None or value in self.include) and value not in self.exclude


@dataclass(frozen=True, slots=True)
class Grant:
    """Objects of one resource in one cluster that the caller may read (its member's RBAC,
    evaluated by the API tier): every object when ``everywhere``; otherwise those in
    ``namespaces``, those named in ``names`` (any namespace, and cluster-scoped ones) and the
    ``(namespace, name)`` pairs of ``named_in``."""

    cluster: str
    group: str
    resource: str
    everywhere: bool = False
    namespaces: tuple[str, ...] = ()
    names: tuple[str, ...] = ()
    named_in: tuple[tuple[str, str], ...] = ()

    def allows(self, namespace: str, name: str) -> bool:
        if self.everywhere or name in self.names:
            return True
        return bool(namespace) and (namespace in self.namespaces or (namespace, name) in self.named_in)


@dataclass(frozen=True, slots=True)
class Search:
    """Every condition of one list request, parsed and validated.

    Paging: ``limit`` is kubectl's paging limit (``--chunk-size``; keyset pages with ``continue``);
    ``size``/``offset`` are the search conditions (LIMIT/OFFSET, a continue token only when
    ``with_continue``). When ``size`` or ``offset`` is set, offset paging is used and ``limit`` is only
    a fallback for ``size``."""

    group: str = ""
    version: str = ""
    resource: str = ""
    group_resources: tuple[GroupResource, ...] = ()
    """When non-empty (a collection resource), the search spans these instead of group/resource."""
    single_cluster: str = ""
    """The cluster of the ``/resources/clusters/{name}/...`` path form; "" for all clusters."""
    namespace: str = ""
    """The path namespace (``/namespaces/{ns}/...``); "" for all namespaces."""
    clusters: SetFilter = field(default_factory=SetFilter)
    namespaces: SetFilter = field(default_factory=SetFilter)
    names: SetFilter = field(default_factory=SetFilter)
    labels: tuple[LabelRequirement, ...] = ()
    fields: tuple[FieldRequirement, ...] = ()
    orderby: tuple[OrderBy, ...] = ()
    """As asked; empty means the default order. Tie-breakers are added by the SQL builder."""
    limit: int | None = None
    size: int | None = None
    offset: int | None = None
    continue_token: Continue | None = None
    since: dt.datetime | None = None
    """Objects created at or after this instant (naive UTC)."""
    before: dt.datetime | None = None
    """Objects created strictly before this instant (naive UTC)."""
    owner_uid: str = ""
    owner_name: str = ""
    owner_gr: GroupResource | None = None
    """Restricts the owner named by ``owner_name`` to this group/resource."""
    owner_seniority: int = 0
    """0: direct owner; 1: the owner's owner (pods of a Deployment via its ReplicaSets); ..."""
    fuzzy_name: str = ""
    with_continue: bool = False
    with_remaining_count: bool = False
    only_metadata: bool = False
    visibility: tuple[Grant, ...] | None = None
    """The caller's permissions (``member-rbac``): only objects some grant allows match; an empty
    tuple matches nothing. None: no restriction (``host-only``). A store applies it as a
    condition of the query itself, never after paging, so pages, continue and counts stay exact."""
    # -- group-by counts (common/storage/grouping.py)
    group_by: tuple[GroupField, ...] = ()
    """Count per group of these fields (``StoreReader.count_groups``) instead of listing;
    ``list_objects`` and ``count_objects`` do not read it."""
    relation: Relation | None = None
    """A relationship query (``common.storage.relations``): the objects related so to a subject."""

    @property
    def offset_paging(self) -> bool:
        """LIMIT/OFFSET pages (``size``/``offset``, or an offset continue token) rather than keyset."""
        if self.continue_token is not None:
            return self.continue_token.offset is not None
        return self.size is not None or self.offset is not None

    @property
    def one_cluster(self) -> str:
        """The one cluster the search is confined to (the path's, or the only one of ``clusters``),
        or "" (several or all): owner names are looked up there."""
        if self.single_cluster:
            return self.single_cluster
        inc = self.clusters.include
        return inc[0] if inc is not None and len(inc) == 1 else ""

    @property
    def page_size(self) -> int | None:
        """Rows per page, or None for everything."""
        return self.size if self.size is not None else self.limit


def full_order(search: Search) -> tuple[OrderBy, ...]:
    """The total order of a search: its orderby, then the default fields not already in it.

    (cluster, namespace, name) is unique per resource and (cluster, api_group, resource, namespace,
    name) per collection, so the result orders rows totally, as keyset paging needs."""
    defaults = COLLECTION_ORDER_FIELDS if search.group_resources else DEFAULT_ORDER_FIELDS
    out = list(search.orderby)
    seen = {o.field for o in out}
    out.extend(OrderBy(f) for f in defaults if f not in seen)
    return tuple(out)
