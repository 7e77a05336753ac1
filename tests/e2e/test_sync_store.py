"""The store follows two member clusters (current and older kube-apiserver) exactly: a few hundred
configmaps, services, deployments (with their controller-made replicasets and pods) and custom
resources are created, updated and deleted with kubectl; then a PediaCluster is deleted and its
rows go. On SQLite with the in-process queue, and on PostgreSQL and MariaDB through Redis."""

from __future__ import annotations

import time

import pytest

from harness.cluster import Cluster
from tests.e2e.sync_support import (
    GR,
    Key,
    cluster_rows,
    install_crd,
    make_settings,
    pediacluster,
    start_synchro,
    start_writer,
    store_rows,
    unique,
    wait_for,
    wait_store_matches,
)

pytestmark = pytest.mark.e2e

CRONTAB_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: crontabs.stable.example.com}
spec:
  group: stable.example.com
  scope: Namespaced
  names: {plural: crontabs, singular: crontab, kind: CronTab, shortNames: [ct]}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {type: object, properties: {cronSpec: {type: string}, replicas: {type: integer}}}
    additionalPrinterColumns:
    - {name: Spec, type: string, jsonPath: .spec.cronSpec}
"""

GRS: list[GR] = [
    ("", "v1", "configmaps"),
    ("", "v1", "services"),
    ("", "v1", "pods"),
    ("apps", "v1", "deployments"),
    ("apps", "v1", "replicasets"),
    ("stable.example.com", "v1", "crontabs"),
]
SPEC_GROUPS = {
    "": ["configmaps", "services", "pods"],
    "apps": ["deployments", "replicasets"],
    "stable.example.com": ["crontabs"],
}
CONFIGMAPS, SERVICES, DEPLOYMENTS, CRONTABS = 120, 30, 15, 30


def objects_yaml(ns: str) -> str:
    docs = [f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}"]
    docs += [
        f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cm-{i}, namespace: {ns}}}\ndata: {{i: '{i}'}}"
        for i in range(CONFIGMAPS)
    ]
    docs += [
        f"apiVersion: v1\nkind: Service\nmetadata: {{name: svc-{i}, namespace: {ns}}}\n"
        f"spec: {{ports: [{{port: {8000 + i}}}], selector: {{app: a{i}}}}}"
        for i in range(SERVICES)
    ]
    docs += [
        f"apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: dep-{i}, namespace: {ns}}}\n"
        f"spec:\n  replicas: 1\n  selector: {{matchLabels: {{app: d{i}}}}}\n"
        f"  template:\n    metadata: {{labels: {{app: d{i}}}}}\n"
        f"    spec: {{containers: [{{name: c, image: nginx:1.{i}}}]}}"
        for i in range(DEPLOYMENTS)
    ]
    docs += [
        f"apiVersion: stable.example.com/v1\nkind: CronTab\nmetadata: {{name: ct-{i}, namespace: {ns}}}\n"
        f"spec: {{cronSpec: '*/{i + 1} * * * *', replicas: {i}}}"
        for i in range(CRONTABS)
    ]
    return "\n---\n".join(docs)


def mutate(member: Cluster, ns: str) -> None:
    """Updates and deletes of every kind, as a user would type them."""
    member.kubectl("-n", ns, "label", "configmaps", "--all", "touched=yes")
    member.kubectl("-n", ns, "annotate", "services", "--all", "note=changed")
    member.kubectl("-n", ns, "scale", "deployments", "--all", "--replicas=2")
    member.kubectl("-n", ns, "patch", "crontabs", "ct-1", "--type=merge", "-p", '{"spec":{"replicas":99}}')
    member.kubectl(
        "-n", ns, "delete", "configmaps", *[f"cm-{i}" for i in range(0, CONFIGMAPS, 2)], "--wait=false"
    )
    member.kubectl(
        "-n", ns, "delete", "services", *[f"svc-{i}" for i in range(0, SERVICES, 3)], "--wait=false"
    )
    member.kubectl("-n", ns, "delete", "crontabs", *[f"ct-{i}" for i in range(10)], "--wait=false")
    member.kubectl("-n", ns, "delete", "deployment", "dep-0", "--wait=false")
    member.kubectl("-n", ns, "create", "configmap", "late-arrival", "--from-literal=x=1")


def settled(member: Cluster, ns: str) -> bool:
    """The member's controllers are done with what ``mutate`` asked: every deployment scaled to 2
    (pods made), dep-0's ReplicaSet and pods collected."""
    deployments = member.get_json("deployments", "-n", ns)["items"]
    if len(deployments) != DEPLOYMENTS - 1 or not all(
        d.get("status", {}).get("observedGeneration") == d["metadata"]["generation"]
        and d["status"].get("replicas") == 2
        and d["status"].get("updatedReplicas") == 2
        for d in deployments
    ):
        return False
    if member.get_json("replicasets", "-n", ns, "-l", "app=d0")["items"]:
        return False
    return len(member.get_json("pods", "-n", ns)["items"]) == 2 * (DEPLOYMENTS - 1)


