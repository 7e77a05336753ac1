"""Bad PediaClusters get a Ready=False condition (or a resource's syncCondition Error) with a clear
reason and message on the host, while a good cluster (and the good resources of the same cluster)
keep syncing and nothing crashes. Fixing a spec recovers; dropping a resource purges its rows."""

from __future__ import annotations

import json
from typing import Any

import pytest

from harness.cluster import Cluster, free_port
from tests.e2e.sync_support import (
    GR,
    b64,
    cluster_rows,
    install_crd,
    make_settings,
    pediacluster,
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

GOOD_GRS: list[GR] = [("", "v1", "configmaps"), ("apps", "v1", "deployments")]


def raw_pediacluster(name: str, spec: dict[str, Any]) -> str:
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


def test_bad_pediaclusters(host_cluster: Cluster, member_cluster: Any, sqlite_url: str) -> None:
    member: Cluster = member_cluster("bad-input-member")
    other: Cluster = member_cluster("bad-input-other", version="older")
    install_crd(host_cluster)
    good = {"": ["configmaps"], "apps": ["deployments"]}
    resources = [{"group": "", "resources": ["configmaps"]}]
    host_cluster.apply(pediacluster("good", member, good))
    host_cluster.apply(
        raw_pediacluster(
            "bad-base64",
            {"apiserverURL": member.server, "tokenData": "%%% not base64", "resources": resources},
        )
    )
    host_cluster.apply(raw_pediacluster("no-url", {"tokenData": b64(member.token), "resources": resources}))
    unreachable = f"https://127.0.0.1:{free_port()}"
    host_cluster.apply(
        raw_pediacluster(
            "unreachable",
            {
                "apiserverURL": unreachable,
                "tokenData": b64("t"),
                "insecureSkipTLSVerify": True,
                "resources": resources,
            },
        )
    )
    host_cluster.apply(
        raw_pediacluster(
            "wrong-token",
            {
                "apiserverURL": member.server,
                "caData": b64(member.ca_pem),
                "tokenData": b64("wrong"),
                "resources": resources,
            },
        )
    )
    host_cluster.apply(
        raw_pediacluster(
            "wrong-ca",
            {
                "apiserverURL": member.server,
                "caData": b64(other.ca_pem),
                "tokenData": b64(member.token),
                "resources": resources,
            },
        )
    )
    host_cluster.apply(
        pediacluster(
            "unknown-resource", other, {"": ["configmaps", "gizmos"], "nothing.example.com": ["widgets"]}
        )
    )

    settings = make_settings(host_cluster, sqlite_url, f"memory://{unique('q')}")
    writer, synchro = start_writer(settings), start_synchro(settings, unique("w"))
    try:
        member.apply("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: hello, namespace: default}")
        wait_store_matches(sqlite_url, lambda: cluster_rows("good", member, GOOD_GRS), ["good"])

        cond = wait_for(
            lambda: (c := ready_of(host_cluster, "bad-base64")).get("reason") and c, "bad-base64 status"
        )
        assert (cond["status"], cond["reason"]) == ("False", "InvalidConfig")
        assert "spec.tokenData is not valid base64" in cond["message"]

        cond = wait_for(lambda: (c := ready_of(host_cluster, "no-url")).get("reason") and c, "no-url status")
        assert (cond["status"], cond["reason"]) == ("False", "InvalidConfig")
        assert "spec.apiserverURL is empty" in cond["message"]

        cond = wait_for(
            lambda: (c := ready_of(host_cluster, "unreachable")).get("reason") == "Unhealthy" and c,
            "unreachable",
        )
        assert cond["status"] == "False" and f"cannot reach {unreachable}" in cond["message"]

        cond = wait_for(
            lambda: (c := ready_of(host_cluster, "wrong-token")).get("reason") == "Unauthorized" and c, "401"
        )
        assert cond["status"] == "False" and "rejected the credentials" in cond["message"]

        cond = wait_for(
            lambda: (c := ready_of(host_cluster, "wrong-ca")).get("reason") == "Unhealthy" and c, "bad CA"
        )
        assert "CERTIFICATE_VERIFY_FAILED" in cond["message"]

        def unknown_status() -> dict[str, Any]:
            status = pediacluster_status(host_cluster, "unknown-resource")
            return (
                status
                if ready_condition(status).get("reason") == "ResourceNotFound" and status.get("resources")
                else {}
            )

        status = wait_for(unknown_status, "unknown-resource status")
        by_resource = {
            (g["group"], r["resource"]): r["syncConditions"][0]
            for g in status["resources"]
            for r in g["resources"]
        }
        assert by_resource[("", "gizmos")]["status"] == "Error"
        assert by_resource[("", "gizmos")]["reason"] == "ResourceNotFound"
        assert by_resource[("nothing.example.com", "widgets")]["status"] == "Error"
        assert "not served" in by_resource[("nothing.example.com", "widgets")]["message"]
        assert by_resource[("", "configmaps")]["status"] == "Syncing"
        assert ready_condition(status)["status"] == "False"
        message = ready_condition(status)["message"]
        assert "gizmos" in message and "widgets" in message
        # Its good resource syncs.
        wait_store_matches(
            sqlite_url,
            lambda: cluster_rows("unknown-resource", other, [("", "v1", "configmaps")]),
            ["unknown-resource"],
        )
        printed = host_cluster.kubectl("get", "pediaclusters").stdout
        assert "bad-base64" in printed and "False" in printed and "unknown-resource" in printed
        print(printed)

        # Fixing a spec recovers the cluster; dropping a resource purges its rows.
        host_cluster.apply(
            raw_pediacluster(
                "wrong-token",
                {
                    "apiserverURL": member.server,
                    "caData": b64(member.ca_pem),
                    "tokenData": b64(member.token),
                    "resources": resources,
                },
            )
        )
        wait_for(
            lambda: ready_of(host_cluster, "wrong-token").get("reason") == "Healthy", "wrong-token fixed"
        )
        wait_store_matches(
            sqlite_url,
            lambda: cluster_rows("wrong-token", member, [("", "v1", "configmaps")]),
            ["wrong-token"],
        )
        member.apply(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d, namespace: default}\n"
            "spec: {selector: {matchLabels: {a: b}},\n"
            "  template: {metadata: {labels: {a: b}}, spec: {containers: [{name: c, image: i}]}}}"
        )
        wait_store_matches(sqlite_url, lambda: cluster_rows("good", member, GOOD_GRS), ["good"])
        host_cluster.apply(pediacluster("good", member, {"": ["configmaps"]}))
        wait_store_matches(
            sqlite_url, lambda: cluster_rows("good", member, [("", "v1", "configmaps")]), ["good"]
        )
        assert not any(k[2] == "deployments" for k in store_rows(sqlite_url, ["good"]))
        assert synchro.thread.is_alive() and writer.thread.is_alive()
    finally:
        synchro.stop()
        writer.stop()
        host_cluster.kubectl("delete", "pediaclusters", "--all", "--wait=false")
