"""What kubectl learns beyond a flat list, end to end: a real member, the real synchro and writer
filling the store, the API tier serving it, and kubectl 1.32.

* ``kubectl --cluster cluster-1 describe configmap x`` through Clusterpedia shows the same Events
  section as describe against the member (events are synced like any resource; kubectl finds them
  with a field selector on ``involvedObject.*``).
* A PediaCluster pointing at an unreachable member makes every list and watch whose scope includes
  it print a ``Warning`` naming it on stderr, and the warning goes once that PediaCluster is removed.
* Relationship queries (a pod's owners and top-level owner, a Service's pods, a Pod's node, an
  object's events) through kubectl give what walking the member's own objects with the Kubernetes
  Python client gives.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness.cluster import Cluster, free_port
from harness.paths import kubectl_binary
from tests.e2e.kubectl_support import ApiTier, kubectl_run
from tests.e2e.sync_support import (
    install_crd,
    make_settings,
    pediacluster,
    start_synchro,
    start_writer,
    wait_for,
)

pytestmark = pytest.mark.e2e

KUBECTL = "1.32"


@dataclass
class Setup:
    host: Cluster
    member: Cluster
    kubeconfig: Path


@pytest.fixture(scope="module")
def setup(host_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    workdir = tmp_path_factory.mktemp("insight")
    # a controller manager: Deployments make ReplicaSets and Pods (relationship queries)
    member = Cluster(
        "cluster-1", "current", controller_manager=True, workdir=tmp_path_factory.mktemp("cluster-1")
    )
    member.start()
    store_url = f"sqlite:///{workdir / 'store.db'}"
    install_crd(host_cluster)
    resources = {
        "": ["configmaps", "events", "pods", "services", "nodes"],
        "apps": ["deployments", "replicasets"],
    }
    host_cluster.apply(pediacluster("cluster-1", member, resources))
    settings = make_settings(host_cluster, store_url, "memory://")
    writer = start_writer(settings)
    synchro = start_synchro(settings)
    api = ApiTier(workdir, store_url, extra_args=[f"--kubeconfig={host_cluster.kubeconfig}"])
    try:
        api.start()
        yield Setup(host_cluster, member, api.kubeconfig(workdir / "kubeconfig", ["cluster-1"]))
    finally:
        api.stop()
        synchro.stop()
        writer.stop()
        member.stop()


def event(name: str, about: dict[str, str], reason: str, message: str, *, kind: str, count: int) -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": "default"},
            "involvedObject": about,
            "reason": reason,
            "message": message,
            "type": kind,
            "count": count,
            "firstTimestamp": "2026-01-01T00:00:00Z",
            "lastTimestamp": "2026-01-01T00:05:00Z",
            "source": {"component": "insight-test"},
        }
    )


def events_block(describe: str) -> list[list[str]]:
    """The rows of describe's Events section, without the AGE column (time-dependent)."""
    lines = describe.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Events:"))
    rows = [re.split(r"\s{2,}", line.strip()) for line in lines[start + 1 :] if line.strip()]
    rows = [r for r in rows if not all(set(cell) <= {"-"} for cell in r)]  # the ---- underline
    return [r[:2] + r[3:] for r in rows]


def test_describe_shows_the_members_events(setup: Setup) -> None:
    member = setup.member
    member.kubectl("create", "configmap", "x", "-n", "default", "--from-literal=a=b")
    uid = member.get_json("configmap", "x", "-n", "default")["metadata"]["uid"]
    about = {"kind": "ConfigMap", "namespace": "default", "name": "x", "uid": uid, "apiVersion": "v1"}
    member.apply(event("x.1", about, "Checked", "looks fine", kind="Normal", count=1))
    member.apply(event("x.2", about, "Drifted", "value a changed twice", kind="Warning", count=3))
    other = {**about, "name": "y", "uid": "not-x"}  # another object's event: not x's
    member.apply(event("y.1", other, "Other", "not about x", kind="Normal", count=1))
    expected = events_block(
        member.kubectl("describe", "configmap", "x", "-n", "default", version=KUBECTL).stdout
    )
    assert [r[:2] for r in expected] == [["Type", "Reason"], ["Normal", "Checked"], ["Warning", "Drifted"]]

    def through_clusterpedia() -> list[list[str]] | None:
        out = kubectl_run(
            kubectl_binary(KUBECTL),
            setup.kubeconfig,
            "--cluster",
            "cluster-1",
            "describe",
            "configmap",
            "x",
            "-n",
            "default",
            check=False,
        )
        if out.returncode != 0:
            return None
        got = events_block(out.stdout)
        return got if got == expected else None

    wait_for(through_clusterpedia, "describe through Clusterpedia shows the member's events", timeout=60)


