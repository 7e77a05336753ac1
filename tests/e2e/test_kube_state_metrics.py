"""Multi-cluster kube-state metrics end to end: two real members (with their controller managers),
the real synchro and writer filling a SQLite store, and ``python -m cli kube-state-metrics`` serving
it over HTTP with a bearer token. The scraped series equal what the members' own objects say (an
oracle computed here from ``kubectl get -o json`` against each member), and follow a change made
in a member."""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from prometheus_client.parser import text_string_to_metric_families

from harness.cluster import Cluster, free_port
from harness.processes import Process
from tests.e2e.sync_support import (
    install_crd,
    make_settings,
    pediacluster,
    start_synchro,
    start_writer,
    wait_for,
)

pytestmark = pytest.mark.e2e

TOKEN = "e2e-token-3f9a"
NS = "ksm-e2e"
GROUPS = {"": ["pods", "nodes", "namespaces"], "apps": ["deployments", "statefulsets", "daemonsets"]}

WORKLOADS = f"""
apiVersion: v1
kind: Namespace
metadata: {{name: {NS}}}
---
apiVersion: v1
kind: Node
metadata: {{name: node-a, labels: {{kubernetes.io/hostname: node-a}}}}
spec: {{podCIDR: 10.244.1.0/24, providerID: "e2e://node-a"}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {NS}}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec: {{containers: [{{name: app, image: nginx}}]}}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: db, namespace: {NS}}}
spec:
  replicas: 1
  serviceName: db
  selector: {{matchLabels: {{app: db}}}}
  template:
    metadata: {{labels: {{app: db}}}}
    spec: {{containers: [{{name: db, image: postgres}}]}}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {{name: agent, namespace: {NS}}}
spec:
  selector: {{matchLabels: {{app: agent}}}}
  template:
    metadata: {{labels: {{app: agent}}}}
    spec: {{containers: [{{name: agent, image: busybox}}]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: solo, namespace: {NS}}}
spec: {{nodeName: node-a, containers: [{{name: app, image: nginx}}, {{name: sidecar, image: envoy}}]}}
"""


def node_status(cpu: str) -> str:
    return json.dumps(
        {
            "status": {
                "capacity": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
                "allocatable": {"cpu": cpu, "memory": "7Gi", "pods": "110"},
                "conditions": [
                    {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "e2e"},
                    {"type": "DiskPressure", "status": "False", "reason": "KubeletHasNoDiskPressure"},
                ],
                "addresses": [{"type": "InternalIP", "address": "192.168.1.10"}],
                "nodeInfo": {
                    "kernelVersion": "6.1.0",
                    "osImage": "e2e",
                    "containerRuntimeVersion": "containerd://1.7.0",
                    "kubeletVersion": "v1.32.0",
                    "kubeProxyVersion": "v1.32.0",
                    "machineID": "m",
                    "systemUUID": "u",
                    "bootID": "b",
                    "operatingSystem": "linux",
                    "architecture": "amd64",
                },
            }
        }
    )


def pod_status(phase: str, restarts: int) -> str:
    return json.dumps(
        {
            "status": {
                "phase": phase,
                "hostIP": "192.168.1.10",
                "podIP": "10.244.1.7",
                "conditions": [{"type": "Ready", "status": "True" if phase == "Running" else "False"}],
                "containerStatuses": [
                    {"name": "app", "restartCount": restarts, "ready": True, "image": "nginx", "imageID": ""},
                    {"name": "sidecar", "restartCount": 0, "ready": True, "image": "envoy", "imageID": ""},
                ],
            }
        }
    )


