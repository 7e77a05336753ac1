"""A resource dropped from ``spec.resources`` while no synchro runs is still purged: the
PediaCluster's status is the durable record of what was synced, and a worker taking the cluster
over purges what the status lists but the spec no longer asks for."""

from __future__ import annotations

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

pytestmark = pytest.mark.e2e

BOTH: list[GR] = [("", "v1", "configmaps"), ("", "v1", "serviceaccounts")]


def test_resource_dropped_while_synchro_down_is_purged(
    host_cluster: Cluster, member_cluster: object, sqlite_url: str
) -> None:
    member: Cluster = member_cluster("restart-purge-member")  # type: ignore[operator]
    install_crd(host_cluster)
    name = unique("rp")
    host_cluster.apply(pediacluster(name, member, {"": ["configmaps", "serviceaccounts"]}))
    member.apply("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: kept-apart, namespace: default}")
    settings = make_settings(host_cluster, sqlite_url, f"memory://{unique('q')}")
    writer = start_writer(settings)
    synchro = start_synchro(settings, unique("w"))
    try:
        wait_store_matches(sqlite_url, lambda: cluster_rows(name, member, BOTH), [name])

        def status_lists_configmaps() -> bool:
            groups = pediacluster_status(host_cluster, name).get("resources") or []
            return any(
                r["resource"] == "configmaps" and r["syncConditions"][0].get("listResourceVersion")
                for g in groups
                for r in g["resources"]
            )

        wait_for(status_lists_configmaps, "configmaps and its list resourceVersion in the status")
        synchro.stop()
        host_cluster.apply(pediacluster(name, member, {"": ["serviceaccounts"]}))
        assert any(k[2] == "configmaps" for k in store_rows(sqlite_url, [name]))  # still there
        synchro = start_synchro(settings, unique("w"))
        wait_store_matches(
            sqlite_url, lambda: cluster_rows(name, member, [("", "v1", "serviceaccounts")]), [name]
        )
        assert not any(k[2] == "configmaps" for k in store_rows(sqlite_url, [name]))
    finally:
        synchro.stop()
        writer.stop()
        host_cluster.kubectl("delete", "pediaclusters", "--all", "--wait=false")