@pytest.mark.parametrize(
    ("store", "queue"), [("sqlite", "memory"), ("postgresql", "redis"), ("mysql", "redis")]
)
def test_store_equals_clusters(
    store: str,
    queue: str,
    request: pytest.FixtureRequest,
    host_cluster: Cluster,
    two_member_clusters: tuple[Cluster, Cluster],
) -> None:
    store_url: str = request.getfixturevalue(
        {"sqlite": "sqlite_url", "postgresql": "postgres_url", "mysql": "mysql_url"}[store]
    )
    queue_url = f"memory://{unique('q')}" if queue == "memory" else request.getfixturevalue("redis_url")
    install_crd(host_cluster)
    members = {f"{store}-1": two_member_clusters[0], f"{store}-2": two_member_clusters[1]}
    for member in members.values():
        member.apply(CRONTAB_CRD)
        member.wait_crd("crontabs.stable.example.com")

    def expected() -> dict[Key, int]:
        out: dict[Key, int] = {}
        for name, member in members.items():
            out.update(cluster_rows(name, member, GRS))
        return out

    settings = make_settings(host_cluster, store_url, queue_url)
    writer = start_writer(settings)
    synchro = start_synchro(settings, worker_id=unique("w"))
    try:
        for name, member in members.items():
            host_cluster.apply(pediacluster(name, member, SPEC_GROUPS))
        ns = unique("load")
        t0 = time.monotonic()
        for member in members.values():
            member.apply(objects_yaml(ns))
        created = time.monotonic() - t0
        took = wait_store_matches(store_url, expected, members, timeout=90)
        count = len(store_rows(store_url, members))
        print(
            f"[{store}/{queue}] {count} objects: kubectl create {created:.1f}s, "
            f"store matched {took:.2f}s later"
        )
        # what kubectl created, at least (ReplicaSets and pods come from the controllers, maybe later)
        assert count >= 2 * (CONFIGMAPS + SERVICES + DEPLOYMENTS + CRONTABS)

        for member in members.values():
            mutate(member, ns)
        # The members' own controllers scale the deployments and garbage-collect dep-0's
        # ReplicaSet and pods; how long that takes on a loaded machine is not the pipeline's time,
        # so the clock starts once the members have settled.
        wait_for(lambda: all(settled(m, ns) for m in members.values()), "member controllers settled", 90)
        took = wait_store_matches(store_url, expected, members, timeout=60)
        print(f"[{store}/{queue}] after updates/deletes: store matched {took:.2f}s after the members settled")
        # Issue 3's acceptance: the store matches the clusters within 2 s of the last change; that
        # is what this measures on an unloaded machine (with the polling of both sides). 10 s
        # leaves room for a loaded 2-core CI machine while still failing on a stuck or
        # batch-delayed pipeline.
        assert took <= 10.0, f"store matched {took:.1f}s after the last change (bound 10 s)"

        # Deleting a PediaCluster removes its rows (finalizer: purge, then the object goes).
        gone, kept = list(members)
        host_cluster.kubectl("delete", "pediacluster", gone, "--timeout=60s")
        wait_for(lambda: not store_rows(store_url, [gone]), f"rows of {gone} purged", timeout=30)
        wait_store_matches(store_url, lambda: cluster_rows(kept, members[kept], GRS), [kept], timeout=30)
        host_cluster.kubectl("delete", "pediacluster", kept, "--timeout=60s")
    finally:
        synchro.stop()
        writer.stop()