# ---- the oracle: the series the members' own objects call for ------------------------------------

Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _key(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return name, tuple(sorted(labels.items()))


def expected_series(cluster: str, member: Cluster) -> Series:
    out: Series = {}
    for p in member.get_json("pods", "-A")["items"]:
        m, st = p["metadata"], p.get("status", {})
        base = {"cluster": cluster, "namespace": m["namespace"], "pod": m["name"], "uid": m["uid"]}
        if st.get("phase"):
            for phase in ("Pending", "Succeeded", "Failed", "Running", "Unknown"):
                out[_key("kube_pod_status_phase", **base, phase=phase)] = float(phase == st["phase"])
        for cs in st.get("containerStatuses", []):
            out[_key("kube_pod_container_status_restarts_total", **base, container=cs["name"])] = cs[
                "restartCount"
            ]
    for d in member.get_json("deployments", "-A")["items"]:
        base = {
            "cluster": cluster,
            "namespace": d["metadata"]["namespace"],
            "deployment": d["metadata"]["name"],
        }
        st = d.get("status", {})
        out[_key("kube_deployment_spec_replicas", **base)] = d["spec"]["replicas"]
        out[_key("kube_deployment_status_replicas", **base)] = st.get("replicas", 0)
        out[_key("kube_deployment_status_replicas_available", **base)] = st.get("availableReplicas", 0)
        out[_key("kube_deployment_status_replicas_unavailable", **base)] = st.get("unavailableReplicas", 0)
        out[_key("kube_deployment_status_replicas_updated", **base)] = st.get("updatedReplicas", 0)
    for s in member.get_json("statefulsets", "-A")["items"]:
        base = {
            "cluster": cluster,
            "namespace": s["metadata"]["namespace"],
            "statefulset": s["metadata"]["name"],
        }
        out[_key("kube_statefulset_replicas", **base)] = s["spec"]["replicas"]
        out[_key("kube_statefulset_status_replicas", **base)] = s.get("status", {}).get("replicas", 0)
    for d in member.get_json("daemonsets", "-A")["items"]:
        base = {
            "cluster": cluster,
            "namespace": d["metadata"]["namespace"],
            "daemonset": d["metadata"]["name"],
        }
        st = d.get("status", {})
        out[_key("kube_daemonset_status_desired_number_scheduled", **base)] = st.get(
            "desiredNumberScheduled", 0
        )
        out[_key("kube_daemonset_status_current_number_scheduled", **base)] = st.get(
            "currentNumberScheduled", 0
        )
    for n in member.get_json("nodes")["items"]:
        base = {"cluster": cluster, "node": n["metadata"]["name"]}
        for c in n.get("status", {}).get("conditions", []):
            for label, status in (("true", "True"), ("false", "False"), ("unknown", "Unknown")):
                out[_key("kube_node_status_condition", **base, condition=c["type"], status=label)] = float(
                    c["status"] == status
                )
    for ns in member.get_json("namespaces")["items"]:
        base = {"cluster": cluster, "namespace": ns["metadata"]["name"]}
        for phase in ("Active", "Terminating"):
            out[_key("kube_namespace_status_phase", **base, phase=phase)] = float(
                phase == ns["status"]["phase"]
            )
    return out


ORACLE_FAMILIES = {
    "kube_pod_status_phase",
    "kube_pod_container_status_restarts_total",
    "kube_deployment_spec_replicas",
    "kube_deployment_status_replicas",
    "kube_deployment_status_replicas_available",
    "kube_deployment_status_replicas_unavailable",
    "kube_deployment_status_replicas_updated",
    "kube_statefulset_replicas",
    "kube_statefulset_status_replicas",
    "kube_daemonset_status_desired_number_scheduled",
    "kube_daemonset_status_current_number_scheduled",
    "kube_node_status_condition",
    "kube_namespace_status_phase",
}


# ---- the tier -------------------------------------------------------------------------------------


@dataclass
class Tier:
    url: str
    process: Process

    def scrape(self, token: str | None = TOKEN) -> tuple[int, str]:
        req = urllib.request.Request(self.url + "/metrics")
        if token is not None:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()

    def series(self) -> Series:
        status, body = self.scrape()
        assert status == 200, body
        out: Series = {}
        for family in text_string_to_metric_families(body):
            for s in family.samples:
                if s.name in ORACLE_FAMILIES:
                    out[_key(s.name, **s.labels)] = s.value
        return out


@dataclass
class Setup:
    members: dict[str, Cluster]
    tier: Tier


@pytest.fixture(scope="module")
def setup(
    host_cluster: Cluster,
    two_member_clusters: tuple[Cluster, Cluster],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Setup]:
    workdir = tmp_path_factory.mktemp("ksm")
    members = {"ksm-1": two_member_clusters[0], "ksm-2": two_member_clusters[1]}
    for member in members.values():
        member.apply(WORKLOADS)
        member.kubectl(
            "patch", "node", "node-a", "--subresource=status", "--type=merge", "-p", node_status("4")
        )
        member.kubectl(
            "-n",
            NS,
            "patch",
            "pod",
            "solo",
            "--subresource=status",
            "--type=merge",
            "-p",
            pod_status("Running", 2),
        )
    store_url = f"sqlite:///{workdir / 'store.db'}"
    install_crd(host_cluster)
    settings = make_settings(host_cluster, store_url, "memory://")
    writer = start_writer(settings)
    synchro = start_synchro(settings)
    token_file = workdir / "token"
    token_file.write_text(TOKEN + "\n")
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "cli",
        "kube-state-metrics",
        f"--storage={store_url}",
        "--bind-host=127.0.0.1",
        f"--port={port}",
        "--refresh-interval-seconds=0.3",
        f"--bearer-token-file={token_file}",
        "--log-format=text",
    ]
    process = Process("clusterpedia-kube-state-metrics", argv, workdir / "kube-state-metrics.log")
    try:
        for name, member in members.items():
            host_cluster.apply(pediacluster(name, member, GROUPS))
        process.start()
        tier = Tier(f"http://127.0.0.1:{port}", process)
        wait_for(lambda: _ready(tier), "the kube-state-metrics tier to finish a collection", 60)
        yield Setup(members, tier)
    finally:
        process.stop()
        for name in members:
            host_cluster.kubectl("delete", "pediacluster", name, "--ignore-not-found", "--wait=false")
        synchro.stop()
        writer.stop()
        for member in members.values():
            member.kubectl("delete", "namespace", NS, "--wait=false")
            member.kubectl("delete", "node", "node-a", "--wait=false")


