"""Faults, each ending with the store equal to the member clusters: a member kube-apiserver
restarts; the synchro is stopped while objects change (rows of objects deleted meanwhile are purged
by the relist's epoch); a synchro worker is killed with SIGKILL while another runs (the other takes
its clusters over once the Lease expires)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.cluster import Cluster
from tests.e2e.sync_support import (
    GR,
    Key,
    cluster_rows,
    install_crd,
    make_settings,
    pediacluster,
    pediacluster_status,
    ready_condition,
    start_synchro,
    start_writer,
    synchro_process,
    unique,
    wait_for,
    wait_store_matches,
)

pytestmark = pytest.mark.e2e

GRS: list[GR] = [("", "v1", "configmaps"), ("", "v1", "namespaces")]
SPEC = {"": ["configmaps", "namespaces"]}


def configmaps_yaml(ns: str, names: range, prefix: str = "cm") -> str:
    docs = [f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}"]
    docs += [
        f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {prefix}-{i}, namespace: {ns}}}" for i in names
    ]
    return "\n---\n".join(docs)


@pytest.fixture(scope="module")
def members(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Cluster]]:
    """Two plain member clusters of this module's own (one is restarted by a test)."""
    from harness.cluster import start_clusters

    c1 = Cluster("fault-1", "current", workdir=tmp_path_factory.mktemp("fault-1"))
    c2 = Cluster("fault-2", "older", workdir=tmp_path_factory.mktemp("fault-2"))
    try:
        start_clusters([c1, c2])
        yield {"fault-1": c1, "fault-2": c2}
    finally:
        c2.stop()
        c1.stop()


@pytest.fixture(scope="module")
def host(host_cluster: Cluster, members: dict[str, Cluster]) -> Cluster:
    install_crd(host_cluster)
    for name, member in members.items():
        host_cluster.apply(pediacluster(name, member, SPEC))
    return host_cluster


def expected_of(members: dict[str, Cluster]) -> dict[Key, int]:
    out: dict[Key, int] = {}
    for name, member in members.items():
        out.update(cluster_rows(name, member, GRS))
    return out


def test_member_apiserver_restart(host: Cluster, members: dict[str, Cluster], sqlite_url: str) -> None:
    settings = make_settings(host, sqlite_url, f"memory://{unique('q')}")
    writer, synchro = start_writer(settings), start_synchro(settings, unique("w"))
    try:
        ns = unique("restart")
        members["fault-1"].apply(configmaps_yaml(ns, range(50)))
        wait_store_matches(sqlite_url, lambda: expected_of(members), members)

        members["fault-1"].stop_apiserver()

        def stopped() -> dict[str, Any] | None:
            # While the apiserver shuts down, a probe may first see an HTTP error instead of a
            # refused connection; the final state is Unhealthy with the server named, watches stopped.
            status = pediacluster_status(host, "fault-1")
            c = ready_condition(status)
            resources = [r for g in status.get("resources", []) for r in g["resources"]]
            syncs = [x for r in resources for x in r["syncConditions"]]
            unhealthy = c.get("reason") == "Unhealthy" and members["fault-1"].server in c.get("message", "")
            return c if unhealthy and {x["status"] for x in syncs} == {"Stop"} else None

        cond = wait_for(stopped, "fault-1 Unhealthy with its watches stopped", timeout=30)
        assert cond["status"] == "False"
        # The other cluster keeps syncing meanwhile.
        members["fault-2"].apply(configmaps_yaml(ns, range(20)))
        wait_store_matches(sqlite_url, lambda: cluster_rows("fault-2", members["fault-2"], GRS), ["fault-2"])

        members["fault-1"].start_apiserver()
        members["fault-1"].kubectl("-n", ns, "delete", "configmap", "cm-1", "cm-2")
        members["fault-1"].apply(configmaps_yaml(ns, range(10), prefix="after"))
        took = wait_store_matches(sqlite_url, lambda: expected_of(members), members, timeout=60)
        print(f"store matched {took:.2f}s after the changes that followed the restart")
        wait_for(
            lambda: ready_condition(pediacluster_status(host, "fault-1")).get("reason") == "Healthy",
            "Healthy",
        )
    finally:
        synchro.stop()
        writer.stop()


