"""``member-rbac``: which objects a caller may read, from the members' own RBAC in the store.

The synchro keeps every member's Roles, ClusterRoles, RoleBindings and ClusterRoleBindings in the
store (``synchro.sync_member_rbac``). This module reads them back, one :class:`MemberPolicy` per
cluster, and turns "what may this user read of these resources" into :class:`Grant` values that
the store applies as a condition of the query itself (DESIGN section 8), so pages, ``continue``
and ``remainingItemCount`` stay exact.

Freshness: at most once per ``refresh_seconds`` (1 s) a request asks the store for a fingerprint of
the stored RBAC (``StoreReader.fingerprint``: it changes with any write of an RBAC object in any
cluster, whatever the clusters' resourceVersions); when it changed, the
policies are read again and every cached decision is dropped. A binding created or removed in a
member therefore takes effect within the sync latency plus that second. Decisions are cached per
(user, groups, cluster, resource) until then.

A cluster whose RBAC is not in the store (not synced yet, or the synchro may not read it) shows
nothing: permissions fail closed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

from apiserver.identities import DENY, IdentityMapping, Mappings, PediaClusterIdentities
from apiserver.permissions import Access, MemberPolicy, User, binding_decoder, role_decoder
from common.storage import StoreReader
from common.storage.query import Grant, GroupResource, Search
from common.types import RBAC_GROUP, RBAC_RESOURCES

log = logging.getLogger(__name__)

MODES = ("member-rbac", "host-only")


class MemberRBAC:
    """The members' RBAC as read from the store, and the decisions made from it."""

    def __init__(
        self,
        store: StoreReader,
        *,
        identities: PediaClusterIdentities | None = None,
        refresh_seconds: float = 1.0,
    ) -> None:
        """``identities``: per-cluster identity mappings (None: the host's identity everywhere)."""
        self.store = store
        self.identities = identities
        self._mappings: Mappings | None = {}
        self.refresh_seconds = refresh_seconds
        self._policies: dict[str, MemberPolicy] = {}
        self._fingerprint: str | None = None
        self._checked_at = float("-inf")
        self._lock = asyncio.Lock()
        self._decisions: dict[tuple[str, frozenset[str], str, str, str], Access] = {}
        self._grants: dict[tuple[str, frozenset[str], tuple[GroupResource, ...]], tuple[Grant, ...]] = {}

    async def refresh(self) -> None:
        """Re-read the policies when the stored RBAC changed (checked at most once per interval),
        and the identity mappings (at their own pace)."""
        if self.identities is not None:
            mappings = await self.identities.mappings()
            if mappings != self._mappings:
                self._mappings, self._decisions, self._grants = mappings, {}, {}
        if time.monotonic() - self._checked_at < self.refresh_seconds:
            return
        async with self._lock:
            started = time.monotonic()
            if started - self._checked_at < self.refresh_seconds:
                return  # another request refreshed meanwhile
            fingerprint = await self._current_fingerprint()
            if fingerprint != self._fingerprint:
                self._policies = await self._load()
                self._decisions, self._grants = {}, {}
                self._fingerprint = fingerprint
            self._checked_at = started

    async def _current_fingerprint(self) -> str:
        return await self.store.fingerprint(RBAC_GROUP, RBAC_RESOURCES)

    async def _load(self) -> dict[str, MemberPolicy]:
        """Every cluster's RBAC objects, decoded. What a member sends is data: an object that does
        not decode as RBAC is skipped (it grants nothing) and logged, instead of failing every
        request of every user."""
        found: dict[tuple[str, str], list[Any]] = {}
        skipped: list[str] = []
        for resource in RBAC_RESOURCES:
            decoder = binding_decoder if resource.endswith("bindings") else role_decoder
            page = await self.store.list_objects(Search(group=RBAC_GROUP, version="v1", resource=resource))
            for item in page.items:
                try:
                    found.setdefault((item.cluster, resource), []).append(decoder.decode(item.object))
                except msgspec.DecodeError as exc:
                    skipped.append(f"{item.cluster}/{resource}/{item.namespace}/{item.name}: {exc}")
        if skipped:
            log.warning("RBAC objects that grant nothing (not decodable): %s", "; ".join(skipped[:10]))
        return {
            cluster: MemberPolicy(*(found.get((cluster, r), []) for r in RBAC_RESOURCES))
            for cluster in {c for c, _ in found}
        }

    def access(self, user: User, cluster: str, group: str, resource: str) -> Access:
        """Where ``user`` (as the host knows them) may read ``resource`` in ``cluster`` (nothing for
        an unknown cluster, or one whose identity mapping is unknown or unusable)."""
        mapping = self._mappings.get(cluster) if self._mappings is not None else DENY
        if mapping is DENY:
            return Access()
        if isinstance(mapping, IdentityMapping):
            user = mapping.apply(user)
        key = (user.name, user.groups, cluster, group, resource)
        found = self._decisions.get(key)
        if found is None:
            policy = self._policies.get(cluster)
            found = policy.access(user, group, resource) if policy is not None else Access()
            self._decisions[key] = found
        return found

    def clusters(self) -> Iterable[str]:
        return self._policies.keys()

    async def grants(self, user: User, resources: Sequence[GroupResource]) -> tuple[Grant, ...]:
        """What ``user`` may read of ``resources``, in every cluster, as store conditions (cached
        until the RBAC or the identity mappings change)."""
        await self.refresh()
        key = (user.name, user.groups, tuple(resources))
        cached = self._grants.get(key)
        if cached is not None:
            return cached
        out: list[Grant] = []
        for cluster in sorted(self.clusters()):
            for gr in resources:
                a = self.access(user, cluster, gr.group, gr.resource)
                if a.nothing:
                    continue
                out.append(
                    Grant(
                        cluster,
                        gr.group,
                        gr.resource,
                        everywhere=a.everywhere,
                        namespaces=tuple(sorted(a.namespaces)),
                        names=tuple(sorted(a.names)),
                        named_in=tuple(sorted((ns, n) for ns, names in a.names_in.items() for n in names)),
                    )
                )
        self._grants[key] = result = tuple(out)
        return result


def narrowed(grants: Sequence[Grant], search: Search) -> tuple[Grant, ...]:
    """The grants that can matter to ``search``: only its clusters, and only the namespaces it
    asks for (the path's, or ``namespaces`` in). Same rows, a much smaller condition: a selective
    query of a user bound in hundreds of namespaces stays as cheap as an administrator's."""
    clusters = search.clusters
    namespaces = (search.namespace,) if search.namespace else search.namespaces.include
    out: list[Grant] = []
    for g in grants:
        if search.single_cluster and g.cluster != search.single_cluster:
            continue
        if (
            clusters.include is not None and g.cluster not in clusters.include
        ) or g.cluster in clusters.exclude:
            continue
        if namespaces is not None and not g.everywhere:
            wanted = set(namespaces)
            g = dataclasses.replace(
                g,
                namespaces=tuple(ns for ns in g.namespaces if ns in wanted),
                named_in=tuple(p for p in g.named_in if p[0] in wanted),
            )
            if not (g.namespaces or g.names or g.named_in):
                continue
        out.append(g)
    return tuple(out)
