"""Caller permissions (member-rbac): through a real host's aggregator, every user sees exactly what
each member's own RBAC lets them read there, with the member itself as the oracle.

Two real members (1.37 and 1.34, with controller managers: the built-in ``view`` ClusterRole is
aggregated by theirs), the real synchro and writer, the API tier registered in a real host with
``--authorization-mode=member-rbac``. Users are impersonated through the host (the admin's
``Impersonate-User``/``Impersonate-Group`` headers, or ``kubectl --as``); the oracle is a
SubjectAccessReview on the member: an object is readable when the user may ``get`` or ``list`` it
(by name, so ``resourceNames`` count). Randomized rule sets use a fixed, printed seed.
"""

from __future__ import annotations

import base64
import http.client
import json
import random
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness.cluster import Cluster
from harness.paths import kubectl_binary
from tests.e2e.kubectl_support import READER_ROLE, RESOURCES_PATH, ApiTier, kubectl_run
from tests.e2e.sync_support import (
    install_crd,
    make_settings,
    pediacluster,
    start_synchro,
    start_writer,
    store_rows,
    unique,
    wait_for,
)
from tests.e2e.test_kubectl_aggregation import serve_through_host

pytestmark = pytest.mark.e2e

SEED = 20261206
NAMESPACES = ("team-a", "team-b", "other")
SYNCED = {"": ["configmaps", "secrets", "namespaces"], "apps": ["deployments"]}
HOST_RBAC = (
    READER_ROLE
    + """
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: everyone-may-search}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: clusterpedia-reader}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: Group, name: system:authenticated}]
"""
)


def seed_objects(cluster: str) -> str:
    docs = []
    for ns in NAMESPACES:
        docs.append(f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}")
        for i in range(5):
            docs.append(
                f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cm-{i}, namespace: {ns}}}\n"
                "data: {k: v}"
            )
        docs.append(
            f"apiVersion: v1\nkind: Secret\nmetadata: {{name: db, namespace: {ns}}}\n"
            f"data: {{password: {base64.b64encode(f'pw-{cluster}-{ns}'.encode()).decode()}}}"
        )
    docs.append(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: team-a}\n"
        "spec: {replicas: 0, selector: {matchLabels: {app: web}}, template: {metadata: {labels: {app: web}},"
        " spec: {containers: [{name: web, image: nginx}]}}}"
    )
    return "\n---\n".join(docs)


@dataclass
class World:
    host: Cluster
    members: dict[str, Cluster]
    api: ApiTier
    kubeconfig: Path
    store_url: str


def _call(
    cluster: Cluster, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        cluster.server + path,
        data=data,
        method=method,
        headers={
            "Authorization": f"Bearer {cluster.token}",
            "Content-Type": "application/json",
            **(headers or {}),
        },
    )
    ctx = ssl.create_default_context(cadata=cluster.ca_pem.decode())
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=30) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw)
        except ValueError:
            return e.code, raw.decode("utf-8", "replace")


def as_user(w: World, path: str, user: str, groups: tuple[str, ...] = ()) -> tuple[int, Any]:
    """GET through the host's aggregator as ``user`` in ``groups`` (impersonated by the host's
    admin; the host adds system:authenticated)."""
    url = urllib.parse.urlsplit(w.host.server)
    ctx = ssl.create_default_context(cadata=w.host.ca_pem.decode())
    conn = http.client.HTTPSConnection(url.hostname or "", url.port, context=ctx, timeout=30)
    try:
        conn.putrequest("GET", path)
        conn.putheader("Authorization", f"Bearer {w.host.token}")
        conn.putheader("Impersonate-User", user)
        for group in groups:
            conn.putheader("Impersonate-Group", group)
        conn.endheaders()
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def may_read(
    member: Cluster, user: str, groups: tuple[str, ...], group: str, resource: str, ns: str, name: str
) -> bool:
    """The oracle: the member's own SubjectAccessReview, for get or list of that object by name."""
    for verb in ("get", "list"):
        attrs: dict[str, str] = {"verb": verb, "group": group, "resource": resource, "name": name}
        if ns:
            attrs["namespace"] = ns
        code, body = _call(
            member,
            "POST",
            "/apis/authorization.k8s.io/v1/subjectaccessreviews",
            {
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SubjectAccessReview",
                "spec": {
                    "user": user,
                    "groups": [*groups, "system:authenticated"],
                    "resourceAttributes": attrs,
                },
            },
        )
        assert code == 201, body
        if body["status"].get("allowed"):
            return True
    return False


