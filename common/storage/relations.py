"""Relationship queries: from one object (the subject) to the related objects of the listed resource.

A ``Search`` with a :class:`Relation` lists the objects of its resource that stand in that relation
to the subject, named by uid or by (cluster, group/resource, namespace, name):

* ``owners``: the subject's controller-owner chain, its owner, the owner's owner ... up to the
  top-level owner (the reverse of the owner search conditions); ``top-owner``: only the last
  object of that chain;
* ``selected``: the Pods a Service's ``spec.selector`` matches (same cluster and namespace; a
  Service without a selector matches nothing, as in Kubernetes);
* ``node``: the Node a Pod runs on (``spec.nodeName``, same cluster);
* ``events``: the Events about the subject (``involvedObject.uid`` / ``regarding.uid``).

A store answers in two steps, both here and shared by every backend: :func:`resolve` reads the
subject and the objects between it and the answer (a few indexed lookups, through the backend's
:class:`Lookups`) and turns the relation into ordinary conditions of the search — the subject's
cluster, namespace, uids, names, label requirements, a field requirement on the events' subject uid
— which every backend already serves with its indexes. A relation whose answer lies in several
clusters or namespaces (a uid known to two clusters, a name in several namespaces) becomes a few
alternative searches, ORed (:func:`alternatives`).

Permissions: ``Relation.readable`` (the API tier's member-rbac check, None for no restriction) is
asked of every object the walk reads: the subject and each owner in between. An object the caller
may not list ends the walk there, as if it were not stored, so a relation never reveals an object
the caller cannot list nor what lies behind one; the answer itself is restricted by the search's
own ``visibility`` like any list.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

import msgspec

from common.storage.base import StorageRejected
from common.storage.query import (
    FieldRequirement,
    GroupResource,
    LabelRequirement,
    Operator,
    Search,
    SetFilter,
)
from common.types import EVENT_SUBJECT_FIELDS


class RelationKind(StrEnum):
    OWNERS = "owners"
    TOP_OWNER = "top-owner"
    SELECTED = "selected"
    NODE = "node"
    EVENTS = "events"


ReadCheck = Callable[[str, str, str, str, str], bool]
"""``readable(cluster, group, resource, namespace, name)``: whether the caller may list that object."""

SERVICES = GroupResource("", "services")
PODS = GroupResource("", "pods")
NODES = GroupResource("", "nodes")

SUBJECT_RESOURCES: dict[RelationKind, GroupResource] = {
    RelationKind.SELECTED: SERVICES,
    RelationKind.NODE: PODS,
}
"""The resource a relation's subject must be (any, for the others)."""

LISTED_RESOURCES: dict[RelationKind, tuple[GroupResource, ...]] = {
    RelationKind.SELECTED: (PODS,),
    RelationKind.NODE: (NODES,),
    RelationKind.EVENTS: tuple(GroupResource(g, r) for g, r in EVENT_SUBJECT_FIELDS),
}
"""The resources a relation can list (any, for the others)."""

MAX_SUBJECTS = 1000
"""A subject named by name in any namespace matches at most this many objects (else a 400)."""
MAX_DEPTH = 16
"""Owner chains are followed this many owners up at most (a longer one, or a cycle, has no top)."""
MAX_SELECTOR_LABELS = 64
"""A Service selector of more labels than this is refused (a 400), not turned into a huge query."""


@dataclass(frozen=True, slots=True)
class Subject:
    """The object a relation starts from: by ``uid`` (any cluster the search spans), or by ``name``
    of ``group``/``resource`` in ``cluster``, in ``namespace`` (None: any namespace; a cluster-scoped
    object matches whatever namespace is given)."""

    uid: str = ""
    name: str = ""
    group: str = ""
    resource: str = ""
    namespace: str | None = None
    cluster: str = ""


@dataclass(frozen=True, slots=True)
class Relation:
    kind: RelationKind
    subject: Subject
    readable: ReadCheck | None = None
    """The caller's permissions on the objects the walk reads (None: everything)."""
    alternatives: tuple[Search, ...] | None = None
    """Set by :func:`resolve` when the answer needs several: the search is their union."""


@dataclass(frozen=True, slots=True)
class Link:
    """A live object the walk reads: its identity, controller owner and (subjects only) JSON."""

    cluster: str
    group: str
    resource: str
    namespace: str
    name: str
    uid: str
    owner_uid: str
    object: bytes = b""


class Lookups(Protocol):
    """What a backend reads for :func:`resolve` (live objects only)."""

    def subjects(self, subject: Subject, limit: int) -> list[Link]:
        """The objects ``subject`` names (with their JSON), at most ``limit``."""
        ...

    def by_uids(self, cluster: str, uids: Sequence[str]) -> list[Link]:
        """The objects of ``cluster`` with these uids (no JSON needed)."""
        ...


@dataclass(frozen=True, slots=True)
class _Target:
    """Where the answer lies: one cluster, and within it a namespace, uids, names, labels or the
    events' subject uids (None: no condition of that kind)."""

    cluster: str
    namespace: str | None = None
    uids: frozenset[str] | None = None
    names: frozenset[str] | None = None
    labels: tuple[tuple[str, str], ...] | None = None
    about: frozenset[str] | None = None


