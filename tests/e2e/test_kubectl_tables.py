"""Golden comparison: kubectl through Clusterpedia prints what kubectl prints on each member cluster.

Two real member clusters (current and older Kubernetes, with controller managers so Deployments get
ReplicaSets and Pods) hold namespaces, deployments, services of every type, configmaps and a CRD with
printer columns. Their objects are read back with ``kubectl get -o json`` and stored with the
writer's upserts; the real API tier serves them. For each kind and each kubectl (1.27, 1.29, 1.32):
the rows of ``kubectl --cluster clusterpedia get X -A`` (and ``-o wide``) of one cluster, without the
CLUSTER cell, equal the rows of ``kubectl get X -A`` on that member — AGE aside, which moves.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from common.storage import open_store
from harness.cluster import Cluster
from harness.paths import KUBECTL_VERSIONS, kubectl_binary
from tests.e2e.kubectl_support import (
    CLUSTERROLES,
    CONFIGMAPS,
    CRD,
    CRONJOBS,
    DAEMONSETS,
    DEPLOYMENTS,
    ENDPOINTS,
    EVENTS,
    GADGETS,
    GOLDEN_KINDS,
    INGRESSES,
    JOBS,
    LEASES,
    MORE_KINDS_YAML,
    NAMESPACES,
    NETWORKPOLICIES,
    PDBS,
    PODS,
    PVCS,
    REPLICASETS,
    ROLEBINDINGS,
    ROLES,
    SECRETS,
    SERVICEACCOUNTS,
    SERVICES,
    STATEFULSETS,
    WIDGETS,
    WORKLOADS,
    ApiTier,
    Kind,
    assert_golden,
    drop_columns,
    fill_crd_from_cluster,
    fill_from_cluster,
    kubectl_run,
    member_rows,
    parse_table,
    pedia_rows,
    without_cluster,
)

pytestmark = pytest.mark.e2e

BUILTIN = [
    NAMESPACES,
    DEPLOYMENTS,
    REPLICASETS,
    PODS,
    SERVICES,
    CONFIGMAPS,
    SECRETS,
    SERVICEACCOUNTS,
    ROLES,
    ROLEBINDINGS,
    CLUSTERROLES,
    DAEMONSETS,
    STATEFULSETS,
    JOBS,
    CRONJOBS,
    LEASES,
    INGRESSES,
    NETWORKPOLICIES,
    PDBS,
    PVCS,
    EVENTS,
    ENDPOINTS,
]


@dataclass
class World:
    members: dict[str, Cluster]
    api: ApiTier
    kubeconfig: Path
    widget: Kind
    store_url: str


def _wait_for_pods(cluster: Cluster, count: int, timeout: float = 60.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(cluster.get_json("pods", "-A")["items"]) >= count:
            return
        time.sleep(0.5)
    raise AssertionError(f"{cluster.name}: the controller manager made no pods")


def _wait_quiet(cluster: Cluster, quiet_seconds: float = 3.0, timeout: float = 60.0) -> None:
    """Wait until the controller manager stops changing the workloads (status of deployments,
    replicasets, statefulsets, jobs, PDBs, endpoints...): the store is filled from one snapshot,
    and the golden comparisons read the member live. Events are left out (the PV controller keeps
    re-emitting FailedBinding for the unbound claim). Gives up quietly after ``timeout``: the
    comparisons then say what differs."""
    import time

    kinds = "deployments,replicasets,pods,statefulsets,daemonsets,jobs,poddisruptionbudgets,pvc,endpoints"
    path = '{range .items[*]}{.metadata.uid}={.metadata.resourceVersion}{"\\n"}{end}'
    deadline = time.monotonic() + timeout
    last, since = "", time.monotonic()
    while time.monotonic() < deadline:
        now = cluster.kubectl("get", kinds, "-A", "-o", f"jsonpath={path}").stdout
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_seconds:
            return
        time.sleep(0.5)


@pytest.fixture(scope="module")
def world(
    two_member_clusters: tuple[Cluster, Cluster], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    workdir = tmp_path_factory.mktemp("kubectl-tables")
    store_url = f"sqlite:///{workdir / 'store.db'}"
    store = open_store(store_url)
    store.migrate()
    members = {c.name: c for c in two_member_clusters}
    widget = None
    for cluster in two_member_clusters:
        cluster.apply(WORKLOADS)
        cluster.apply(MORE_KINDS_YAML)
        cluster.apply(CRD)
        cluster.wait_crd("widgets.example.com")
        cluster.apply(WIDGETS)
        cluster.apply(GADGETS.split("---")[0])
        cluster.wait_crd("gadgets.example.com")
        cluster.apply(GADGETS.split("---")[1])
        _wait_for_pods(cluster, 3)
    for cluster in two_member_clusters:
        _wait_quiet(cluster)
    for cluster in two_member_clusters:
        fill_from_cluster(store, cluster, BUILTIN)
        widget = fill_crd_from_cluster(store, cluster, "widgets.example.com")
        fill_crd_from_cluster(store, cluster, "gadgets.example.com")  # no printer columns: NAME AGE
    store.close()
    assert widget is not None
    api = ApiTier(workdir, store_url).start()
    try:
        kubeconfig = api.kubeconfig(workdir / "kubeconfig", list(members))
        yield World(members, api, kubeconfig, widget, store_url)
    finally:
        api.stop()


def _pedia_rows(
    world: World, version: str, cluster_entry: str, args: list[str]
) -> tuple[list[str], list[list[str]]]:
    return pedia_rows(world.kubeconfig, version, cluster_entry, args)


@pytest.mark.parametrize("version", KUBECTL_VERSIONS)
@pytest.mark.parametrize("kind", GOLDEN_KINDS)
def test_all_clusters_rows_equal_each_members_rows(world: World, kind: str, version: str) -> None:
    for wide in (False, True):
        assert_golden(world.kubeconfig, world.members, kind, version, wide=wide)


MORE_KINDS = [
    "replicasets",
    "secrets",
    "roles",
    "rolebindings",
    "clusterroles",
    "daemonsets",
    "statefulsets",
    "jobs",
    "cronjobs",
    "leases",
    "ingresses",
    "networkpolicies",
    "poddisruptionbudgets",
    "persistentvolumeclaims",
    "endpoints",
    "events",
]
TIME_COLUMNS = ["AGE", "LAST SEEN", "FIRST SEEN", "DURATION", "LAST SCHEDULE"]


# kube-apiserver 1.34 still prints SECRETS for serviceaccounts, 1.37 does not; Clusterpedia prints as
# the newest does, so serviceaccounts are compared with the 1.37 member only.
MEMBER_KINDS = [(m, k) for m in ("cluster-1", "cluster-2") for k in MORE_KINDS] + [
    ("cluster-1", "serviceaccounts")
]


LIVE_KINDS = {"events": EVENTS}
"""Kinds the members' controllers keep writing after the store was filled (a CronJob's Jobs record
events every minute): the store is refreshed from the member before such a comparison, and the
comparison is repeated (a few times at most) when the member wrote again in between."""


@pytest.mark.parametrize(("member", "kind"), MEMBER_KINDS)
def test_more_kinds_match_each_member(world: World, member: str, kind: str) -> None:
    cluster = world.members[member]
    args = [kind, "-A", "-o", "wide"]
    for _ in range(3 if kind in LIVE_KINDS else 1):
        if kind in LIVE_KINDS:
            store = open_store(world.store_url)
            try:
                fill_from_cluster(store, cluster, [LIVE_KINDS[kind]])
            finally:
                store.close()
        out = kubectl_run(kubectl_binary("1.32"), world.kubeconfig, "--cluster", member, "get", *args).stdout
        headers, rows = drop_columns(*parse_table(out), TIME_COLUMNS)
        want = drop_columns(*parse_table(cluster.kubectl("get", *args).stdout), TIME_COLUMNS)
        if without_cluster(headers, rows, member) == want:
            break
    assert want[1], f"{member} has no {kind}"
    assert without_cluster(headers, rows, member) == want


def test_one_cluster_one_object_wide_and_yaml(world: World) -> None:
    cluster = world.members["cluster-2"]
    args = ["-n", "shop", "deployments", "web", "-o", "wide"]
    headers, rows = _pedia_rows(world, "1.32", "cluster-2", args)
    assert headers[0] == "CLUSTER" and len(rows) == 1
    assert without_cluster(headers, rows, "cluster-2") == member_rows(cluster, "1.32", args)
    out = kubectl_run(
        kubectl_binary("1.29"),
        world.kubeconfig,
        "--cluster",
        "cluster-2",
        "-n",
        "shop",
        "get",
        "deploy",
        "web",
        "-o",
        "yaml",
    ).stdout
    assert "shadow.clusterpedia.io/cluster-name: cluster-2" in out
    assert "kind: Deployment" in out


def test_api_resources_lists_what_was_synced(world: World) -> None:
    for version in KUBECTL_VERSIONS:
        out = kubectl_run(
            kubectl_binary(version), world.kubeconfig, "--cluster", "clusterpedia", "api-resources"
        ).stdout
        headers, rows = parse_table(out)
        assert headers == ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
        table = {r[0]: r[1:] for r in rows}
        assert table["pods"] == ["po", "v1", "true", "Pod"]
        assert table["deployments"] == ["deploy", "apps/v1", "true", "Deployment"]
        assert table["widgets"] == ["wg", "example.com/v1", "true", "Widget"]
        assert table["namespaces"] == ["ns", "v1", "false", "Namespace"]
        assert "nodes" not in table


@pytest.mark.parametrize("version", ["1.29", "1.32"])
def test_explain_through_clusterpedia(world: World, version: str) -> None:
    def explain(entry: str, what: str) -> str:
        kubectl = kubectl_binary(version)
        return kubectl_run(kubectl, world.kubeconfig, "--cluster", entry, "explain", what).stdout

    out = explain("clusterpedia", "deployments.spec.replicas")
    assert "KIND:       Deployment" in out and "VERSION:    v1" in out
    assert "FIELD: replicas <integer>" in out and "Number of desired pods" in out
    out = explain("cluster-1", "pods.spec.containers")
    assert "FIELD: containers <[]Container>" in out and "image\t<string>" in out
    out = explain("clusterpedia", "widgets")
    assert "KIND:       Widget" in out and "GROUP:      example.com" in out