def _ready(tier: Tier) -> bool:
    if not tier.process.running():
        raise AssertionError(f"the tier exited:\n{tier.process.log_tail()}")
    try:
        with urllib.request.urlopen(tier.url + "/readyz", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def _matches(setup: Setup) -> Series | None:
    """The scraped series when they equal the members' (both read now), else None."""
    expected: Series = {}
    for name, member in setup.members.items():
        expected.update(expected_series(name, member))
    got = setup.tier.series()
    return got if got == expected else None


def test_scrape_equals_the_members(setup: Setup) -> None:
    got = wait_for(lambda: _matches(setup), "scraped series equal to the members' objects", 90)
    # what the members hold reached the series: the pod whose status was set, the controllers' work
    for cluster in setup.members:
        solo = [k for k in got if k[0] == "kube_pod_status_phase" and ("pod", "solo") in k[1]]
        assert {dict(k[1])["phase"]: got[k] for k in solo if ("cluster", cluster) in k[1]}["Running"] == 1
        replicas = _key("kube_deployment_spec_replicas", cluster=cluster, namespace=NS, deployment="web")
        assert got[replicas] == 2
        ready = _key(
            "kube_node_status_condition", cluster=cluster, node="node-a", condition="Ready", status="true"
        )
        assert ready in got
    # no token, a wrong one: 401 and nothing of the clusters
    for token in (None, "wrong"):
        status, body = setup.tier.scrape(token)
        assert status == 401 and "kube_pod" not in body and "ksm-1" not in body


def test_a_change_in_a_member_reaches_the_scrape(setup: Setup) -> None:
    member = setup.members["ksm-1"]
    member.kubectl(
        "-n",
        NS,
        "patch",
        "pod",
        "solo",
        "--subresource=status",
        "--type=merge",
        "-p",
        pod_status("Failed", 7),
    )
    member.kubectl("-n", NS, "scale", "deployment", "web", "--replicas=3")
    start = time.monotonic()

    def changed() -> Series | None:
        got = _matches(setup)
        if got is None:
            return None
        base = {"cluster": "ksm-1", "namespace": NS, "pod": "solo"}
        phase = [k for k in got if k[0] == "kube_pod_status_phase" and set(base.items()) <= set(k[1])]
        failed = [got[k] for k in phase if ("phase", "Failed") in k[1]]
        return got if failed == [1.0] else None

    got = wait_for(changed, "the member's change in the scraped series", 60)
    print(f"member change visible in a scrape {time.monotonic() - start:.1f}s later")
    restarts = [
        v
        for k, v in got.items()
        if k[0] == "kube_pod_container_status_restarts_total" and ("pod", "solo") in k[1]
    ]
    assert sorted(restarts) == [0, 0, 2, 7]  # app and sidecar in both clusters
    assert got[_key("kube_deployment_spec_replicas", cluster="ksm-1", namespace=NS, deployment="web")] == 3
