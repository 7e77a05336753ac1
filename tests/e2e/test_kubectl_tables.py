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

from common.storage.engine import create_schema, make_engine
from tests.e2e.kubectl_support import (
    CONFIGMAPS,
    DEPLOYMENTS,
    NAMESPACES,
    PODS,
    REPLICASETS,
    ROLES,
    SECRETS,
    SERVICEACCOUNTS,
    SERVICES,
    ApiTier,
    Kind,
    drop_columns,
    fill_crd_from_cluster,
    fill_from_cluster,
    kubectl_run,
    parse_table,
)
from tests.harness.cluster import Cluster
from tests.harness.paths import KUBECTL_VERSIONS, kubectl_binary

pytestmark = pytest.mark.e2e

WORKLOADS = """
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {team: a}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop, labels: {app: web}}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: nginx, image: "nginx:1.25"}
      - {name: sidecar, image: "busybox:1.36", command: [sleep, "3600"]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: default}
spec:
  replicas: 1
  selector:
    matchLabels: {app: api}
    matchExpressions: [{key: tier, operator: In, values: [backend, api]}]
  template:
    metadata: {labels: {app: api, tier: api}}
    spec:
      containers: [{name: api, image: "example/api:2"}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}, {name: dns, port: 53, protocol: UDP}]
---
apiVersion: v1
kind: Service
metadata: {name: web-np, namespace: shop}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web-lb, namespace: shop}
spec:
  type: LoadBalancer
  externalIPs: [192.0.2.10]
  ports: [{port: 443}]
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: default}
spec:
  type: ExternalName
  externalName: db.example.com
---
apiVersion: v1
kind: Service
metadata: {name: headless, namespace: default}
spec:
  clusterIP: None
  selector: {app: api}
  ports: [{port: 9000}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: shop}
data: {a: "1", b: "2"}
binaryData: {c: AAEC}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: empty, namespace: default}
---
apiVersion: v1
kind: Secret
metadata: {name: creds, namespace: shop}
type: Opaque
stringData: {user: u, password: p}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: reader, namespace: shop}
rules: [{apiGroups: [""], resources: [pods], verbs: [get]}]
"""

CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wg]}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
    additionalPrinterColumns:
    - {name: Size, type: integer, jsonPath: .spec.size}
    - {name: Color, type: string, jsonPath: .spec.color}
    - {name: Ready, type: string, jsonPath: '.status.conditions[?(@.type=="Ready")].status'}
    - {name: Ratio, type: number, jsonPath: .spec.ratio, priority: 1}
    - {name: Paused, type: boolean, jsonPath: .spec.paused}
    - {name: Age, type: date, jsonPath: .metadata.creationTimestamp}
"""

GADGETS = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: gadgets.example.com}
spec:
  group: example.com
  scope: Cluster
  names: {plural: gadgets, singular: gadget, kind: Gadget}
  versions:
  - name: v1alpha1
    served: true
    storage: true
    schema:
      openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
---
apiVersion: example.com/v1alpha1
kind: Gadget
metadata: {name: g1}
"""

WIDGETS = """
apiVersion: example.com/v1
kind: Widget
metadata: {name: small, namespace: shop}
spec: {size: 1, color: red, ratio: 0.25, paused: false}
status: {conditions: [{type: Synced, status: "False"}, {type: Ready, status: "True"}]}
---
apiVersion: example.com/v1
kind: Widget
metadata: {name: bare, namespace: default}
spec: {}
"""

BUILTIN = [NAMESPACES, DEPLOYMENTS, REPLICASETS, PODS, SERVICES, CONFIGMAPS, SECRETS, SERVICEACCOUNTS, ROLES]


@dataclass
class World:
    members: dict[str, Cluster]
    api: ApiTier
    kubeconfig: Path
    widget: Kind


