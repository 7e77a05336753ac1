"""The demo's member-cluster contents: the seed's namespaces and Deployments, with believable status.

There is no kubelet and no scheduler in the demo clusters, and their controller managers run
without the deployment/replicaset/daemonset/statefulset controllers (they would report 0 ready
replicas for Pods that never start, and overwrite any status set here). Instead this module plays
those controllers: it creates each workload, the ReplicaSet and Pods under it with owner
references (so owner queries work), a Node they are bound to, and then writes status through the
status subresource, so READY reads like the seed (``2/2`` for coredns, ``0/1`` for
dd-airflow-scheduler). Creation timestamps cannot be set by a client, so AGE shows the demo's age.
"""

from __future__ import annotations

import hashlib
import json
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

DEMO_GROUP = "demo.clusterpedia.io"


@dataclass(frozen=True)
class Workload:
    namespace: str
    name: str
    image: str
    replicas: int = 1
    ready: int | None = None  # None: all replicas ready
    kind: str = "Deployment"  # Deployment, DaemonSet or StatefulSet
    labels: dict[str, str] = field(default_factory=dict)
    port: int = 0  # >0: a Service in front of it

    @property
    def ready_replicas(self) -> int:
        return self.replicas if self.ready is None else self.ready

    @property
    def selector(self) -> dict[str, str]:
        return self.labels or {"app": self.name}


def _d(ns: str, name: str, image: str, replicas: int = 1, **kw: Any) -> Workload:
    return Workload(ns, name, image, replicas, **kw)


COREDNS = "registry.aliyuncs.com/google_containers/coredns:v1.8.4"

# The seed's "kubectl --cluster cluster-1 get deployments -A" and its DaemonSet in collectionresources.
CLUSTER_1 = [
    _d("calico-apiserver", "calico-apiserver", "docker.io/calico/apiserver:v3.21.2"),
    _d("calico-system", "calico-kube-controllers", "docker.io/calico/kube-controllers:v3.21.2"),
    _d("calico-system", "calico-typha", "docker.io/calico/typha:v3.21.2", port=5473),
    _d("capi-system", "capi-controller-manager", "k8s.gcr.io/cluster-api/cluster-api-controller:v1.0.1"),
    _d(
        "capi-kubeadm-bootstrap-system",
        "capi-kubeadm-bootstrap-controller-manager",
        "k8s.gcr.io/cluster-api/kubeadm-bootstrap-controller:v1.0.1",
    ),
    _d(
        "capi-kubeadm-control-plane-system",
        "capi-kubeadm-control-plane-controller-manager",
        "k8s.gcr.io/cluster-api/kubeadm-control-plane-controller:v1.0.1",
    ),
    _d(
        "capv-system", "capv-controller-manager", "gcr.io/cluster-api-provider-vsphere/release/manager:v1.0.1"
    ),
    _d("cert-manager", "cert-manager", "quay.io/jetstack/cert-manager-controller:v1.6.1", port=9402),
    _d("cert-manager", "cert-manager-cainjector", "quay.io/jetstack/cert-manager-cainjector:v1.6.1"),
    _d("cert-manager", "cert-manager-webhook", "quay.io/jetstack/cert-manager-webhook:v1.6.1", port=443),
    _d(
        "clusterpedia-system",
        "clusterpedia-apiserver",
        "ghcr.io/clusterpedia-io/clusterpedia/apiserver:v0.1.0",
    ),
    _d(
        "clusterpedia-system",
        "clusterpedia-clustersynchro-manager",
        "ghcr.io/clusterpedia-io/clusterpedia/clustersynchro-manager:v0.1.0",
    ),
    _d("clusterpedia-system", "clusterpedia-internalstorage-mysql", "mysql:8", port=3306),
    _d("kube-system", "coredns", COREDNS, 2, labels={"k8s-app": "kube-dns"}, port=53),
    _d("tigera-operator", "tigera-operator", "quay.io/tigera/operator:v1.23.3"),
    Workload(
        "kube-system",
        "vsphere-cloud-controller-manager",
        "gcr.io/cloud-provider-vsphere/cpi/release/manager:v1.22.4",
        1,
        kind="DaemonSet",
    ),
]