def test_changes_while_synchro_is_stopped(
    host: Cluster, members: dict[str, Cluster], sqlite_url: str
) -> None:
    settings = make_settings(host, sqlite_url, f"memory://{unique('q')}")
    writer = start_writer(settings)
    synchro = start_synchro(settings, unique("w"))
    ns = unique("offline")
    try:
        for member in members.values():
            member.apply(configmaps_yaml(ns, range(40)))
        wait_store_matches(sqlite_url, lambda: expected_of(members), members)
        synchro.stop()
        for member in members.values():
            member.kubectl("-n", ns, "delete", "configmap", *[f"cm-{i}" for i in range(0, 40, 2)])
            member.kubectl("-n", ns, "label", "configmap", "cm-1", "changed=offline")
            member.apply(configmaps_yaml(ns, range(5), prefix="new"))
        time.sleep(1)
        synchro = start_synchro(settings, unique("w"))
        took = wait_store_matches(sqlite_url, lambda: expected_of(members), members, timeout=60)
        print(f"store matched {took:.2f}s after the synchro restarted")
    finally:
        synchro.stop()
        writer.stop()


def test_killed_worker_clusters_move(
    host: Cluster, members: dict[str, Cluster], postgres_url: str, redis_url: str, tmp_path: Path
) -> None:
    settings = make_settings(host, postgres_url, redis_url)
    writer = start_writer(settings)
    procs = [synchro_process(settings, f"kill-{i}", tmp_path) for i in range(2)]
    try:
        wait_store_matches(postgres_url, lambda: expected_of(members), members, timeout=60)

        def holders() -> dict[str, str]:
            leases = host.get_json("leases", "-n", "clusterpedia-system")["items"]
            return {
                item["metadata"]["name"]: item["spec"].get("holderIdentity", "")
                for item in leases
                if item["metadata"]["name"] in ("pediacluster-fault-1", "pediacluster-fault-2")
            }

        # Both workers are live, so each ends up holding one cluster (fair share).
        spread = wait_for(
            lambda: (h := holders()) and len(set(h.values()) - {""}) == 2 and h, "one cluster each"
        )
        victim_cluster = "fault-1"
        victim = next(p for p in procs if p.name == f"synchro-{spread['pediacluster-' + victim_cluster]}")
        assert victim.popen is not None
        victim.popen.kill()
        victim.popen.wait()
        killed_at = time.monotonic()
        ns = unique("takeover")
        members[victim_cluster].apply(configmaps_yaml(ns, range(30)))
        survivor = next(p for p in procs if p is not victim).name.removeprefix("synchro-")
        wait_for(lambda: holders().get(f"pediacluster-{victim_cluster}") == survivor, "takeover", timeout=30)
        wait_store_matches(postgres_url, lambda: expected_of(members), members, timeout=30)
        took = time.monotonic() - killed_at
        print(f"after kill -9: {victim_cluster} taken over and store equal to the clusters in {took:.1f}s")
        # lease expiry + takeover + relist + write; the waits above bound each step on their own, this
        # fails a takeover that only happened because something else (a restart) freed the Lease
        assert took < settings.synchro.lease_duration_seconds + 30
        # A graceful stop (SIGTERM) hands the Leases back at once instead of letting them expire.
        survivor_proc = next(p for p in procs if p is not victim)
        assert survivor_proc.running()
        survivor_proc.stop(timeout=30)  # its shutdown may first drain the queue for a few seconds
        assert survivor_proc.exit_code() == 0, survivor_proc.log_tail()
        assert set(holders().values()) == {""}
    finally:
        for proc in procs:
            proc.stop()
        writer.stop()
