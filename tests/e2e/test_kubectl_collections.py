"""Custom collections and the lagging freshness warning, end to end: a real host and member, the
real synchro and writer filling the store, the API tier serving it, and kubectl 1.32.

* A CollectionResourceDefinition applied in the host with kubectl becomes a collection:
  ``kubectl get collectionresources`` lists it, ``kubectl get collectionresources NAME`` lists its
  objects across clusters, and once deleted it is gone. The API tier reads the host as a user bound
  to nothing but the ClusterRole of examples/clusterpedia_apiserver_rbac.yaml.
* The writer stopped while the member changes: the events wait in the queue, the synchro reports the
  lag in the PediaCluster status and kubectl prints a ``Warning`` naming the lagging cluster; the
  writer restarted, it catches up and the warning goes.

Two PediaClusters point at the one member (two clusters for the price of one kube-apiserver).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from common.settings import Settings
from harness.cluster import Cluster
from harness.paths import kubectl_binary
from tests.e2e.kubectl_support import ApiTier, kubectl_run
from tests.e2e.sync_support import (
    ROOT,
    Tier,
    install_crd,
    make_settings,
    pediacluster,
    start_synchro,
    start_writer,
    wait_for,
)

pytestmark = pytest.mark.e2e

KUBECTL = "1.32"
CRD = ROOT / "charts/clusterpedia/crds/policy.clusterpedia.io_collectionresourcedefinitions.yaml"
API_USER = "clusterpedia-apiserver-e2e"
LAG_SECONDS = 3


@dataclass
class Setup:
    host: Cluster
    member: Cluster
    kubeconfig: Path
    server: str
    settings: Settings
    writer: Tier


@pytest.fixture(scope="module")
def setup(host_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    workdir = tmp_path_factory.mktemp("collections")
    member = Cluster("member", "current", workdir=tmp_path_factory.mktemp("member"))
    member.start()
    host = host_cluster
    install_crd(host)
    host.kubectl("apply", "-f", str(CRD))
    host.wait_crd("collectionresourcedefinitions.policy.clusterpedia.io")
    host.kubectl("create", "namespace", "clusterpedia-system", check=False)
    host.kubectl("apply", "-f", str(ROOT / "examples/clusterpedia_apiserver_rbac.yaml"))
    host.kubectl(
        "create", "clusterrolebinding", API_USER, "--clusterrole=clusterpedia-apiserver", f"--user={API_USER}"
    )
    member.kubectl("create", "configmap", "shared", "-n", "default", "--from-literal=a=b")
    for name in ("cluster-1", "cluster-2"):
        host.apply(pediacluster(name, member, {"": ["configmaps"]}))
    store_url = f"sqlite:///{workdir / 'store.db'}"
    settings = make_settings(host, store_url, "memory://collections-e2e")
    writer = start_writer(settings)
    synchro = start_synchro(settings)
    api = ApiTier(
        workdir,
        store_url,
        extra_args=[f"--kubeconfig={host.user_kubeconfig(API_USER)}", f"--stale-lag-seconds={LAG_SECONDS}"],
    )
    setup = Setup(host, member, Path(), api.url, settings, writer)
    try:
        api.start()
        setup.kubeconfig = api.kubeconfig(workdir / "kubeconfig", ["cluster-1", "cluster-2"])
        yield setup
    finally:
        api.stop()
        synchro.stop()
        setup.writer.stop()
        member.stop()


def kubectl(setup: Setup, *args: str, check: bool = True) -> tuple[str, str, int]:
    """kubectl straight at the API tier's root (where collectionresources is discovered)."""
    out = kubectl_run(
        kubectl_binary(KUBECTL), setup.kubeconfig, f"--server={setup.server}", *args, check=check
    )
    return out.stdout, out.stderr, out.returncode


def rows(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines()[1:] if line.strip()]