def warnings_of(setup: Setup, *args: str) -> list[str]:
    out = kubectl_run(kubectl_binary(KUBECTL), setup.kubeconfig, *args, "get", "configmaps", "-A")
    return [line for line in out.stderr.splitlines() if line.startswith("Warning:")]


def test_an_unreachable_cluster_is_named_in_a_warning(setup: Setup) -> None:
    closed = free_port()  # nothing listens there
    unreachable = json.loads(pediacluster("cluster-9", setup.member, {"": ["configmaps"]}))
    unreachable["spec"]["apiserverURL"] = f"https://127.0.0.1:{closed}"
    setup.host.apply(json.dumps(unreachable))

    def warned() -> str | None:
        lines = [w for w in warnings_of(setup, "--cluster", "clusterpedia") if "cluster-9" in w]
        return lines[0] if lines and "Unhealthy" in lines[0] else None

    line = wait_for(warned, "a Warning naming cluster-9", timeout=60)
    assert line.startswith("Warning: cluster-9 is not synced: Unhealthy since ")
    assert f"127.0.0.1:{closed}" in line and line.endswith("its rows may be stale")
    assert warnings_of(setup, "--cluster", "cluster-1") == []  # out of this request's scope
    watch = kubectl_run(
        kubectl_binary(KUBECTL),
        setup.kubeconfig,
        "--cluster",
        "clusterpedia",
        "get",
        "--raw",
        "/apis/clusterpedia.io/v1beta1/resources/api/v1/configmaps?watch=1&timeoutSeconds=1",
    )
    assert [w for w in watch.stderr.splitlines() if w.startswith("Warning: cluster-9 ")], watch.stderr
    setup.host.kubectl("delete", "pediacluster", "cluster-9")
    wait_for(
        lambda: warnings_of(setup, "--cluster", "clusterpedia") == [],
        "the warning gone with the PediaCluster",
        timeout=60,
    )


# ------------------------------------------------------------------------ relationship queries

RELATED = """
apiVersion: v1
kind: Node
metadata: {name: node-1}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: c, image: example.invalid/web}]}
---
apiVersion: v1
kind: Pod
metadata: {name: pinned, namespace: default, labels: {app: web, pinned: "yes"}}
spec: {nodeName: node-1, containers: [{name: c, image: example.invalid/web}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec: {selector: {app: web}, ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: external, namespace: default}
spec: {ports: [{port: 80}]}
"""


def _walk_member(member: Cluster) -> dict[str, list[str]]:
    """The answers, from the member's own objects (kubernetes-python): for each pod of the
    Deployment its controller chain; the Service's pods; the pinned pod's node; the ReplicaSet's
    events."""
    from kubernetes import client

    api = member.api_client()
    core: Any = client.CoreV1Api(api)
    apps: Any = client.AppsV1Api(api)
    readers = {"ReplicaSet": apps.read_namespaced_replica_set, "Deployment": apps.read_namespaced_deployment}
    out: dict[str, list[str]] = {}
    pods = core.list_namespaced_pod("default").items
    for pod in pods:
        chain: list[str] = []
        obj = pod
        while ref := next((r for r in obj.metadata.owner_references or [] if r.controller), None):
            obj = readers[ref.kind](ref.name, "default")
            assert obj.metadata.uid == ref.uid
            chain.append(f"{ref.kind}/{ref.name}")
        out[f"owners:{pod.metadata.name}"] = sorted(chain)
        out[f"top:{pod.metadata.name}"] = chain[-1:]
        out[f"uid:{pod.metadata.name}"] = [pod.metadata.uid]
    for svc in core.list_namespaced_service("default").items:
        selector = svc.spec.selector
        selected = (
            core.list_namespaced_pod(
                "default", label_selector=",".join(f"{k}={v}" for k, v in selector.items())
            ).items
            if selector
            else []
        )
        out[f"selected:{svc.metadata.name}"] = sorted(f"Pod/{p.metadata.name}" for p in selected)
    pinned = core.read_namespaced_pod("pinned", "default")
    out["node:pinned"] = [f"Node/{core.read_node(pinned.spec.node_name).metadata.name}"]
    rs = apps.list_namespaced_replica_set("default").items
    out["replicaset"] = [f"ReplicaSet/{r.metadata.name}" for r in rs]
    for r in rs:
        events = core.list_namespaced_event("default", field_selector=f"involvedObject.uid={r.metadata.uid}")
        out[f"events:{r.metadata.name}"] = sorted(f"Event/{e.metadata.name}" for e in events.items)
    api.close()
    return out


