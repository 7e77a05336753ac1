"""The spec options beyond the seed's fields, against a real member: credentials from a kubeconfig,
from client certificate fields and from a Secret reference; namespace include/exclude; a whole
group with ``resources: ["*"]``; ``syncAllCustomResources`` (also picking up a CRD created later)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from harness.cluster import Cluster
from tests.e2e.sync_support import (
    GR,
    Key,
    b64,
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

CM: list[GR] = [("", "v1", "configmaps")]


def pc(name: str, spec: dict[str, Any]) -> str:
    return json.dumps(
        {
            "apiVersion": "clusters.clusterpedia.io/v1alpha1",
            "kind": "PediaCluster",
            "metadata": {"name": name},
            "spec": spec,
        }
    )


def ready_of(host: Cluster, name: str) -> dict[str, Any]:
    return ready_condition(pediacluster_status(host, name))


def gadget_crd(group: str) -> str:
    return json.dumps(
        {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": f"gadgets.{group}"},
            "spec": {
                "group": group,
                "scope": "Cluster",
                "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
                "versions": [
                    {
                        "name": "v1",
                        "served": True,
                        "storage": True,
                        "schema": {
                            "openAPIV3Schema": {
                                "type": "object",
                                "x-kubernetes-preserve-unknown-fields": True,
                            }
                        },
                    }
                ],
            },
        }
    )


def test_spec_options(host_cluster: Cluster, member_cluster: Any, sqlite_url: str) -> None:
    member: Cluster = member_cluster("options")
    install_crd(host_cluster)
    for ns in ("keep-a", "keep-b", "skip"):
        member.kubectl("create", "namespace", ns)
        member.kubectl("-n", ns, "create", "configmap", f"cm-{ns}", "--from-literal=a=b")
    member.apply(gadget_crd("one.example.com"))
    member.wait_crd("gadgets.one.example.com")
    member.apply("apiVersion: one.example.com/v1\nkind: Gadget\nmetadata: {name: g1}")
    configmaps = {"group": "", "resources": ["configmaps"]}

    # Credentials: a kubeconfig (client certificate), certData/keyData, a Secret reference.
    host_cluster.apply(
        pc("by-kubeconfig", {"kubeconfig": b64(member.kubeconfig.read_bytes()), "resources": [configmaps]})
    )
    host_cluster.apply(
        pc(
            "by-cert",
            {
                "apiserverURL": member.server,
                "caData": b64(member.ca_pem),
                "certData": b64(member.client_cert_pem),
                "keyData": b64(member.client_key_pem),
                "resources": [configmaps],
            },
        )
    )
    host_cluster.kubectl("create", "namespace", "clusterpedia-system", check=False)
    host_cluster.kubectl(
        "-n",
        "clusterpedia-system",
        "create",
        "secret",
        "generic",
        "member-creds",
        f"--from-literal=token={member.token}",
        f"--from-file=ca.crt={member.ca_file}",
    )
    label = ("-n", "clusterpedia-system", "label", "secret")
    host_cluster.kubectl(*label, "member-creds", "clusterpedia.io/credentials=true")
    # Any other Secret of the namespace (here the same one, unlabelled) is refused.
    host_cluster.kubectl(
        "-n",
        "clusterpedia-system",
        "create",
        "secret",
        "generic",
        "not-for-pedia",
        f"--from-literal=token={member.token}",
        f"--from-file=ca.crt={member.ca_file}",
    )
    host_cluster.apply(
        pc(
            "by-unlabelled-secret",
            {
                "apiserverURL": member.server,
                "secretRef": {"name": "not-for-pedia"},
                "resources": [configmaps],
            },
        )
    )
    host_cluster.apply(
        pc(
            "by-secret",
            {"apiserverURL": member.server, "secretRef": {"name": "member-creds"}, "resources": [configmaps]},
        )
    )
    # A Secret whose token is wrong at first, then replaced (a rotation).
    host_cluster.kubectl(
        "-n",
        "clusterpedia-system",
        "create",
        "secret",
        "generic",
        "rotating",
        "--from-literal=token=wrong",
        f"--from-file=ca.crt={member.ca_file}",
    )
    host_cluster.kubectl(*label, "rotating", "clusterpedia.io/credentials=true")
    host_cluster.apply(
        pc(
            "by-rotated-secret",
            {"apiserverURL": member.server, "secretRef": {"name": "rotating"}, "resources": [configmaps]},
        )
    )
    # Namespaces, a whole group, every custom resource.
    host_cluster.apply(
        pc(
            "filtered",
            {
                "kubeconfig": b64(member.kubeconfig.read_bytes()),
                "namespaces": {"include": ["keep-a", "keep-b", "skip"], "exclude": ["skip"]},
                "resources": [configmaps],
            },
        )
    )
    host_cluster.apply(
        pc(
            "wildcard",
            {
                "kubeconfig": b64(member.kubeconfig.read_bytes()),
                "resources": [{"group": "rbac.authorization.k8s.io", "resources": ["*"]}],
                "syncAllCustomResources": True,
            },
        )
    )

    settings = make_settings(host_cluster, sqlite_url, f"memory://{unique('q')}")
    writer, synchro = start_writer(settings), start_synchro(settings, unique("w"))
    try:
        for name in ("by-kubeconfig", "by-cert", "by-secret"):
            wait_store_matches(sqlite_url, lambda n=name: cluster_rows(n, member, CM), [name])

        wait_for(
            lambda: ready_of(host_cluster, "by-rotated-secret").get("reason") == "Unauthorized", "401 first"
        )
        cond = wait_for(
            lambda: (
                (c := ready_of(host_cluster, "by-unlabelled-secret")).get("reason") == "InvalidConfig" and c
            ),
            "unlabelled Secret refused",
        )
        assert (cond["status"], cond["reason"]) == ("False", "InvalidConfig"), cond
        assert 'not labelled clusterpedia.io/credentials="true"' in cond["message"]
        assert not store_rows(sqlite_url, ["by-unlabelled-secret"])
        patch = json.dumps({"stringData": {"token": member.token}})
        host_cluster.kubectl(
            "-n", "clusterpedia-system", "patch", "secret", "rotating", "--type=merge", "-p", patch
        )
        took = wait_store_matches(
            sqlite_url,
            lambda: cluster_rows("by-rotated-secret", member, CM),
            ["by-rotated-secret"],
            timeout=60,
        )
        print(f"rotated Secret picked up, store matched {took:.1f}s after the patch")

        def filtered() -> dict[Key, int]:
            return {
                k: v for k, v in cluster_rows("filtered", member, CM).items() if k[3] in ("keep-a", "keep-b")
            }

        wait_store_matches(sqlite_url, filtered, ["filtered"])
        assert len(filtered()) == 2

        rbac: list[GR] = [
            ("rbac.authorization.k8s.io", "v1", r)
            for r in ("clusterroles", "clusterrolebindings", "roles", "rolebindings")
        ]
        wait_store_matches(
            sqlite_url,
            lambda: cluster_rows("wildcard", member, [*rbac, ("one.example.com", "v1", "gadgets")]),
            ["wildcard"],
        )
        # A CRD created after the sync started is found by the periodic rediscovery.
        member.apply(gadget_crd("two.example.com"))
        member.wait_crd("gadgets.two.example.com")
        member.apply("apiVersion: two.example.com/v1\nkind: Gadget\nmetadata: {name: g2}")
        all_grs = [*rbac, ("one.example.com", "v1", "gadgets"), ("two.example.com", "v1", "gadgets")]
        took = wait_store_matches(
            sqlite_url, lambda: cluster_rows("wildcard", member, all_grs), ["wildcard"], timeout=60
        )
        print(f"a new CRD's objects reached the store {took:.1f}s after creation")
        assert ("wildcard", "two.example.com", "gadgets", "", "g2") in store_rows(sqlite_url, ["wildcard"])
        # asked for in the spec, the RBAC resources count as requested ones (4 + two gadget groups)
        wait_for(
            lambda: pediacluster_status(host_cluster, "wildcard").get("resourcesSummary") == "6/6",
            "wildcard's RESOURCES summary 6/6",
        )
    finally:
        synchro.stop()
        writer.stop()
        host_cluster.kubectl("delete", "pediaclusters", "--all", "--wait=false")
