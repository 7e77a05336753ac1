"""410 Gone for real: a member whose watches go straight to etcd (no watch cache, so no bookmarks)
and which compacts etcd every second. The synchro's short watches resume from a resourceVersion
that other writes have pushed out of etcd's history: the member answers 410, the synchro relists
under a new epoch, and the store still ends equal to the cluster, deletions included."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from harness.cluster import Cluster
from tests.e2e.sync_support import (
    GR,
    cluster_rows,
    install_crd,
    make_settings,
    pediacluster,
    start_synchro,
    start_writer,
    unique,
    wait_for,
    wait_store_matches,
)

pytestmark = pytest.mark.e2e

CM: list[GR] = [("", "v1", "configmaps")]


@pytest.fixture
def compacting_member(tmp_path: Path) -> Iterator[Cluster]:
    cluster = Cluster(
        "gone",
        "current",
        workdir=tmp_path / "gone",
        extra_apiserver_args=["--watch-cache=false", "--etcd-compaction-interval=1s"],
    )
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def relists(cluster: str) -> float:
    return (
        REGISTRY.get_sample_value(
            "clusterpedia_synchro_relists_total", {"cluster": cluster, "resource": "configmaps"}
        )
        or 0.0
    )


def test_relist_after_410(host_cluster: Cluster, compacting_member: Cluster, sqlite_url: str) -> None:
    member = compacting_member
    install_crd(host_cluster)
    name = unique("gone")
    host_cluster.apply(pediacluster(name, member, {"": ["configmaps"]}))
    settings = make_settings(host_cluster, sqlite_url, f"memory://{unique('q')}", watch_timeout_seconds=1)
    writer, synchro = start_writer(settings), start_synchro(settings, unique("w"))
    try:
        ns = unique("ns")
        member.kubectl("create", "namespace", ns)
        for i in range(5):
            member.kubectl("-n", ns, "create", "configmap", f"cm-{i}")
        wait_store_matches(sqlite_url, lambda: cluster_rows(name, member, CM), [name])
        before = relists(name)
        # Churn on another resource moves etcd's revision on; compaction drops the history the
        # configmaps watch would resume from. Configmap changes are interleaved.
        for round_ in range(12):
            member.kubectl("-n", ns, "create", "secret", "generic", f"s-{round_}", "--from-literal=a=b")
            member.kubectl("-n", ns, "delete", "secret", f"s-{round_}")
            if round_ % 4 == 0:
                member.kubectl("-n", ns, "delete", "configmap", f"cm-{round_ // 4}")
                member.kubectl("-n", ns, "create", "configmap", f"new-{round_}")
        wait_for(lambda: relists(name) > before, "a relist after 410 Gone", timeout=30)
        took = wait_store_matches(sqlite_url, lambda: cluster_rows(name, member, CM), [name], timeout=30)
        print(f"relists: {relists(name) - before:.0f}; store matched {took:.2f}s after the last change")
    finally:
        synchro.stop()
        writer.stop()
        host_cluster.kubectl("delete", "pediaclusters", "--all", "--wait=false")