def _through_clusterpedia(
    setup: Setup, kinds: str, selector: str, *, namespace: str = "default"
) -> list[str]:
    args = ["--cluster", "cluster-1", "get", kinds, "-l", selector, "-o", "json"]
    out = kubectl_run(
        kubectl_binary(KUBECTL), setup.kubeconfig, *args, *(["-n", namespace] if namespace else [])
    )
    return sorted(f"{i['kind']}/{i['metadata']['name']}" for i in json.loads(out.stdout)["items"])


def test_relations_answer_as_walking_the_members_objects(setup: Setup) -> None:
    setup.member.apply(RELATED)
    r = "search.clusterpedia.io/relation"

    def walked() -> dict[str, list[str]] | None:
        truth = _walk_member(setup.member)
        # the Deployment's two pods exist and the ReplicaSet recorded their creation
        deployed = [k for k, v in truth.items() if k.startswith("owners:") and v]
        events = [v for k, v in truth.items() if k.startswith("events:")]
        return truth if len(deployed) == 2 and events and all(events) else None

    truth = wait_for(walked, "the Deployment's ReplicaSet and pods, and its events", timeout=60)
    deployed = sorted(k.partition(":")[2] for k, v in truth.items() if k.startswith("owners:") and v)
    (rs_name,) = (name.partition("/")[2] for name in truth["replicaset"])

    def answers() -> dict[str, list[str]]:
        got: dict[str, list[str]] = {}
        for pod in [*deployed, "pinned"]:
            of = f"search.clusterpedia.io/of-name={pod},search.clusterpedia.io/of-gr=pods"
            got[f"owners:{pod}"] = _through_clusterpedia(setup, "replicasets,deployments", f"{r}=owners,{of}")
            by_uid = f"search.clusterpedia.io/of-uid={truth[f'uid:{pod}'][0]}"
            got[f"top:{pod}"] = _through_clusterpedia(
                setup, "replicasets,deployments", f"{r}=top-owner,{by_uid}"
            )
        for svc in ("web", "external"):
            got[f"selected:{svc}"] = _through_clusterpedia(
                setup, "pods", f"{r}=selected,search.clusterpedia.io/of-name={svc}"
            )
        node = f"{r}=node,search.clusterpedia.io/of-name=pinned,search.clusterpedia.io/of-namespace=default"
        got["node:pinned"] = _through_clusterpedia(setup, "nodes", node, namespace="")
        of_rs = f"search.clusterpedia.io/of-name={rs_name},search.clusterpedia.io/of-gr=replicasets.apps"
        got[f"events:{rs_name}"] = _through_clusterpedia(setup, "events", f"{r}=events,{of_rs}")
        return got

    def agree() -> bool:
        got = answers()
        want = {k: v for k, v in _walk_member(setup.member).items() if k in got}
        assert got == want, (got, want)
        return True

    wait_for(agree, "relationship queries through Clusterpedia agree with the member", timeout=60)
    assert truth["selected:external"] == [] and len(truth["selected:web"]) == 3
    assert all(len(truth[f"owners:{p}"]) == 2 for p in deployed) and truth["node:pinned"] == ["Node/node-1"]
