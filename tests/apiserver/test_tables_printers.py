"""Server-side printers: the cells kube-apiserver computes for each kind, from the stored object.

The golden comparison against real member clusters lives in tests/e2e/test_kubectl_tables.py; these
cover the states a test cluster without kubelets cannot produce (running, crashing, completed pods,
sidecars, load balancers, ...), written from the Kubernetes printer rules.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from apiserver.printers import printer_for
from apiserver.printers.crd import compile_path, crd_printer, evaluate
from apiserver.tables import choose_printer

NOW = dt.datetime(2026, 1, 10, 12, 0, 0, tzinfo=dt.UTC)
CREATED = "2026-01-10T11:00:00Z"  # 60m before NOW


def cells(group: str, resource: str, obj: dict[str, Any]) -> list[Any]:
    printer = printer_for(group, resource)
    assert printer is not None
    row = printer.cells(obj, NOW)
    assert len(row) == len(printer.columns)
    return row


def headers(group: str, resource: str) -> list[str]:
    printer = printer_for(group, resource)
    assert printer is not None
    return [c.name for c in printer.columns]


def pod(status: dict[str, Any], spec: dict[str, Any] | None = None, **meta: Any) -> dict[str, Any]:
    return {
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "default", "creationTimestamp": CREATED, **meta},
        "spec": spec or {"containers": [{"name": "app", "image": "nginx"}]},
        "status": status,
    }


def running(name: str = "app", ready: bool = True, restarts: int = 0, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "ready": ready,
        "restartCount": restarts,
        "state": {"running": {"startedAt": CREATED}},
        **extra,
    }


def test_pod_columns() -> None:
    assert headers("", "pods") == [
        "Name",
        "Ready",
        "Status",
        "Restarts",
        "Age",
        "IP",
        "Node",
        "Nominated Node",
        "Readiness Gates",
    ]


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ({"phase": "Pending"}, ["0/1", "Pending", "0"]),
        (
            {
                "phase": "Pending",
                "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}],
            },
            ["0/1", "SchedulingGated", "0"],
        ),
        (
            {
                "phase": "Pending",
                "containerStatuses": [
                    {
                        "name": "app",
                        "ready": False,
                        "restartCount": 0,
                        "state": {"waiting": {"reason": "ContainerCreating"}},
                    }
                ],
            },
            ["0/1", "ContainerCreating", "0"],
        ),
        (
            {
                "phase": "Running",
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [running()],
                "podIPs": [{"ip": "10.0.0.5"}],
            },
            ["1/1", "Running", "0"],
        ),
        (
            {
                "phase": "Running",
                "containerStatuses": [
                    {
                        "name": "app",
                        "ready": False,
                        "restartCount": 4,
                        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                        "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2026-01-10T11:55:00Z"}},
                    }
                ],
            },
            ["0/1", "CrashLoopBackOff", "4 (5m ago)"],
        ),
        (
            {
                "phase": "Succeeded",
                "containerStatuses": [
                    {
                        "name": "app",
                        "ready": False,
                        "restartCount": 0,
                        "state": {"terminated": {"exitCode": 0, "reason": "Completed"}},
                    }
                ],
            },
            ["0/1", "Completed", "0"],
        ),
        (
            {
                "phase": "Failed",
                "containerStatuses": [
                    {
                        "name": "app",
                        "ready": False,
                        "restartCount": 0,
                        "state": {"terminated": {"exitCode": 137, "signal": 9}},
                    }
                ],
            },
            ["0/1", "Signal:9", "0"],
        ),
        (
            {
                "phase": "Failed",
                "containerStatuses": [
                    {
                        "name": "app",
                        "ready": False,
                        "restartCount": 0,
                        "state": {"terminated": {"exitCode": 3}},
                    }
                ],
            },
            ["0/1", "ExitCode:3", "0"],
        ),
        ({"phase": "Failed", "reason": "Evicted"}, ["0/1", "Evicted", "0"]),
    ],
)
def test_pod_status_cells(status: dict[str, Any], expected: list[str]) -> None:
    row = cells("", "pods", pod(status))
    assert row[0] == "p"
    assert row[1:4] == expected
    assert row[4] == "60m"


def test_pod_init_containers_and_sidecars() -> None:
    spec = {
        "initContainers": [
            {"name": "init", "image": "busybox"},
            {"name": "sidecar", "image": "envoy", "restartPolicy": "Always"},
        ],
        "containers": [{"name": "app", "image": "nginx"}],
    }
    waiting = pod(
        {
            "phase": "Pending",
            "initContainerStatuses": [
                {"name": "init", "ready": False, "restartCount": 0, "state": {"running": {}}},
                {
                    "name": "sidecar",
                    "ready": False,
                    "restartCount": 0,
                    "state": {"waiting": {"reason": "PodInitializing"}},
                },
            ],
        },
        spec,
    )
    assert cells("", "pods", waiting)[1:3] == ["0/2", "Init:0/2"]
    crashing = pod(
        {
            "phase": "Pending",
            "initContainerStatuses": [
                {
                    "name": "init",
                    "ready": False,
                    "restartCount": 2,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                }
            ],
        },
        spec,
    )
    assert cells("", "pods", crashing)[1:3] == ["0/2", "Init:CrashLoopBackOff"]
    started = pod(
        {
            "phase": "Running",
            "conditions": [{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "True"}],
            "initContainerStatuses": [
                {
                    "name": "init",
                    "ready": False,
                    "restartCount": 0,
                    "state": {"terminated": {"exitCode": 0, "reason": "Completed"}},
                },
                {
                    "name": "sidecar",
                    "ready": True,
                    "started": True,
                    "restartCount": 1,
                    "state": {"running": {}},
                },
            ],
            "containerStatuses": [running()],
        },
        spec,
    )
    assert cells("", "pods", started)[1:4] == ["2/2", "Running", "1"]


def test_pod_terminating_and_wide_cells() -> None:
    p = pod(
        {
            "phase": "Running",
            "containerStatuses": [running()],
            "podIPs": [{"ip": "10.1.2.3"}],
            "nominatedNodeName": "",
        },
        {
            "containers": [{"name": "app"}],
            "nodeName": "node-a",
            "readinessGates": [{"conditionType": "x/ready"}],
        },
        deletionTimestamp="2026-01-10T11:59:00Z",
    )
    row = cells("", "pods", p)
    assert row[2] == "Terminating"
    assert row[5:] == ["10.1.2.3", "node-a", "<none>", "0/1"]
    bare = cells("", "pods", pod({"phase": "Pending"}))
    assert bare[5:] == ["<none>", "<none>", "<none>", "<none>"]


def test_deployment_cells_match_the_seed() -> None:
    d = {
        "metadata": {"name": "coredns", "creationTimestamp": "2025-11-03T12:00:00Z"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"k8s-app": "kube-dns"}},
            "template": {
                "spec": {
                    "containers": [
                        {"name": "coredns", "image": "registry.aliyuncs.com/google_containers/coredns:v1.8.4"}
                    ]
                }
            },
        },
        "status": {"readyReplicas": 2, "updatedReplicas": 2, "availableReplicas": 2},
    }
    assert headers("apps", "deployments") == [
        "Name",
        "Ready",
        "Up-to-date",
        "Available",
        "Age",
        "Containers",
        "Images",
        "Selector",
    ]
    assert cells("apps", "deployments", d) == [
        "coredns",
        "2/2",
        2,
        2,
        "68d",
        "coredns",
        "registry.aliyuncs.com/google_containers/coredns:v1.8.4",
        "k8s-app=kube-dns",
    ]
    empty = cells("apps", "deployments", {"metadata": {"name": "x"}, "spec": {"replicas": 1}})
    assert empty[1:5] == ["0/1", 0, 0, "<unknown>"]


@pytest.mark.parametrize(
    ("spec", "status", "expected"),
    [
        (
            {
                "type": "ClusterIP",
                "clusterIPs": ["10.96.0.10"],
                "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}],
                "selector": {"k8s-app": "kube-dns"},
            },
            {},
            ["ClusterIP", "10.96.0.10", "<none>", "53/UDP,53/TCP", "60m", "k8s-app=kube-dns"],
        ),
        (
            {
                "type": "NodePort",
                "clusterIPs": ["10.96.1.1"],
                "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}],
            },
            {},
            ["NodePort", "10.96.1.1", "<none>", "80:30080/TCP", "60m", "<none>"],
        ),
        (
            {
                "type": "LoadBalancer",
                "clusterIPs": ["10.96.1.2"],
                "ports": [{"port": 443, "nodePort": 31443, "protocol": "TCP"}],
            },
            {},
            ["LoadBalancer", "10.96.1.2", "<pending>", "443:31443/TCP", "60m", "<none>"],
        ),
        (
            {"type": "LoadBalancer", "clusterIPs": ["10.96.1.2"], "externalIPs": ["192.0.2.9"], "ports": []},
            {"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}, {"hostname": "lb.example.com"}]}},
            ["LoadBalancer", "10.96.1.2", "203.0.113.7,lb.example.com,192.0.2.9", "<none>", "60m", "<none>"],
        ),
        (
            {"type": "ExternalName", "externalName": "db.example.com", "ports": []},
            {},
            ["ExternalName", "<none>", "db.example.com", "<none>", "60m", "<none>"],
        ),
    ],
)
def test_service_cells(spec: dict[str, Any], status: dict[str, Any], expected: list[Any]) -> None:
    svc = {"metadata": {"name": "s", "creationTimestamp": CREATED}, "spec": spec, "status": status}
    assert cells("", "services", svc)[1:] == expected


def test_small_core_kinds() -> None:
    meta = {"name": "x", "creationTimestamp": CREATED}
    assert cells(
        "", "configmaps", {"metadata": meta, "data": {"a": "1", "b": "2"}, "binaryData": {"c": ""}}
    ) == [
        "x",
        3,
        "60m",
    ]
    assert cells("", "secrets", {"metadata": meta, "type": "Opaque", "data": {"a": "MQ=="}}) == [
        "x",
        "Opaque",
        1,
        "60m",
    ]
    assert cells("", "namespaces", {"metadata": meta, "status": {"phase": "Active"}}) == [
        "x",
        "Active",
        "60m",
    ]
    assert cells("", "serviceaccounts", {"metadata": meta}) == ["x", "60m"]
    endpoints = {
        "metadata": meta,
        "subsets": [
            {"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}], "ports": [{"port": 80}, {"port": 443}]},
        ],
    }
    assert cells("", "endpoints", endpoints)[1] == "10.0.0.1:80,10.0.0.2:80,10.0.0.1:443 + 1 more..."
    node = {
        "metadata": {
            **meta,
            "labels": {"node-role.kubernetes.io/control-plane": "", "kubernetes.io/role": "edge"},
        },
        "spec": {"unschedulable": True},
        "status": {
            "conditions": [{"type": "Ready", "status": "False"}],
            "nodeInfo": {"kubeletVersion": "v1.34.4", "architecture": "amd64", "kernelVersion": "6.1"},
            "addresses": [{"type": "InternalIP", "address": "192.168.1.4"}],
        },
    }
    assert cells("", "nodes", node) == [
        "x",
        "NotReady,SchedulingDisabled",
        "control-plane,edge",
        "60m",
        "v1.34.4",
        "192.168.1.4",
        "<none>",
        "<unknown>",
        "6.1 (amd64)",
        "<unknown>",
    ]


def test_workload_kinds() -> None:
    meta = {"name": "w", "creationTimestamp": CREATED}
    template = {"spec": {"containers": [{"name": "a", "image": "i1"}, {"name": "b", "image": "i2"}]}}
    selector = {"matchLabels": {"app": "w"}}
    assert cells(
        "apps",
        "statefulsets",
        {"metadata": meta, "spec": {"replicas": 3, "template": template}, "status": {"readyReplicas": 1}},
    ) == [
        "w",
        "1/3",
        "60m",
        "a,b",
        "i1,i2",
    ]
    ds = {
        "metadata": meta,
        "spec": {
            "selector": selector,
            "template": {"spec": {**template["spec"], "nodeSelector": {"os": "linux"}}},
        },
        "status": {
            "desiredNumberScheduled": 2,
            "currentNumberScheduled": 2,
            "numberReady": 1,
            "updatedNumberScheduled": 2,
            "numberAvailable": 1,
        },
    }
    assert cells("apps", "daemonsets", ds) == ["w", 2, 2, 1, 2, 1, "os=linux", "60m", "a,b", "i1,i2", "app=w"]
    rs = {
        "metadata": meta,
        "spec": {"replicas": 2, "selector": selector, "template": template},
        "status": {"replicas": 2},
    }
    assert cells("apps", "replicasets", rs) == ["w", 2, 2, 0, "60m", "a,b", "i1,i2", "app=w"]
    job = {
        "metadata": meta,
        "spec": {"completions": 3, "selector": selector, "template": template},
        "status": {
            "succeeded": 3,
            "startTime": "2026-01-10T11:00:00Z",
            "completionTime": "2026-01-10T11:02:05Z",
            "conditions": [{"type": "Complete", "status": "True"}],
        },
    }
    assert cells("batch", "jobs", job)[:5] == ["w", "Complete", "3/3", "2m5s", "60m"]
    cron = {
        "metadata": meta,
        "spec": {
            "schedule": "*/5 * * * *",
            "suspend": False,
            "jobTemplate": {"spec": {"template": template}},
        },
        "status": {"active": [{"name": "j"}], "lastScheduleTime": "2026-01-10T11:55:00Z"},
    }
    assert cells("batch", "cronjobs", cron)[:7] == ["w", "*/5 * * * *", "<none>", "False", 1, "5m", "60m"]


CRD_COLUMNS = [
    {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
    {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
    {"name": "Ratio", "type": "number", "jsonPath": ".spec.ratio", "priority": 1},
    {"name": "Paused", "type": "boolean", "jsonPath": ".spec.paused"},
    {"name": "Owner", "type": "string", "jsonPath": ".metadata.annotations['example.com/owner']"},
    {"name": "First", "type": "string", "jsonPath": ".spec.items[0].name"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def test_crd_printer_columns() -> None:
    printer = crd_printer(json.dumps(CRD_COLUMNS))
    assert [c.name for c in printer.columns] == [
        "Name",
        "Ready",
        "Replicas",
        "Ratio",
        "Paused",
        "Owner",
        "First",
        "Age",
    ]
    assert printer.columns[3].priority == 1
    obj = {
        "metadata": {
            "name": "w1",
            "creationTimestamp": CREATED,
            "annotations": {"example.com/owner": "team-a"},
        },
        "spec": {"replicas": 3, "ratio": 0.5, "paused": True, "items": [{"name": "i0"}, {"name": "i1"}]},
        "status": {
            "conditions": [{"type": "Synced", "status": "False"}, {"type": "Ready", "status": "True"}]
        },
    }
    assert printer.cells(obj, NOW) == ["w1", "True", 3, 0.5, True, "team-a", "i0", "60m"]
    missing = printer.cells({"metadata": {"name": "w2"}, "spec": {"replicas": "three"}}, NOW)
    assert missing == ["w2", None, None, None, None, None, None, None]


def test_crd_without_columns_and_unknown_kinds() -> None:
    assert [c.name for c in choose_printer("example.com", "widgets", "").columns] == ["Name", "Age"]
    assert [c.name for c in choose_printer("rbac.authorization.k8s.io", "roles", "").columns] == [
        "Name",
        "Created At",
    ]
    assert [c.name for c in choose_printer("admissionregistration.k8s.io", "x", "").columns] == [
        "Name",
        "Created At",
    ]
    for columns in (b"[]", b"not json"):
        printer = choose_printer("example.com", "widgets", columns.decode())
        assert [c.name for c in printer.columns] == ["Name", "Age"]
        assert printer.cells({"metadata": {"name": "w", "creationTimestamp": CREATED}}, NOW) == ["w", "60m"]


def test_jsonpath_subset() -> None:
    doc = {"a": {"b.c": [1, 2, 3], "list": [{"k": "x", "v": 1}, {"k": "y", "v": 2}]}}
    assert evaluate(compile_path(".a['b.c'][1]"), doc) == [2]
    assert evaluate(compile_path("{.a.list[*].v}"), doc) == [1, 2]
    assert evaluate(compile_path('.a.list[?(@.k!="x")].v'), doc) == [2]
    assert evaluate(compile_path(".a.nope"), doc) == []
    with pytest.raises(ValueError):
        compile_path(".a[?(@.k ~ 'x')]")