def test_a_definition_in_the_host_is_a_collection(setup: Setup) -> None:
    host = setup.host
    host.kubectl("apply", "-f", str(ROOT / "examples/collectionresourcedefinition.yaml"))
    definition = {
        "apiVersion": "policy.clusterpedia.io/v1alpha1",
        "kind": "CollectionResourceDefinition",
        "metadata": {"name": "config"},
        "spec": {"resources": [{"group": "", "resources": ["configmaps"]}]},
    }
    host.apply(json.dumps(definition))
    bad = {
        **definition,
        "metadata": {"name": "bad"},
        "spec": {"resources": [{"group": "A;B", "resources": ["x"]}]},
    }
    refused = host.kubectl("apply", "-f", "-", input=json.dumps(bad), check=False)
    assert refused.returncode != 0 and "spec.resources[0].group" in refused.stderr  # the CRD's schema

    def listed() -> list[list[str]] | None:
        got = rows(kubectl(setup, "get", "collectionresources")[0])
        return got if [r[0] for r in got] == ["config", "networking", "workloads"] else None

    got = wait_for(listed, "kubectl get collectionresources lists the definitions", timeout=60)
    assert got[0] == ["config", "configmaps"]
    assert got[1] == ["networking", "services,*.networking.k8s.io"]

    def items() -> list[list[str]] | None:
        got = [
            r for r in rows(kubectl(setup, "get", "collectionresources", "config")[0]) if r[-2] == "shared"
        ]
        return got if len(got) == 2 else None

    shared = wait_for(items, "the collection lists the configmap of both clusters", timeout=60)
    assert [r[:4] for r in shared] == [
        ["cluster-1", "v1", "ConfigMap", "default"],
        ["cluster-2", "v1", "ConfigMap", "default"],
    ]
    raw = json.loads(
        kubectl(
            setup,
            "get",
            "--raw",
            "/apis/pedia.clusterpedia.io/v1alpha1/collectionresources/config?clusters=cluster-2&names=shared",
        )[0]
    )
    assert [
        (i["metadata"]["annotations"]["shadow.clusterpedia.io/cluster-name"], i["metadata"]["name"])
        for i in raw["items"]
    ] == [("cluster-2", "shared")]

    host.kubectl("delete", "collectionresourcedefinition", "config")
    wait_for(
        lambda: (
            [r[0] for r in rows(kubectl(setup, "get", "collectionresources")[0])]
            == ["networking", "workloads"]
        ),
        "the deleted definition gone",
        timeout=60,
    )
    _, err, code = kubectl(setup, "get", "collectionresources", "config", check=False)
    assert code != 0 and 'collectionresources.pedia.clusterpedia.io "config" not found' in err


def lag_warnings(setup: Setup) -> list[str]:
    out = kubectl_run(
        kubectl_binary(KUBECTL), setup.kubeconfig, "--cluster", "clusterpedia", "get", "configmaps", "-A"
    )
    return [line for line in out.stderr.splitlines() if line.startswith("Warning:") and "lagging" in line]


def test_a_cluster_whose_events_wait_for_a_writer_is_named_until_it_catches_up(setup: Setup) -> None:
    wait_for(
        lambda: rows(
            kubectl_run(
                kubectl_binary(KUBECTL),
                setup.kubeconfig,
                "--cluster",
                "cluster-1",
                "get",
                "configmaps",
                "-n",
                "default",
            ).stdout
        ),
        "cluster-1 synced",
        timeout=60,
    )
    assert lag_warnings(setup) == []
    setup.writer.stop()
    setup.member.kubectl("create", "configmap", "while-stopped", "-n", "default", "--from-literal=a=b")

    def warned() -> list[str] | None:
        got = lag_warnings(setup)
        return got if len(got) == 2 else None

    cluster_1, cluster_2 = wait_for(warned, "both clusters named as lagging", timeout=90)
    assert cluster_1.startswith("Warning: cluster-1 is lagging: its events since ")
    assert cluster_1.endswith("s behind); its rows may be stale") and cluster_2.startswith(
        "Warning: cluster-2 "
    )
    setup.writer = start_writer(setup.settings)
    wait_for(lambda: lag_warnings(setup) == [], "the lagging warnings gone", timeout=90)
    names = rows(
        kubectl_run(
            kubectl_binary(KUBECTL),
            setup.kubeconfig,
            "--cluster",
            "cluster-1",
            "get",
            "configmaps",
            "-n",
            "default",
        ).stdout
    )
    assert ["cluster-1", "while-stopped"] in [r[:2] for r in names]
