"""The synchro needs little on the host cluster: this runs it as a plain user holding only the
rules below (what the Helm chart grants), through real RBAC, and checks the whole lifecycle: status,
finalizer, Leases, credentials from a Secret, deletion with purge."""

from __future__ import annotations

from typing import Any

import pytest

from common.settings import Settings
from harness.cluster import Cluster
from tests.e2e.sync_support import (
    GR,
    cluster_rows,
    install_crd,
    make_settings,
    pediacluster_status,
    ready_condition,
    start_synchro,
    start_writer,
    store_rows,
    unique,
    wait_for,
    wait_store_matches,
)

pytestmark = pytest.mark.e2e

HOST_RULES = """
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: synchro-test}
rules:
- apiGroups: [clusters.clusterpedia.io]
  resources: [pediaclusters]
  verbs: [get, list, watch, patch, update]
- {apiGroups: [clusters.clusterpedia.io], resources: [pediaclusters/status], verbs: [get, patch, update]}
- {apiGroups: [clusters.clusterpedia.io], resources: [pediaclusters/finalizers], verbs: [update]}
- {apiGroups: [""], resources: [namespaces], verbs: [get, create]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: synchro-test}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: synchro-test}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: synchro}]
---
apiVersion: v1
kind: Namespace
metadata: {name: pedia-rbac}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: synchro-test, namespace: pedia-rbac}
rules:
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  verbs: [get, list, watch, create, update, patch, delete]
- {apiGroups: [""], resources: [secrets], verbs: [get]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: synchro-test, namespace: pedia-rbac}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: synchro-test}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: synchro}]
"""

CM: list[GR] = [("", "v1", "configmaps")]


def test_synchro_with_least_privilege(host_cluster: Cluster, member_cluster: Any, sqlite_url: str) -> None:
    member: Cluster = member_cluster("rbac-host-member")
    install_crd(host_cluster)
    host_cluster.apply(HOST_RULES)
    host_cluster.kubectl(
        "-n",
        "pedia-rbac",
        "create",
        "secret",
        "generic",
        "member",
        f"--from-literal=token={member.token}",
        f"--from-file=ca.crt={member.ca_file}",
    )
    host_cluster.kubectl("-n", "pedia-rbac", "label", "secret", "member", "clusterpedia.io/credentials=true")
    name = unique("least")
    host_cluster.apply(
        "apiVersion: clusters.clusterpedia.io/v1alpha1\nkind: PediaCluster\n"
        f"metadata: {{name: {name}}}\n"
        f"spec: {{apiserverURL: '{member.server}', secretRef: {{name: member}}, "
        "resources: [{group: '', resources: [configmaps]}]}"
    )
    base = make_settings(host_cluster, sqlite_url, f"memory://{unique('q')}", lease_namespace="pedia-rbac")
    limited = Settings(
        **{f: getattr(base, f) for f in base.__struct_fields__ if f != "kubeconfig"},
        kubeconfig=str(host_cluster.user_kubeconfig("synchro")),
    )
    writer, synchro = start_writer(base), start_synchro(limited, unique("w"))
    try:
        wait_store_matches(sqlite_url, lambda: cluster_rows(name, member, CM), [name])
        wait_for(
            lambda: ready_condition(pediacluster_status(host_cluster, name)).get("reason") == "Healthy",
            "Healthy",
        )
        obj = host_cluster.get_json(f"pediaclusters.clusters.clusterpedia.io/{name}")
        assert obj["metadata"]["finalizers"] == ["clusterpedia.io/cleanup"]
        leases = {i["metadata"]["name"] for i in host_cluster.get_json("leases", "-n", "pedia-rbac")["items"]}
        assert f"pediacluster-{name}" in leases
        host_cluster.kubectl("delete", "pediacluster", name, "--timeout=60s")
        wait_for(lambda: not store_rows(sqlite_url, [name]), "rows purged")
    finally:
        synchro.stop()
        writer.stop()