def check_listed(search: Search) -> None:
    """StorageRejected when the relation cannot list the search's resource(s)."""
    rel = search.relation
    if rel is None:
        return
    allowed = LISTED_RESOURCES.get(rel.kind)
    if allowed is None:
        return
    listed = search.group_resources or (GroupResource(search.group, search.resource),)
    if any(gr not in allowed for gr in listed):
        names = " or ".join(f"{gr.resource}.{gr.group}" if gr.group else gr.resource for gr in allowed)
        raise StorageRejected(f'the relation "{rel.kind}" lists {names} only')


def resolve(search: Search, lookups: Lookups) -> Search:
    """``search`` with its relation turned into ordinary conditions (see the module docstring);
    unchanged without a relation or when already resolved."""
    rel = search.relation
    if rel is None or rel.alternatives is not None:
        return search
    check_listed(search)
    readable = rel.readable or (lambda *_: True)

    def visible(link: Link) -> bool:
        return readable(link.cluster, link.group, link.resource, link.namespace, link.name)

    found = lookups.subjects(rel.subject, MAX_SUBJECTS + 1)
    if len(found) > MAX_SUBJECTS:
        raise StorageRejected(
            f"the relation's subject names more than {MAX_SUBJECTS} objects: name its namespace (ofNamespace)"
        )
    subjects = [s for s in found if _in_scope(search, s.cluster) and visible(s)]
    wanted = SUBJECT_RESOURCES.get(rel.kind)
    if wanted is not None:
        subjects = [s for s in subjects if (s.group, s.resource) == wanted]
    if rel.kind in (RelationKind.OWNERS, RelationKind.TOP_OWNER):
        targets = _owner_targets(subjects, lookups, visible, top=rel.kind == RelationKind.TOP_OWNER)
    elif rel.kind == RelationKind.SELECTED:
        targets = [t for s in subjects if (t := _selected(s)) is not None]
    elif rel.kind == RelationKind.NODE:
        targets = _merged((s.cluster, _node_name(s)) for s in subjects)
        targets = [_Target(t.cluster, names=t.uids) for t in targets]
    else:
        targets = [_Target(t.cluster, about=t.uids) for t in _merged((s.cluster, s.uid) for s in subjects)]
    base = dataclasses.replace(search, relation=None)
    if not targets:
        return dataclasses.replace(base, names=SetFilter(include=()))
    if len(targets) == 1:
        return _narrow(base, targets[0])
    return dataclasses.replace(
        search, relation=dataclasses.replace(rel, alternatives=tuple(_narrow(base, t) for t in targets))
    )


def alternatives(search: Search) -> tuple[Search, ...] | None:
    """The searches a resolved relation stands for (their union), None without a relation. A
    relation that was not resolved is a programming error of the backend."""
    rel = search.relation
    if rel is None:
        return None
    if rel.alternatives is None:
        raise ValueError("relations.resolve() was not called for this search")
    return rel.alternatives


def _in_scope(search: Search, cluster: str) -> bool:
    return (not search.single_cluster or cluster == search.single_cluster) and search.clusters.allows(cluster)


def _merged(pairs: Iterable[tuple[str, str]]) -> list[_Target]:
    """(cluster, value) pairs as one target per cluster, the values in ``uids``; empty values dropped."""
    per: dict[str, set[str]] = {}
    for cluster, value in pairs:
        if value:
            per.setdefault(cluster, set()).add(value)
    return [_Target(c, uids=frozenset(v)) for c, v in sorted(per.items())]


def _owner_targets(
    subjects: Sequence[Link], lookups: Lookups, visible: Callable[[Link], bool], *, top: bool
) -> list[_Target]:
    """Walk every subject's chain level by level (one lookup per level and cluster)."""
    chains: dict[int, list[Link]] = {i: [] for i in range(len(subjects))}
    tops: dict[int, Link] = {}
    walking = {i: s for i, s in enumerate(subjects)}
    for _ in range(MAX_DEPTH + 1):
        wanted: dict[str, set[str]] = {}
        for i, cur in list(walking.items()):
            seen = {subjects[i].uid, *(link.uid for link in chains[i])}
            if not cur.owner_uid or cur.owner_uid in seen or len(chains[i]) == MAX_DEPTH:
                if not cur.owner_uid and chains[i]:
                    tops[i] = cur  # a cycle, or a chain going on past MAX_DEPTH, has no top
                del walking[i]
            else:
                wanted.setdefault(cur.cluster, set()).add(cur.owner_uid)
        if not walking:
            break
        stored: dict[tuple[str, str], Link] = {}
        for cluster, uids in sorted(wanted.items()):
            for link in lookups.by_uids(cluster, sorted(uids)):
                # the same object under two resources (rare): the first in key order
                stored.setdefault((link.cluster, link.uid), link)
        for i, cur in list(walking.items()):
            owner = stored.get((cur.cluster, cur.owner_uid))
            if owner is None:  # the chain ends with what the store has
                if chains[i]:
                    tops[i] = cur
                del walking[i]
            elif not visible(owner):  # nothing at or behind an object the caller may not list
                del walking[i]
            else:
                chains[i].append(owner)
                walking[i] = owner
    if top:
        return _merged((link.cluster, link.uid) for link in tops.values())
    return _merged((link.cluster, link.uid) for chain in chains.values() for link in chain)