def member_objects(member: Cluster, group: str, resource: str) -> list[tuple[str, str]]:
    path = f"/api/v1/{resource}" if not group else f"/apis/{group}/v1/{resource}"
    code, body = _call(member, "GET", path)
    assert code == 200, body
    return [(i["metadata"].get("namespace", ""), i["metadata"]["name"]) for i in body["items"]]


def expected(
    w: World, user: str, groups: tuple[str, ...], group: str, resource: str
) -> set[tuple[str, str, str]]:
    return {
        (cluster, ns, name)
        for cluster, member in w.members.items()
        for ns, name in member_objects(member, group, resource)
        if may_read(member, user, groups, group, resource, ns, name)
    }


def listed(
    w: World, user: str, groups: tuple[str, ...], group: str, resource: str
) -> set[tuple[str, str, str]]:
    path = (
        f"{RESOURCES_PATH}/api/v1/{resource}" if not group else f"{RESOURCES_PATH}/apis/{group}/v1/{resource}"
    )
    code, body = as_user(w, path, user, groups)
    assert code == 200, body
    return {
        (
            i["metadata"]["annotations"]["shadow.clusterpedia.io/cluster-name"],
            i["metadata"].get("namespace", ""),
            i["metadata"]["name"],
        )
        for i in body["items"]
    }


def rbac_settled(w: World) -> None:
    """Wait until the store holds the members' RBAC exactly as the members do now."""

    def same() -> bool:
        have = {
            k[:5]
            for k in store_rows(w.store_url, list(w.members), member_rbac=True)
            if k[1] == "rbac.authorization.k8s.io"
        }
        want = {
            (cluster, "rbac.authorization.k8s.io", res, ns, name)
            for cluster, member in w.members.items()
            for res in ("roles", "clusterroles", "rolebindings", "clusterrolebindings")
            for ns, name in member_objects(member, "rbac.authorization.k8s.io", res)
        }
        return have == want

    wait_for(same, "the members' RBAC in the store", timeout=60)


@pytest.fixture(scope="module")
def world(
    host_cluster: Cluster,
    two_member_clusters: tuple[Cluster, Cluster],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[World]:
    workdir = tmp_path_factory.mktemp("permissions")
    store_url = f"sqlite:///{workdir / 'store.db'}"
    members = {c.name: c for c in two_member_clusters}
    for name, member in members.items():
        member.apply(seed_objects(name))
    install_crd(host_cluster)
    for name, member in members.items():
        host_cluster.apply(pediacluster(name, member, SYNCED))
    settings = make_settings(host_cluster, store_url, f"memory://{unique('q')}")
    writer, synchro = start_writer(settings), start_synchro(settings, unique("w"))
    api: ApiTier | None = None
    try:
        served = serve_through_host(host_cluster, workdir, store_url, HOST_RBAC)
        api, kubeconfig = served.api, served.kubeconfig
        w = World(host_cluster, members, api, kubeconfig, store_url)
        wait_for(
            lambda: (
                len([k for k in store_rows(store_url, list(members)) if k[2] == "configmaps"])
                >= sum(len(member_objects(m, "", "configmaps")) for m in members.values())
            ),
            "configmaps synced",
        )
        rbac_settled(w)
        yield w
    finally:
        if api is not None:
            api.stop()
        synchro.stop()
        writer.stop()


def view_binding(name: str, namespace: str, user: str) -> str:
    """A RoleBinding of ``user`` to the built-in ``view`` ClusterRole in ``namespace``."""
    return json.dumps(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": name, "namespace": namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
        }
    )


def apply_rbac(w: World, cluster: str, yaml_text: str) -> None:
    w.members[cluster].apply(yaml_text)
    rbac_settled(w)


def eventually_listed(
    w: World, user: str, groups: tuple[str, ...], resource: str, want: set[Any], timeout: float = 10.0
) -> set[Any]:
    """What ``user`` lists once the API tier has read the changed RBAC (it rechecks at most once a
    second): fails with the last difference after 10 s."""

    def same() -> bool:
        got = listed(w, user, groups, "", resource)
        assert got == want, (user, groups, resource, sorted(got ^ want)[:10])
        return True

    wait_for(same, f"{user} {groups} listing {resource} as the members allow", timeout=timeout)
    return want


def test_no_member_rights_means_an_empty_list_not_a_403(world: World) -> None:
    code, body = as_user(world, f"{RESOURCES_PATH}/api/v1/configmaps", "nobody")
    assert (code, body["kind"], body["items"]) == (200, "ConfigMapList", [])
    code, body = as_user(world, f"{RESOURCES_PATH}/api/v1/secrets", "nobody")
    assert (code, body["items"]) == (200, [])


