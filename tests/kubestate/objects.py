"""Objects for the kube-state tests, shaped as members serve them, and their store events."""

from __future__ import annotations

import json
from typing import Any

from common.events import ResourceType, Upsert

KINDS = {
    ("", "pods"): "Pod",
    ("apps", "deployments"): "Deployment",
    ("apps", "statefulsets"): "StatefulSet",
    ("apps", "daemonsets"): "DaemonSet",
    ("", "nodes"): "Node",
    ("", "namespaces"): "Namespace",
}


def upsert(cluster: str, group: str, resource: str, obj: dict[str, Any], rv: int = 1) -> Upsert:
    meta = obj["metadata"]
    return Upsert(
        cluster=cluster,
        group=group,
        version="v1",
        resource=resource,
        kind=KINDS[(group, resource)],
        namespace=meta.get("namespace", ""),
        name=meta["name"],
        uid=meta.get("uid", ""),
        resource_version=rv,
        epoch=1,
        owner_uid="",
        created_at="2024-01-01T00:00:00Z",
        object=json.dumps(obj).encode(),
    )


def resource_types(cluster: str) -> list[ResourceType]:
    return [
        ResourceType(cluster, g, "v1", r, k, r not in ("nodes", "namespaces"), [], ["get", "list"], "v1", b"")
        for (g, r), k in KINDS.items()
    ]


def pod(ns: str, name: str, **status: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": ns,
            "uid": f"uid-{ns}-{name}",
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": "web-1",
                    "uid": "x",
                    "controller": True,
                }
            ],
        },
        "spec": {"nodeName": "node-a", "containers": [{"name": "app", "image": "nginx"}]},
        "status": status,
    }


def fleet() -> dict[str, list[tuple[str, str, dict[str, Any]]]]:
    """Per cluster: (group, resource, object) of every kind the tier serves."""
    out: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for c, cluster in enumerate(("east", "west")):
        objs: list[tuple[str, str, dict[str, Any]]] = [
            (
                "",
                "pods",
                pod(
                    "shop",
                    "web-1-a",
                    phase="Running",
                    hostIP="10.0.0.1",
                    podIP="10.1.0.5",
                    conditions=[
                        {"type": "Ready", "status": "True"},
                        {"type": "PodScheduled", "status": "True"},
                    ],
                    containerStatuses=[
                        {"name": "app", "restartCount": 3 + c, "ready": True},
                        {"name": "sidecar", "restartCount": 0, "ready": True},
                    ],
                ),
            ),
            ("", "pods", pod("shop", "web-1-b", phase="Pending")),
            (
                "apps",
                "deployments",
                {
                    "metadata": {"name": "web", "namespace": "shop"},
                    "spec": {"replicas": 3},
                    "status": {
                        "replicas": 3,
                        "availableReplicas": 2 + c,
                        "unavailableReplicas": 1 - c,
                        "updatedReplicas": 3,
                        "readyReplicas": 2 + c,
                    },
                },
            ),
            (
                "apps",
                "statefulsets",
                {
                    "metadata": {"name": "db", "namespace": "shop"},
                    "spec": {"replicas": 2},
                    "status": {"replicas": 2, "readyReplicas": 1, "currentReplicas": 2, "updatedReplicas": 2},
                },
            ),
            (
                "apps",
                "daemonsets",
                {
                    "metadata": {"name": "agent", "namespace": "kube-system"},
                    "status": {
                        "desiredNumberScheduled": 2,
                        "currentNumberScheduled": 2,
                        "numberReady": 1,
                        "numberAvailable": 1,
                        "numberUnavailable": 1,
                        "updatedNumberScheduled": 2,
                    },
                },
            ),
            (
                "",
                "nodes",
                {
                    "metadata": {"name": "node-a"},
                    "spec": {"podCIDR": "10.1.0.0/24", "providerID": "kind://node-a"},
                    "status": {
                        "nodeInfo": {
                            "kernelVersion": "6.1.0",
                            "osImage": "Debian GNU/Linux 12",
                            "containerRuntimeVersion": "containerd://1.7",
                            "kubeletVersion": "v1.32.0",
                            "kubeProxyVersion": "v1.32.0",
                            "systemUUID": "abc",
                        },
                        "addresses": [
                            {"type": "Hostname", "address": "node-a"},
                            {"type": "InternalIP", "address": "192.168.0.10"},
                        ],
                        "conditions": [
                            {"type": "Ready", "status": "True"},
                            {"type": "MemoryPressure", "status": "False"},
                        ],
                        "allocatable": {
                            "cpu": "3800m",
                            "memory": "16Gi",
                            "pods": "110",
                            "ephemeral-storage": "100G",
                            "nvidia.com/gpu": "2",
                        },
                    },
                },
            ),
            ("", "namespaces", {"metadata": {"name": "shop"}, "status": {"phase": "Active"}}),
            ("", "namespaces", {"metadata": {"name": "old"}, "status": {"phase": "Terminating"}}),
        ]
        out[cluster] = objs
    return out


def fleet_events() -> tuple[list[Upsert], list[ResourceType]]:
    ups: list[Upsert] = []
    types: list[ResourceType] = []
    for cluster, objs in fleet().items():
        types += resource_types(cluster)
        ups += [upsert(cluster, g, r, o) for g, r, o in objs]
    ups.sort(key=lambda u: (u.cluster, u.group, u.resource, u.namespace, u.name))
    return ups, types