class _ServiceSpec(msgspec.Struct):
    selector: dict[str, Any] | None = None


class _Service(msgspec.Struct):
    spec: _ServiceSpec = msgspec.field(default_factory=_ServiceSpec)


class _PodSpec(msgspec.Struct):
    node_name: Any = msgspec.field(default=None, name="nodeName")


class _Pod(msgspec.Struct):
    spec: _PodSpec = msgspec.field(default_factory=_PodSpec)


_service = msgspec.json.Decoder(_Service)
_pod = msgspec.json.Decoder(_Pod)


def _selected(service: Link) -> _Target | None:
    """The pods a Service selects; None for a Service without a selector (or not a JSON object of
    that shape: what a member sends is data, never trusted to be well-formed)."""
    try:
        selector = _service.decode(service.object).spec.selector
    except msgspec.DecodeError:
        return None
    if not selector or not all(isinstance(v, str) for v in selector.values()):
        return None
    if len(selector) > MAX_SELECTOR_LABELS:
        raise StorageRejected(
            f"the selector of Service {service.namespace}/{service.name} has {len(selector)} labels:"
            f" at most {MAX_SELECTOR_LABELS} are searched"
        )
    return _Target(service.cluster, namespace=service.namespace, labels=tuple(sorted(selector.items())))


def _node_name(pod: Link) -> str:
    try:
        name = _pod.decode(pod.object).spec.node_name
    except msgspec.DecodeError:
        return ""
    return name if isinstance(name, str) else ""


def _restricted(flt: SetFilter, values: Iterable[str]) -> SetFilter:
    wanted = tuple(sorted(values))
    include = wanted if flt.include is None else tuple(v for v in flt.include if v in wanted)
    return SetFilter(include, flt.exclude)


def _narrow(search: Search, t: _Target) -> Search:
    """``search`` confined to one target, as ordinary conditions."""
    fields = list(search.fields)
    if t.uids is not None:
        fields.append(FieldRequirement(("metadata", "uid"), Operator.IN, tuple(sorted(t.uids))))
    if t.about is not None:
        path = (EVENT_SUBJECT_FIELDS[(search.group, search.resource)], "uid")
        fields.append(FieldRequirement(path, Operator.IN, tuple(sorted(t.about))))
    labels = list(search.labels)
    labels += [LabelRequirement(k, Operator.EQUALS, (v,)) for k, v in t.labels or ()]
    return dataclasses.replace(
        search,
        clusters=_restricted(search.clusters, (t.cluster,)),
        namespaces=(
            search.namespaces if t.namespace is None else _restricted(search.namespaces, (t.namespace,))
        ),
        names=search.names if t.names is None else _restricted(search.names, t.names),
        labels=tuple(labels),
        fields=tuple(fields),
    )


def scan_lookups(rows: Sequence[Any]) -> Lookups:
    """:class:`Lookups` over rows in memory (the memory backend's: attributes ``cluster``,
    ``api_group``, ``resource``, ``namespace``, ``name``, ``uid``, ``owner_uid``, ``deleted``,
    ``object``), indexed by uid on first use."""
    return _ScanLookups(rows)


class _ScanLookups:
    def __init__(self, rows: Sequence[Any]) -> None:
        self._rows = [r for r in rows if not r.deleted]
        self._by_uid: dict[tuple[str, str], list[Any]] | None = None

    @staticmethod
    def _link(r: Any) -> Link:
        return Link(r.cluster, r.api_group, r.resource, r.namespace, r.name, r.uid, r.owner_uid, r.object)

    @staticmethod
    def _key(r: Any) -> tuple[str, str, str, str, str]:
        return (r.cluster, r.api_group, r.resource, r.namespace, r.name)

    def subjects(self, subject: Subject, limit: int) -> list[Link]:
        s = subject
        if s.uid:
            rows = [r for r in self._rows if r.uid == s.uid]
        else:
            rows = [
                r
                for r in self._rows
                if r.cluster == s.cluster
                and r.api_group == s.group
                and r.resource == s.resource
                and r.name == s.name
                and (s.namespace is None or r.namespace in (s.namespace, ""))
            ]
        rows.sort(key=self._key)
        return [self._link(r) for r in rows[:limit]]

    def by_uids(self, cluster: str, uids: Sequence[str]) -> list[Link]:
        if self._by_uid is None:
            self._by_uid = {}
            for r in self._rows:
                self._by_uid.setdefault((r.cluster, r.uid), []).append(r)
        rows = [r for uid in uids for r in self._by_uid.get((cluster, uid), [])]
        rows.sort(key=self._key)
        return [self._link(r) for r in rows]