def test_bindings_decide_per_cluster_and_namespace(world: World) -> None:
    apply_rbac(
        world,
        "cluster-1",
        view_binding("alice-view", "team-a", "alice"),
    )
    apply_rbac(
        world,
        "cluster-2",
        """
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: alice-view-all}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: alice}]
""",
    )
    got = eventually_listed(world, "alice", (), "configmaps", expected(world, "alice", (), "", "configmaps"))
    assert {c for c, _, _ in got} == {"cluster-1", "cluster-2"}
    assert {ns for c, ns, _ in got if c == "cluster-1"} == {"team-a"}
    assert {ns for c, ns, _ in got if c == "cluster-2"} >= {"team-a", "team-b", "other", "kube-system"}
    # view does not include secrets; namespaces are cluster-scoped: cluster-1's RoleBinding gives none
    assert listed(world, "alice", (), "", "secrets") == set()
    assert {c for c, _, _ in listed(world, "alice", (), "", "namespaces")} == {"cluster-2"}


def test_randomized_rules_match_the_members_own_decisions(world: World) -> None:
    rng = random.Random(SEED)
    print(f"seed {SEED}")
    users = [f"user-{i}" for i in range(5)]
    groups = ["devs", "ops"]
    resources = ["configmaps", "secrets", "namespaces", "*"]
    for cluster in world.members:
        docs = [
            # an aggregated ClusterRole: its rules come from the ClusterRoles its selector matches
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: rnd-aggregate}\n"
            "aggregationRule: {clusterRoleSelectors: [{matchLabels: {rnd/aggregate: 'true'}}]}\nrules: []",
        ]
        for r in range(6):
            rule: dict[str, Any] = {
                "apiGroups": [rng.choice(["", "*"])],
                "resources": [rng.choice(resources)],
                "verbs": rng.sample(["get", "list", "watch", "create"], k=rng.randint(1, 3)),
            }
            if rng.random() < 0.3:
                rule["resourceNames"] = [rng.choice(["cm-1", "cm-3", "db", "team-b"])]
            labels = {"rnd/aggregate": "true"} if r % 3 == 0 else {}
            docs.append(
                json.dumps(
                    {
                        "apiVersion": "rbac.authorization.k8s.io/v1",
                        "kind": "ClusterRole",
                        "metadata": {"name": f"rnd-role-{r}", "labels": labels},
                        "rules": [rule],
                    }
                )
            )
        for b in range(8):
            subject = rng.choice(
                [{"kind": "User", "name": rng.choice(users)}, {"kind": "Group", "name": rng.choice(groups)}]
            )
            subject["apiGroup"] = "rbac.authorization.k8s.io"
            role = rng.choice([f"rnd-role-{i}" for i in range(6)] + ["rnd-aggregate", "view"])
            ref = {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role}
            if rng.random() < 0.3:
                kind, meta = "ClusterRoleBinding", {"name": f"rnd-crb-{b}"}
            else:
                kind, meta = "RoleBinding", {"name": f"rnd-rb-{b}", "namespace": rng.choice(NAMESPACES)}
            docs.append(
                json.dumps(
                    {
                        "apiVersion": "rbac.authorization.k8s.io/v1",
                        "kind": kind,
                        "metadata": meta,
                        "roleRef": ref,
                        "subjects": [subject],
                    }
                )
            )
        world.members[cluster].apply("\n---\n".join(docs))
    rbac_settled(world)
    for user in users:
        for group in ((), ("devs",), ("ops",)):
            for resource in ("configmaps", "secrets", "namespaces"):
                eventually_listed(world, user, group, resource, expected(world, user, group, "", resource))


def test_chunked_lists_return_each_allowed_object_once(world: World) -> None:
    apply_rbac(
        world,
        "cluster-1",
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "List",
                "items": [json.loads(view_binding("pager-view", ns, "pager")) for ns in ("team-b", "other")],
            }
        ),
    )
    want = eventually_listed(world, "pager", (), "configmaps", expected(world, "pager", (), "", "configmaps"))
    assert len(want) > 7
    out = kubectl_run(
        kubectl_binary("1.32"),
        world.kubeconfig,
        "--cluster",
        "clusterpedia",
        "--as",
        "pager",
        "get",
        "configmaps",
        "-A",
        "--chunk-size=7",
        "-o",
        "json",
    ).stdout
    items = json.loads(out)["items"]
    got = [
        (
            i["metadata"]["annotations"]["shadow.clusterpedia.io/cluster-name"],
            i["metadata"]["namespace"],
            i["metadata"]["name"],
        )
        for i in items
    ]
    assert sorted(got) == sorted(want) and len(got) == len(set(got))
    code, body = as_user(
        world, f"{RESOURCES_PATH}/api/v1/configmaps?limit=3&withRemainingCount=true", "pager"
    )
    assert code == 200 and body["metadata"]["remainingItemCount"] == len(want) - 3


