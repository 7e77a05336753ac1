"""The RBAC evaluation: what a user may read in one member, as the Kubernetes RBAC authorizer
decides (bindings, subjects, wildcards, resourceNames, aggregated ClusterRoles)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from apiserver.permissions import Access, MemberPolicy, User, binding_decoder, role_decoder


def role(name: str, rules: list[dict[str, Any]], namespace: str = "", **extra: Any) -> Any:
    return role_decoder.decode(
        msgspec.json.encode(
            {
                "metadata": {"name": name, "namespace": namespace, **extra.pop("meta", {})},
                "rules": rules,
                **extra,
            }
        )
    )


def binding(name: str, ref: tuple[str, str], subjects: list[dict[str, str]], namespace: str = "") -> Any:
    return binding_decoder.decode(
        msgspec.json.encode(
            {
                "metadata": {"name": name, "namespace": namespace},
                "subjects": subjects,
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": ref[0], "name": ref[1]},
            }
        )
    )


VIEW_PODS = {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}
ALICE = User("alice", frozenset({"system:authenticated"}))


def policy(
    roles: Sequence[Any] = (),
    cluster_roles: Sequence[Any] = (),
    rbs: Sequence[Any] = (),
    crbs: Sequence[Any] = (),
) -> MemberPolicy:
    return MemberPolicy(roles, cluster_roles, rbs, crbs)


def test_no_binding_no_access() -> None:
    p = policy(cluster_roles=[role("view", [VIEW_PODS])])
    assert p.access(ALICE, "", "pods").nothing


def test_rolebinding_grants_its_namespace_only() -> None:
    p = policy(
        cluster_roles=[role("view", [VIEW_PODS])],
        rbs=[binding("b", ("ClusterRole", "view"), [{"kind": "User", "name": "alice"}], "team-a")],
    )
    a = p.access(ALICE, "", "pods")
    assert (a.everywhere, a.namespaces) == (False, {"team-a"})
    assert a.allows("team-a", "x") and not a.allows("team-b", "x") and not a.allows("", "x")
    assert p.access(ALICE, "", "secrets").nothing
    assert p.access(ALICE, "apps", "pods").nothing  # another group
    assert p.access(User("bob"), "", "pods").nothing


def test_clusterrolebinding_grants_everywhere_and_cluster_scoped() -> None:
    p = policy(
        cluster_roles=[role("nodes", [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["list"]}])],
        crbs=[binding("b", ("ClusterRole", "nodes"), [{"kind": "Group", "name": "sre"}])],
    )
    sre = User("carol", frozenset({"sre"}))
    assert p.access(sre, "", "nodes").everywhere and p.access(sre, "apps", "deployments").allows("", "n")
    assert p.access(ALICE, "", "nodes").nothing


def test_role_and_write_only_rules() -> None:
    p = policy(
        roles=[
            role("r", [VIEW_PODS], namespace="ns1"),
            role(
                "w",
                [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["create", "delete"]}],
                namespace="ns1",
            ),
        ],
        rbs=[
            binding("b1", ("Role", "r"), [{"kind": "User", "name": "alice"}], "ns1"),
            binding("b2", ("Role", "w"), [{"kind": "User", "name": "alice"}], "ns1"),
            # a RoleBinding to a Role of another namespace grants nothing
            binding("b3", ("Role", "r"), [{"kind": "User", "name": "alice"}], "ns2"),
        ],
    )
    assert p.access(ALICE, "", "pods").namespaces == {"ns1"}
    assert p.access(ALICE, "", "secrets").nothing


def test_resource_names_and_subresources() -> None:
    p = policy(
        cluster_roles=[
            role(
                "one-secret",
                [{"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["db"], "verbs": ["get"]}],
            ),
            role("logs", [{"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]}]),
        ],
        rbs=[binding("b", ("ClusterRole", "one-secret"), [{"kind": "User", "name": "alice"}], "ns1")],
        crbs=[binding("c", ("ClusterRole", "logs"), [{"kind": "User", "name": "alice"}])],
    )
    a = p.access(ALICE, "", "secrets")
    assert a.names_in == {"ns1": {"db"}} and a.allows("ns1", "db")
    assert not a.allows("ns1", "other") and not a.allows("ns2", "db")
    assert p.access(ALICE, "", "pods").nothing  # pods/log is not pods


def test_service_account_subjects() -> None:
    p = policy(
        cluster_roles=[role("view", [VIEW_PODS])],
        rbs=[binding("b", ("ClusterRole", "view"), [{"kind": "ServiceAccount", "name": "ci"}], "build")],
        crbs=[
            binding(
                "c", ("ClusterRole", "view"), [{"kind": "ServiceAccount", "name": "mon", "namespace": "ops"}]
            )
        ],
    )
    assert p.access(User("system:serviceaccount:build:ci"), "", "pods").namespaces == {"build"}
    assert p.access(User("system:serviceaccount:ops:mon"), "", "pods").everywhere
    assert p.access(User("system:serviceaccount:other:ci"), "", "pods").nothing


def test_aggregated_cluster_roles_count_with_the_rules_their_controller_wrote() -> None:
    """The member's authorizer reads ``rules`` only: the clusterrole-aggregation controller copies
    the selected roles' rules there. A selector it has not applied yet grants nothing (as on the
    member); the rules it wrote grant what they say."""
    selector = {
        "clusterRoleSelectors": [{"matchLabels": {"rbac.example.com/aggregate-to-monitoring": "true"}}]
    }
    part = role(
        "pods-part", [VIEW_PODS], meta={"labels": {"rbac.example.com/aggregate-to-monitoring": "true"}}
    )
    crb = binding("c", ("ClusterRole", "monitoring"), [{"kind": "Group", "name": "system:authenticated"}])
    pending = policy(cluster_roles=[role("monitoring", [], aggregationRule=selector), part], crbs=[crb])
    assert pending.access(ALICE, "", "pods").nothing
    done = policy(cluster_roles=[role("monitoring", [VIEW_PODS], aggregationRule=selector), part], crbs=[crb])
    assert done.access(ALICE, "", "pods").everywhere
    assert done.access(ALICE, "apps", "deployments").nothing


def test_access_union_and_everywhere_absorbs() -> None:
    a = Access()
    a.add("ns1", [])
    a.add("ns2", ["x"])
    a.add(None, ["y"])
    assert a.allows("ns1", "z") and a.allows("ns2", "x") and not a.allows("ns2", "z") and a.allows("ns9", "y")
    assert a.allows("", "y") and not a.allows("", "x")
    a.add(None, [])
    assert a.everywhere and not (a.namespaces or a.names or a.names_in)