# The seed's kube-system and default Deployments of cluster-2 (0/1 where the seed shows it).
CLUSTER_2 = [
    _d("kube-system", "calico-kube-controllers", "docker.io/calico/kube-controllers:v3.20.0"),
    _d(
        "kube-system",
        "coredns",
        "k8s.gcr.io/coredns/coredns:v1.8.0",
        2,
        labels={"k8s-app": "kube-dns"},
        port=53,
    ),
    _d("default", "dao-2048-2048", "ghcr.io/daocloud/dao-2048:v1.2.0", port=80),
    _d("default", "dd-airflow-scheduler", "apache/airflow:2.2.3", ready=0),
    _d("default", "dd-airflow-web", "apache/airflow:2.2.3", ready=0, port=8080),
    _d("default", "hello-world-server", "gcr.io/google-samples/hello-app:1.0", port=8080),
    _d("default", "keycloak", "quay.io/keycloak/keycloak:16.1.0", port=8080),
    _d("default", "keycloak-02", "quay.io/keycloak/keycloak:16.1.0", port=8080),
    _d("default", "my-nginx", "nginx:1.21", port=80),
    _d("default", "nginx-dev", "nginx:1.21-alpine", port=80),
    _d("default", "openldap", "osixia/openldap:1.5.0", port=389),
    _d("default", "phpldapadmin", "osixia/phpldapadmin:0.9.0", port=80),
    Workload("kube-system", "calico-node", "docker.io/calico/node:v3.20.0", 1, kind="DaemonSet"),
]

# An older cluster with a few workloads of its own.
CLUSTER_3 = [
    _d(
        "kube-system",
        "coredns",
        "registry.k8s.io/coredns/coredns:v1.11.1",
        2,
        labels={"k8s-app": "kube-dns"},
        port=53,
    ),
    _d(
        "ingress-nginx",
        "ingress-nginx-controller",
        "registry.k8s.io/ingress-nginx/controller:v1.9.4",
        port=80,
    ),
    _d("monitoring", "grafana", "grafana/grafana:10.2.2", port=3000),
    _d(
        "monitoring",
        "kube-state-metrics",
        "registry.k8s.io/kube-state-metrics/kube-state-metrics:v2.10.1",
        ready=0,
    ),
    Workload(
        "monitoring", "prometheus", "quay.io/prometheus/prometheus:v2.48.0", 2, kind="StatefulSet", port=9090
    ),
    Workload("kube-system", "kube-proxy", "registry.k8s.io/kube-proxy:v1.34.4", 1, kind="DaemonSet"),
]

WORKLOADS = {"cluster-1": CLUSTER_1, "cluster-2": CLUSTER_2, "cluster-3": CLUSTER_3}

# The demo CRD (printer columns show up in `kubectl --cluster clusterpedia get databases`).
DATABASES = {
    "cluster-1": [("clusterpedia-system", "internalstorage", "mysql", "8.0", "Running")],
    "cluster-2": [
        ("default", "keycloak-db", "postgres", "14", "Running"),
        ("default", "airflow-db", "postgres", "13", "Degraded"),
    ],
    "cluster-3": [("monitoring", "grafana-db", "sqlite", "3", "Running")],
}

DATABASE_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"databases.{DEMO_GROUP}"},
    "spec": {
        "group": DEMO_GROUP,
        "scope": "Namespaced",
        "names": {
            "kind": "Database",
            "listKind": "DatabaseList",
            "plural": "databases",
            "singular": "database",
        },
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": [
                    {"name": "Engine", "type": "string", "jsonPath": ".spec.engine"},
                    {"name": "Version", "type": "string", "jsonPath": ".spec.version"},
                    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                ],
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "properties": {"engine": {"type": "string"}, "version": {"type": "string"}},
                            },
                            "status": {"type": "object", "properties": {"phase": {"type": "string"}}},
                        },
                    }
                },
            }
        ],
    },
}

# Resources each demo PediaCluster synchronises (the seed's two, plus the rest of the tour; events
# for `kubectl --cluster cluster-N describe`).
SYNCED_RESOURCES = [
    {"group": "apps", "resources": ["deployments", "daemonsets", "statefulsets", "replicasets"]},
    {"group": "", "resources": ["pods", "services", "configmaps", "namespaces", "events"]},
    {"group": DEMO_GROUP, "resources": ["databases"]},
]