def _wait_for_pods(cluster: Cluster, count: int, timeout: float = 60.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(cluster.get_json("pods", "-A")["items"]) >= count:
            return
        time.sleep(0.5)
    raise AssertionError(f"{cluster.name}: the controller manager made no pods")


@pytest.fixture(scope="module")
def world(
    two_member_clusters: tuple[Cluster, Cluster], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    workdir = tmp_path_factory.mktemp("kubectl-tables")
    store_url = f"sqlite:///{workdir / 'store.db'}"
    engine = make_engine(store_url)
    create_schema(engine)
    members = {c.name: c for c in two_member_clusters}
    widget = None
    for cluster in two_member_clusters:
        cluster.apply(WORKLOADS)
        cluster.apply(CRD)
        cluster.kubectl("wait", "--for=condition=Established", "crd/widgets.example.com", "--timeout=60s")
        cluster.apply(WIDGETS)
        cluster.apply(GADGETS.split("---")[0])
        cluster.kubectl("wait", "--for=condition=Established", "crd/gadgets.example.com", "--timeout=60s")
        cluster.apply(GADGETS.split("---")[1])
        _wait_for_pods(cluster, 3)
    for cluster in two_member_clusters:
        fill_from_cluster(engine, cluster, BUILTIN)
        widget = fill_crd_from_cluster(engine, cluster, "widgets.example.com")
        fill_crd_from_cluster(engine, cluster, "gadgets.example.com")  # no printer columns: NAME AGE
    engine.dispose()
    assert widget is not None
    api = ApiTier(workdir, store_url).start()
    try:
        kubeconfig = api.kubeconfig(workdir / "kubeconfig", list(members))
        yield World(members, api, kubeconfig, widget)
    finally:
        api.stop()


def _member_rows(cluster: Cluster, version: str, args: list[str]) -> tuple[list[str], list[list[str]]]:
    out = cluster.kubectl("get", *args, version=version).stdout
    return drop_columns(*parse_table(out), ["AGE"])


def _pedia_rows(
    world: World, version: str, cluster_entry: str, args: list[str]
) -> tuple[list[str], list[list[str]]]:
    out = kubectl_run(
        kubectl_binary(version), world.kubeconfig, "--cluster", cluster_entry, "get", *args
    ).stdout
    return drop_columns(*parse_table(out), ["AGE"])


def _without_cluster(
    headers: list[str], rows: list[list[str]], cluster: str
) -> tuple[list[str], list[list[str]]]:
    i = headers.index("CLUSTER")
    return headers[:i] + headers[i + 1 :], [r[:i] + r[i + 1 :] for r in rows if r[i] == cluster]


GOLDEN_KINDS = [
    "pods",
    "deployments",
    "services",
    "configmaps",
    "namespaces",
    "widgets.example.com",
    "gadgets.example.com",
]
CLUSTER_SCOPED = ("namespaces", "gadgets.example.com")


@pytest.mark.parametrize("version", KUBECTL_VERSIONS)
@pytest.mark.parametrize("kind", GOLDEN_KINDS)
def test_all_clusters_rows_equal_each_members_rows(world: World, kind: str, version: str) -> None:
    for wide in (False, True):
        args = [kind, "-A"] + (["-o", "wide"] if wide else [])
        headers, rows = _pedia_rows(world, version, "clusterpedia", args)
        assert "CLUSTER" in headers
        # kubectl puts NAMESPACE before the server's columns; CLUSTER is the server's first column
        expected_first = ["CLUSTER"] if kind in CLUSTER_SCOPED else ["NAMESPACE", "CLUSTER"]
        assert headers[: len(expected_first)] == expected_first
        seen = 0
        for name, cluster in world.members.items():
            want_headers, want_rows = _member_rows(cluster, version, args)
            got_headers, got_rows = _without_cluster(headers, rows, name)
            assert got_headers == want_headers, f"{kind} wide={wide}"
            assert got_rows == want_rows, f"{kind} wide={wide} cluster={name}"
            assert want_rows, f"{name} has no {kind}"
            seen += len(got_rows)
        assert seen == len(rows)


@pytest.mark.parametrize("kind", ["replicasets", "secrets", "roles", "serviceaccounts"])
def test_more_kinds_match_the_current_member(world: World, kind: str) -> None:
    """Kinds whose printers differ between Kubernetes versions are served as the newest prints them."""
    cluster = world.members["cluster-1"]
    args = [kind, "-A", "-o", "wide"]
    headers, rows = _pedia_rows(world, "1.32", "cluster-1", args)
    assert _without_cluster(headers, rows, "cluster-1") == _member_rows(cluster, "1.32", args)


def test_one_cluster_one_object_wide_and_yaml(world: World) -> None:
    cluster = world.members["cluster-2"]
    args = ["-n", "shop", "deployments", "web", "-o", "wide"]
    headers, rows = _pedia_rows(world, "1.32", "cluster-2", args)
    assert headers[0] == "CLUSTER" and len(rows) == 1
    assert _without_cluster(headers, rows, "cluster-2") == _member_rows(cluster, "1.32", args)
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
