"""A transient discovery failure of one API group must not purge that group's data.

On a real member the CRD group's APIService is pointed at a Service without endpoints, so
``/apis/stable.example.com/v1`` answers 503 (what an aggregated API whose backend is down does).
The synchro reports DiscoveryFailed for the resource and leaves its rows as they are through many
rediscoveries; the other resources keep syncing; when the group answers again it syncs on."""

from __future__ import annotations

import json
import time

import pytest

from harness.cluster import Cluster
from tests.e2e.sync_support import (
    GR,
    cluster_rows,
    install_crd,
    make_settings,
    pediacluster,
    pediacluster_status,
    start_synchro,
    start_writer,
    store_rows,
    unique,
    wait_for,
    wait_store_matches,
)
from tests.e2e.test_sync_store import CRONTAB_CRD

pytestmark = pytest.mark.e2e

CM: GR = ("", "v1", "configmaps")
CT: GR = ("stable.example.com", "v1", "crontabs")
APISERVICE = "v1.stable.example.com"


def test_group_discovery_outage_keeps_data(
    host_cluster: Cluster, member_cluster: object, sqlite_url: str
) -> None:
    member: Cluster = member_cluster("discovery-outage")  # type: ignore[operator]
    member.apply(CRONTAB_CRD)
    member.wait_crd("crontabs.stable.example.com")
    member.apply(
        "apiVersion: stable.example.com/v1\nkind: CronTab\n"
        "metadata: {name: keep-me, namespace: default}\nspec: {cronSpec: '* * * * *'}"
    )
    install_crd(host_cluster)
    name = unique("outage")
    host_cluster.apply(pediacluster(name, member, {"": ["configmaps"], "stable.example.com": ["crontabs"]}))
    settings = make_settings(host_cluster, sqlite_url, f"memory://{unique('q')}")
    writer, synchro = start_writer(settings), start_synchro(settings, unique("w"))
    try:
        wait_store_matches(sqlite_url, lambda: cluster_rows(name, member, [CM, CT]), [name])
        crontab_rows = {k: v for k, v in store_rows(sqlite_url, [name]).items() if k[2] == "crontabs"}
        assert len(crontab_rows) == 1

        # Break the group: its APIService now proxies to a Service with no endpoints (503).
        member.apply(
            "apiVersion: v1\nkind: Service\nmetadata: {name: nowhere, namespace: default}\n"
            "spec: {ports: [{port: 443}]}"
        )
        # Without the automanaged label the CRD's APIService is left alone by its controller.
        broken = {
            "metadata": {"labels": {"kube-aggregator.kubernetes.io/automanaged": None}},
            "spec": {
                "service": {"namespace": "default", "name": "nowhere", "port": 443},
                "insecureSkipTLSVerify": True,
            },
        }
        member.kubectl("patch", "apiservice", APISERVICE, "--type=merge", "-p", json.dumps(broken))
        wait_for(
            lambda: (
                member.kubectl("get", "--raw", "/apis/stable.example.com/v1", check=False).returncode != 0
            ),
            "the group's discovery fails",
        )
        member.kubectl("create", "configmap", "during-outage", "-n", "default")

        def crontabs_condition() -> dict[str, object]:
            for group in pediacluster_status(host_cluster, name).get("resources") or []:
                for res in group["resources"]:
                    if res["resource"] == "crontabs":
                        return dict(res["syncConditions"][0])
            return {}

        cond = wait_for(
            lambda: (c := crontabs_condition()).get("reason") == "DiscoveryFailed" and c, "DiscoveryFailed"
        )
        assert "stable.example.com/v1" in str(cond["message"]), cond
        # Many rediscoveries (one per 1 s probe while something is off): nothing is purged, and
        # the other resource keeps syncing.
        time.sleep(6)
        rows = store_rows(sqlite_url, [name])
        assert {k: v for k, v in rows.items() if k[2] == "crontabs"} == crontab_rows
        wait_store_matches(sqlite_url, lambda: cluster_rows(name, member, [CM]) | crontab_rows, [name])

        # The group comes back: it is synced again (new objects included).
        fixed = {"spec": {"service": None, "insecureSkipTLSVerify": None}}
        member.kubectl("patch", "apiservice", APISERVICE, "--type=merge", "-p", json.dumps(fixed))
        wait_for(
            lambda: (
                member.kubectl("get", "--raw", "/apis/stable.example.com/v1", check=False).returncode == 0
            ),
            "the group's discovery works again",
        )
        # Created through its REST path: the member's aggregated discovery (which kubectl apply
        # reads on a cache miss) may list the group again only much later (seen: not within 60 s).
        after = {
            "apiVersion": "stable.example.com/v1",
            "kind": "CronTab",
            "metadata": {"name": "after-outage", "namespace": "default"},
            "spec": {"cronSpec": "* * * * *"},
        }
        member.kubectl(
            "create",
            "--raw",
            "/apis/stable.example.com/v1/namespaces/default/crontabs",
            "-f",
            "-",
            input=json.dumps(after),
        )
        wait_store_matches(sqlite_url, lambda: cluster_rows(name, member, [CM, CT]), [name])
    finally:
        synchro.stop()
        writer.stop()
        host_cluster.kubectl("delete", "pediaclusters", "--all", "--wait=false")