class Rest:
    """Just enough of a Kubernetes REST client (admin bearer token) to create and patch objects."""

    def __init__(self, server: str, token: str, ca_pem: bytes) -> None:
        self.server = server
        self.token = token
        self.ctx = ssl.create_default_context(cadata=ca_pem.decode())

    def request(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json"
    ) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.server + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, timeout=30, context=self.ctx) as resp:
                return json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            raise RuntimeError(f"{method} {path}: {exc.code} {detail}") from exc

    def create(self, path: str, obj: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self.request("POST", path, obj)
        return result

    def patch_status(self, path: str, status: dict[str, Any]) -> None:
        self.request("PATCH", path + "/status", {"status": status}, "application/merge-patch+json")


def _owner(kind: str, api_version: str, obj: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": obj["metadata"]["name"],
        "uid": obj["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _suffix(*parts: str, n: int = 10) -> str:
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    digest = hashlib.sha256("/".join(parts).encode()).digest()
    return "".join(alphabet[b % len(alphabet)] for b in digest[:n])


def _pod_template(w: Workload) -> dict[str, Any]:
    container: dict[str, Any] = {"name": w.name, "image": w.image}
    if w.port:
        container["ports"] = [{"containerPort": w.port, "protocol": "TCP"}]
    container["resources"] = {"requests": {"cpu": "100m", "memory": "70Mi"}}
    return {"metadata": {"labels": dict(w.selector)}, "spec": {"containers": [container]}}


class Seeder:
    """Creates one member cluster's demo contents through its REST API."""

    def __init__(self, rest: Rest, cluster: str) -> None:
        self.rest = rest
        self.cluster = cluster
        self.node = f"{cluster}-control-plane"
        self.pod_count = 0
        self._ip = 10

    def _next_ip(self) -> str:
        self._ip += 1
        return f"10.244.0.{self._ip}"

    def seed(self) -> dict[str, int]:
        """Create everything; returns the number of objects per resource, for the readiness wait."""
        workloads = WORKLOADS[self.cluster]
        self._node()
        namespaces = sorted({w.namespace for w in workloads} | {ns for ns, *_ in DATABASES[self.cluster]})
        for ns in namespaces:
            if ns not in ("default", "kube-system"):
                self.rest.create("/api/v1/namespaces", {"metadata": {"name": ns}})
        counts = {"deployments": 0, "daemonsets": 0, "statefulsets": 0}
        for w in workloads:
            counts[w.kind.lower() + "s"] += 1
            {"Deployment": self._deployment, "DaemonSet": self._daemonset, "StatefulSet": self._statefulset}[
                w.kind
            ](w)
            if w.port:
                self._service(w)
            self.rest.create(
                f"/api/v1/namespaces/{w.namespace}/configmaps",
                {
                    "metadata": {"name": f"{w.name}-config", "labels": dict(w.selector)},
                    "data": {"cluster": self.cluster},
                },
            )
        self._databases()
        counts["pods"] = self.pod_count
        return counts

    def _node(self) -> None:
        node = self.rest.create(
            "/api/v1/nodes",
            {
                "metadata": {
                    "name": self.node,
                    "labels": {
                        "kubernetes.io/hostname": self.node,
                        "node-role.kubernetes.io/control-plane": "",
                    },
                }
            },
        )
        self.rest.patch_status(
            f"/api/v1/nodes/{node['metadata']['name']}",
            {
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "KubeletReady",
                        "message": "kubelet is posting ready status",
                    }
                ],
                "addresses": [{"type": "InternalIP", "address": "10.6.11.11"}],
                "nodeInfo": {
                    "kubeletVersion": "v1.22.2",
                    "architecture": "amd64",
                    "operatingSystem": "linux",
                    "containerRuntimeVersion": "containerd://1.5.8",
                    "kernelVersion": "5.4.0",
                    "kubeProxyVersion": "v1.22.2",
                    "osImage": "Ubuntu 20.04.3 LTS",
                    "machineID": "",
                    "systemUUID": "",
                    "bootID": "",
                },
            },
        )

    def _pods(
        self, w: Workload, owner: dict[str, Any], prefix: str, count: int, ready: int, ordinal: bool = False
    ) -> None:
        for i in range(count):
            name = f"{prefix}-{i}" if ordinal else f"{prefix}-{_suffix(self.cluster, prefix, str(i), n=5)}"
            template = _pod_template(w)
            pod = self.rest.create(
                f"/api/v1/namespaces/{w.namespace}/pods",
                {
                    "metadata": {
                        "name": name,
                        "labels": template["metadata"]["labels"],
                        "ownerReferences": [owner],
                    },
                    "spec": {**template["spec"], "nodeName": self.node},
                },
            )
            self.pod_count += 1
            is_ready = i < ready
            now = pod["metadata"]["creationTimestamp"]
            container = template["spec"]["containers"][0]
            state: dict[str, Any]
            if is_ready:
                state = {"running": {"startedAt": now}}
            else:
                state = {
                    "waiting": {
                        "reason": "CrashLoopBackOff",
                        "message": "back-off 5m0s restarting failed container",
                    }
                }
            self.rest.patch_status(
                f"/api/v1/namespaces/{w.namespace}/pods/{name}",
                {
                    "phase": "Running",
                    "conditions": [
                        {"type": "Initialized", "status": "True", "lastTransitionTime": now},
                        {
                            "type": "Ready",
                            "status": "True" if is_ready else "False",
                            "lastTransitionTime": now,
                        },
                        {
                            "type": "ContainersReady",
                            "status": "True" if is_ready else "False",
                            "lastTransitionTime": now,
                        },
                        {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
                    ],
                    "hostIP": "10.6.11.11",
                    "podIP": self._next_ip(),
                    "startTime": now,
                    "containerStatuses": [
                        {
                            "name": container["name"],
                            "image": container["image"],
                            "imageID": "",
                            "ready": is_ready,
                            "started": is_ready,
                            "restartCount": 0 if is_ready else 12,
                            "state": state,
                        }
                    ],
                },
            )

    def _deployment(self, w: Workload) -> None:
        path = f"/apis/apps/v1/namespaces/{w.namespace}/deployments"
        dep = self.rest.create(
            path,
            {
                "metadata": {"name": w.name, "labels": dict(w.selector)},
                "spec": {
                    "replicas": w.replicas,
                    "selector": {"matchLabels": w.selector},
                    "template": _pod_template(w),
                },
            },
        )
        hash_ = _suffix(self.cluster, w.namespace, w.name)
        labels = {**w.selector, "pod-template-hash": hash_}
        template = _pod_template(w)
        template["metadata"]["labels"] = labels
        rs = self.rest.create(
            f"/apis/apps/v1/namespaces/{w.namespace}/replicasets",
            {
                "metadata": {
                    "name": f"{w.name}-{hash_}",
                    "labels": labels,
                    "ownerReferences": [_owner("Deployment", "apps/v1", dep)],
                    "annotations": {"deployment.kubernetes.io/revision": "1"},
                },
                "spec": {"replicas": w.replicas, "selector": {"matchLabels": labels}, "template": template},
            },
        )
        self._pods(
            w, _owner("ReplicaSet", "apps/v1", rs), rs["metadata"]["name"], w.replicas, w.ready_replicas
        )
        # What the deployment controller would record (the demo has none running for these objects):
        # `kubectl --cluster cluster-N describe deployment ...` shows it through Clusterpedia.
        self._event(
            dep,
            "ScalingReplicaSet",
            f"Scaled up replica set {rs['metadata']['name']} to {w.replicas}",
            component="deployment-controller",
        )
        ready = w.ready_replicas
        self.rest.patch_status(
            f"/apis/apps/v1/namespaces/{w.namespace}/replicasets/{rs['metadata']['name']}",
            {
                "replicas": w.replicas,
                "fullyLabeledReplicas": w.replicas,
                "readyReplicas": ready,
                "availableReplicas": ready,
                "observedGeneration": rs["metadata"].get("generation", 1),
            },
        )
        now = dep["metadata"]["creationTimestamp"]
        available = "True" if ready >= w.replicas else "False"
        self.rest.patch_status(
            f"{path}/{w.name}",
            {
                "observedGeneration": dep["metadata"].get("generation", 1),
                "replicas": w.replicas,
                "updatedReplicas": w.replicas,
                "readyReplicas": ready,
                "availableReplicas": ready,
                **({"unavailableReplicas": w.replicas - ready} if ready < w.replicas else {}),
                "conditions": [
                    {
                        "type": "Available",
                        "status": available,
                        "reason": "MinimumReplicasAvailable"
                        if available == "True"
                        else "MinimumReplicasUnavailable",
                        "message": "Deployment has minimum availability."
                        if available == "True"
                        else "Deployment does not have minimum availability.",
                        "lastUpdateTime": now,
                        "lastTransitionTime": now,
                    },
                    {
                        "type": "Progressing",
                        "status": "True",
                        "reason": "NewReplicaSetAvailable",
                        "message": f'ReplicaSet "{rs["metadata"]["name"]}" has successfully progressed.',
                        "lastUpdateTime": now,
                        "lastTransitionTime": now,
                    },
                ],
            },
        )

    def _event(self, obj: dict[str, Any], reason: str, message: str, *, component: str) -> None:
        meta = obj["metadata"]
        now = meta["creationTimestamp"]
        self.rest.create(
            f"/api/v1/namespaces/{meta['namespace']}/events",
            {
                "metadata": {"name": f"{meta['name']}.{_suffix(meta['uid'], reason, n=16)}"},
                "involvedObject": {
                    "apiVersion": obj.get("apiVersion", ""),
                    "kind": obj.get("kind", ""),
                    "namespace": meta["namespace"],
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "resourceVersion": meta["resourceVersion"],
                },
                "reason": reason,
                "message": message,
                "type": "Normal",
                "count": 1,
                "firstTimestamp": now,
                "lastTimestamp": now,
                "source": {"component": component},
                "reportingComponent": component,
            },
        )

    def _daemonset(self, w: Workload) -> None:
        path = f"/apis/apps/v1/namespaces/{w.namespace}/daemonsets"
        ds = self.rest.create(
            path,
            {
                "metadata": {"name": w.name, "labels": dict(w.selector)},
                "spec": {"selector": {"matchLabels": w.selector}, "template": _pod_template(w)},
            },
        )
        self._pods(w, _owner("DaemonSet", "apps/v1", ds), w.name, 1, w.ready_replicas)
        ready = min(1, w.ready_replicas)
        self.rest.patch_status(
            f"{path}/{w.name}",
            {
                "currentNumberScheduled": 1,
                "desiredNumberScheduled": 1,
                "numberMisscheduled": 0,
                "numberReady": ready,
                "numberAvailable": ready,
                "updatedNumberScheduled": 1,
                "observedGeneration": ds["metadata"].get("generation", 1),
            },
        )

    def _statefulset(self, w: Workload) -> None:
        path = f"/apis/apps/v1/namespaces/{w.namespace}/statefulsets"
        sts = self.rest.create(
            path,
            {
                "metadata": {"name": w.name, "labels": dict(w.selector)},
                "spec": {
                    "replicas": w.replicas,
                    "serviceName": w.name,
                    "selector": {"matchLabels": w.selector},
                    "template": _pod_template(w),
                },
            },
        )
        self._pods(
            w, _owner("StatefulSet", "apps/v1", sts), w.name, w.replicas, w.ready_replicas, ordinal=True
        )
        self.rest.patch_status(
            f"{path}/{w.name}",
            {
                "replicas": w.replicas,
                "readyReplicas": w.ready_replicas,
                "availableReplicas": w.ready_replicas,
                "currentReplicas": w.replicas,
                "updatedReplicas": w.replicas,
                "observedGeneration": sts["metadata"].get("generation", 1),
            },
        )

    def _service(self, w: Workload) -> None:
        name = "kube-dns" if w.name == "coredns" else w.name
        self.rest.create(
            f"/api/v1/namespaces/{w.namespace}/services",
            {
                "metadata": {"name": name, "labels": dict(w.selector)},
                "spec": {
                    "selector": dict(w.selector),
                    "ports": [{"name": "main", "port": w.port, "targetPort": w.port, "protocol": "TCP"}],
                },
            },
        )

    def _databases(self) -> None:
        for ns, name, engine, version, phase in DATABASES[self.cluster]:
            path = f"/apis/{DEMO_GROUP}/v1/namespaces/{ns}/databases"
            self.rest.create(
                path,
                {
                    "apiVersion": f"{DEMO_GROUP}/v1",
                    "kind": "Database",
                    "metadata": {"name": name},
                    "spec": {"engine": engine, "version": version},
                },
            )
            self.rest.patch_status(f"{path}/{name}", {"phase": phase})
