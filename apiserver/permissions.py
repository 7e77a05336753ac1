"""What a user may read in one member cluster, evaluated from that member's own RBAC objects.

The host decides whether a user may use Clusterpedia at all; each member decides what that user
sees of it (DESIGN section 8). This module is the pure half: given a member's Roles, ClusterRoles,
RoleBindings and ClusterRoleBindings (as the synchro stored them) and a user (name and groups, as
the host authenticated them), it computes, per group/resource, where that user may ``get`` or
``list`` objects -- as the Kubernetes RBAC authorizer would decide each request:

- a ClusterRoleBinding grants its role's rules in every namespace and on cluster-scoped objects;
  a RoleBinding grants them in its own namespace only (cluster-scoped objects need cluster-wide
  rights, as in Kubernetes);
- subjects: ``User`` by name, ``Group`` by membership (``system:authenticated`` and the
  ServiceAccount groups arrive with the identity), ``ServiceAccount`` as the user
  ``system:serviceaccount:<namespace>:<name>`` (its namespace defaulting to the binding's);
- rules: verbs ``get``/``list``/``*``; ``apiGroups`` and ``resources`` with ``*``; a subresource
  rule (``pods/log``) grants nothing on the resource itself; ``resourceNames`` restrict to those
  names;
- aggregated ClusterRoles (``view``, ``edit``, ``admin``, and any with an ``aggregationRule``)
  count with the ``rules`` the member's clusterrole-aggregation controller wrote into them, which
  is what the member's own authorizer reads: a selector the controller has not applied yet grants
  nothing here either.

The result, :class:`Access` per group/resource, is turned into a store predicate by the caller, so
pages, ``continue`` and counts stay exact (no filtering after paging).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import msgspec

READ_VERBS = frozenset({"get", "list", "*"})


class _Meta(msgspec.Struct):
    name: str = ""
    namespace: str = ""


class PolicyRule(msgspec.Struct):
    verbs: list[str] = msgspec.field(default_factory=list)
    apiGroups: list[str] | None = None
    resources: list[str] | None = None
    resourceNames: list[str] | None = None


class Role(msgspec.Struct):
    """A Role or a ClusterRole."""

    metadata: _Meta = msgspec.field(default_factory=_Meta)
    rules: list[PolicyRule] | None = None


class Subject(msgspec.Struct):
    kind: str = ""
    name: str = ""
    namespace: str = ""


class RoleRef(msgspec.Struct):
    kind: str = ""
    name: str = ""


class Binding(msgspec.Struct):
    """A RoleBinding or a ClusterRoleBinding."""

    metadata: _Meta = msgspec.field(default_factory=_Meta)
    subjects: list[Subject] | None = None
    roleRef: RoleRef = msgspec.field(default_factory=RoleRef)


role_decoder = msgspec.json.Decoder(Role)
binding_decoder = msgspec.json.Decoder(Binding)


@dataclass(frozen=True, slots=True)
class User:
    name: str
    groups: frozenset[str] = frozenset()


@dataclass(slots=True)
class Access:
    """Where a user may read objects of one group/resource in one member cluster.

    ``everywhere``: every object. Otherwise the union of: every object in ``namespaces``; objects
    named in ``names`` in any namespace (and cluster-scoped ones); objects named in
    ``names_in[namespace]`` in that namespace. Namespaced grants never reach cluster-scoped objects."""

    everywhere: bool = False
    namespaces: set[str] = field(default_factory=set)
    names: set[str] = field(default_factory=set)
    names_in: dict[str, set[str]] = field(default_factory=dict)

    @property
    def nothing(self) -> bool:
        return not (self.everywhere or self.namespaces or self.names or self.names_in)

    def allows(self, namespace: str, name: str) -> bool:
        """May the user read the object ``namespace/name`` ("" namespace: cluster-scoped)?"""
        if self.everywhere or name in self.names:
            return True
        if not namespace:
            return False
        return namespace in self.namespaces or name in self.names_in.get(namespace, ())

    def add(self, namespace: str | None, names: Sequence[str]) -> None:
        """Grant ``names`` (all when empty) in ``namespace`` (None: cluster-wide)."""
        if self.everywhere:
            return
        if namespace is None:
            if names:
                self.names.update(names)
            else:
                self.everywhere = True
                self.namespaces.clear()
                self.names.clear()
                self.names_in.clear()
        elif names:
            self.names_in.setdefault(namespace, set()).update(names)
        else:
            self.namespaces.add(namespace)


def _matches(values: Iterable[str] | None, wanted: str) -> bool:
    return any(v == "*" or v == wanted for v in values or ())


class MemberPolicy:
    """The RBAC objects of one member cluster, indexed for evaluating users."""

    def __init__(
        self,
        roles: Iterable[Role],
        cluster_roles: Iterable[Role],
        role_bindings: Iterable[Binding],
        cluster_role_bindings: Iterable[Binding],
    ) -> None:
        self.roles = {(r.metadata.namespace, r.metadata.name): r for r in roles}
        self.cluster_roles = {r.metadata.name: r for r in cluster_roles}
        self.role_bindings = list(role_bindings)
        self.cluster_role_bindings = list(cluster_role_bindings)

    def cluster_role_rules(self, name: str) -> list[PolicyRule]:
        """A ClusterRole's rules as stored (for an aggregated one, what the member's controller
        aggregated into it: the authorizer reads nothing else)."""
        role = self.cluster_roles.get(name)
        return list(role.rules or ()) if role is not None else []

    def _rules(self, ref: RoleRef, namespace: str) -> list[PolicyRule]:
        if ref.kind == "ClusterRole":
            return self.cluster_role_rules(ref.name)
        if ref.kind == "Role" and namespace:
            role = self.roles.get((namespace, ref.name))
            return list(role.rules or ()) if role is not None else []
        return []

    def access(self, user: User, group: str, resource: str) -> Access:
        """Where ``user`` may get or list ``resource`` of API group ``group`` in this member."""
        out = Access()
        for binding in self.cluster_role_bindings:
            if binding.roleRef.kind == "ClusterRole" and _binds(binding, user, ""):
                _grant(out, self._rules(binding.roleRef, ""), group, resource, None)
                if out.everywhere:
                    return out
        for binding in self.role_bindings:
            namespace = binding.metadata.namespace
            if namespace and _binds(binding, user, namespace):
                _grant(out, self._rules(binding.roleRef, namespace), group, resource, namespace)
        return out


def _binds(binding: Binding, user: User, namespace: str) -> bool:
    for subject in binding.subjects or ():
        if subject.kind == "User" and subject.name == user.name:
            return True
        if subject.kind == "Group" and subject.name in user.groups:
            return True
        if subject.kind == "ServiceAccount":
            sa_namespace = subject.namespace or namespace
            if sa_namespace and user.name == f"system:serviceaccount:{sa_namespace}:{subject.name}":
                return True
    return False


def _grant(
    out: Access, rules: Iterable[PolicyRule], group: str, resource: str, namespace: str | None
) -> None:
    for rule in rules:
        if not any(v in READ_VERBS for v in rule.verbs):
            continue
        if not _matches(rule.apiGroups, group) or not _matches(rule.resources, resource):
            continue
        out.add(namespace, list(rule.resourceNames or ()))
        if out.everywhere:
            return