def test_bindings_take_effect_promptly(world: World) -> None:
    binding = view_binding("late-view", "other", "late")
    assert listed(world, "late", (), "", "configmaps") == set()
    world.members["cluster-2"].apply(binding)
    start = time.monotonic()
    wait_for(lambda: listed(world, "late", (), "", "configmaps"), "a new binding to show rows", timeout=10)
    shown = time.monotonic() - start
    world.members["cluster-2"].kubectl("delete", "rolebinding", "late-view", "-n", "other")
    start = time.monotonic()
    wait_for(
        lambda: not listed(world, "late", (), "", "configmaps"), "a removed binding to hide rows", timeout=10
    )
    print(f"binding shown after {shown:.2f}s, hidden after {time.monotonic() - start:.2f}s")


def test_secrets_need_the_right_and_carry_no_values(world: World) -> None:
    # nobody may read the secrets, not even by name
    code, body = as_user(
        world, f"{RESOURCES_PATH}/clusters/cluster-1/api/v1/namespaces/team-a/secrets/db", "eve"
    )
    assert code == 403 and body["reason"] == "Forbidden", body
    assert 'User "eve" cannot get resource "secrets"' in body["message"]
    apply_rbac(
        world,
        "cluster-1",
        """
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: read-db, namespace: team-a}
rules: [{apiGroups: [""], resources: [secrets], resourceNames: [db], verbs: [get]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: dba-reads-db, namespace: team-a}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: read-db}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: dba}]
""",
    )
    eventually_listed(world, "dba", (), "secrets", {("cluster-1", "team-a", "db")})
    code, body = as_user(
        world, f"{RESOURCES_PATH}/clusters/cluster-1/api/v1/namespaces/team-a/secrets/db", "dba"
    )
    assert code == 200 and body["data"] == {"password": ""}, body  # redacted in the store
    # a name the user may not read is 403 (as the member answers), a missing one they may read is 404
    code, _ = as_user(
        world, f"{RESOURCES_PATH}/clusters/cluster-1/api/v1/namespaces/team-b/secrets/db", "dba"
    )
    assert code == 403
    code, _ = as_user(
        world, f"{RESOURCES_PATH}/clusters/cluster-1/api/v1/namespaces/team-a/configmaps/nope", "alice"
    )
    assert code == 404


def test_collections_are_filtered_per_member_resource(world: World) -> None:
    apply_rbac(
        world,
        "cluster-2",
        view_binding("deployer-view", "team-a", "deployer"),
    )
    eventually_listed(world, "deployer", (), "configmaps", expected(world, "deployer", (), "", "configmaps"))
    code, body = as_user(
        world, "/apis/pedia.clusterpedia.io/v1alpha1/collectionresources/workloads", "deployer"
    )
    assert code == 200, body
    got = {
        (
            i["metadata"]["annotations"]["shadow.clusterpedia.io/cluster-name"],
            i["metadata"]["namespace"],
            i["metadata"]["name"],
        )
        for i in body["items"]
    }
    assert got == {("cluster-2", "team-a", "web")}


def test_identity_mapping_per_pediacluster(world: World) -> None:
    """cluster-2 knows people as "corp:<name>": its PediaCluster says so (spec.identity), and the
    host's "mapped" then reads what cluster-2 lets "corp:mapped" read; cluster-1 keeps the host's
    names. Last in the module: changing the spec restarts cluster-2's sync."""
    world.members["cluster-1"].apply(view_binding("mapped-view", "other", "mapped"))
    apply_rbac(world, "cluster-2", view_binding("mapped-view", "other", "corp:mapped"))
    cluster_1 = expected(world, "mapped", (), "", "configmaps")
    assert {c for c, _, _ in cluster_1} == {"cluster-1"}  # the members' own view, before mapping
    eventually_listed(world, "mapped", (), "configmaps", cluster_1)
    world.host.kubectl(
        "patch",
        "pediaclusters.clusters.clusterpedia.io",
        "cluster-2",
        "--type=merge",
        "-p",
        json.dumps({"spec": {"identity": {"usernamePrefix": "corp:"}}}),
    )
    cluster_2 = {
        ("cluster-2", ns, name)
        for ns, name in member_objects(world.members["cluster-2"], "", "configmaps")
        if ns == "other"
    }
    # the API tier reads PediaClusters every 10 s; cluster-2 also relists after its spec changed
    eventually_listed(world, "mapped", (), "configmaps", cluster_1 | cluster_2, timeout=40)
