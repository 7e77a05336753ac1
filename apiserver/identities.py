"""Who the caller is in each member cluster (member-rbac), from the PediaClusters' ``spec.identity``.

By default the user and groups the host authenticated are the identity in every member: one
identity provider across clusters is the common case. A member that knows the same people under
other names (an OIDC username or groups prefix of its own, say) gets a mapping on its PediaCluster:

    spec:
      identity:
        usernamePrefix: "oidc:"       # the host's "alice" is "oidc:alice" there
        groupPrefix: "oidc:"          # ... and its groups are prefixed the same way
        extraGroups: ["via-clusterpedia"]

Names and groups starting with ``system:`` (ServiceAccounts, ``system:authenticated``,
``system:masters``...) are kept as they are, as kube-apiserver's own OIDC prefixes leave them.
The mappings are read from the host (the API tier may list PediaClusters) at most every
``refresh_seconds`` (``apiserver/pediaclusters.py``, shared with the freshness warnings); a
PediaCluster whose ``spec.identity`` is malformed shows nothing to anyone (permissions fail closed)
and the problem is logged.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec

from apiserver.pediaclusters import PediaClusterDirectory
from apiserver.permissions import User

log = logging.getLogger(__name__)


class IdentityMapping(msgspec.Struct, forbid_unknown_fields=True):
    usernamePrefix: str = ""
    groupPrefix: str = ""
    extraGroups: list[str] = msgspec.field(default_factory=list)

    def apply(self, user: User) -> User:
        def keep(name: str) -> bool:
            return name.startswith("system:")

        name = user.name if keep(user.name) else self.usernamePrefix + user.name
        groups = {g if keep(g) else self.groupPrefix + g for g in user.groups}
        return User(name, frozenset(groups | set(self.extraGroups)))


DENY = object()
"""A cluster whose mapping could not be read: nobody is anybody there."""

Mappings = dict[str, "IdentityMapping | object"]


def mappings_from(pediaclusters: dict[str, Any]) -> Mappings:
    """cluster name -> its mapping (absent: identity as the host authenticated it; DENY: malformed)."""
    out: Mappings = {}
    for item in pediaclusters.get("items") or ():
        name = str((item.get("metadata") or {}).get("name") or "")
        raw = (item.get("spec") or {}).get("identity")
        if not name or raw is None:
            continue
        try:
            mapping = msgspec.convert(raw, IdentityMapping)
        except msgspec.ValidationError as exc:
            log.warning("PediaCluster %s: spec.identity is not usable (%s): it shows nothing", name, exc)
            out[name] = DENY
            continue
        text = [mapping.usernamePrefix, mapping.groupPrefix, *mapping.extraGroups]
        if any(len(t) > 253 or any(ord(c) < 0x20 for c in t) for t in text):
            log.warning("PediaCluster %s: spec.identity holds control characters or is too long", name)
            out[name] = DENY
            continue
        out[name] = mapping
    return out


class PediaClusterIdentities:
    """The mappings of every PediaCluster, derived from the host's list (``PediaClusterDirectory``:
    refreshed in the background of requests, the last good one kept while the host does not answer)."""

    def __init__(self, directory: PediaClusterDirectory) -> None:
        self.directory = directory
        self._source: dict[str, Any] | None = None
        self._mappings: Mappings = {}

    async def mappings(self) -> Mappings | None:
        """The mappings; None until the PediaClusters could be read once (then nobody is mapped
        wrongly: member-rbac shows nothing until it knows who is who)."""
        current = await self.directory.current()
        if current is None:
            return None
        if current is not self._source:
            self._mappings, self._source = mappings_from(current), current
        return self._mappings
