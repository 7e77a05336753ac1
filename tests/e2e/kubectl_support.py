"""Helpers for the kubectl end-to-end tests of the API tier.

- ``ApiTier``: the real ``clusterpedia apiserver`` process on a free loopback port, TLS with a
  certificate from a test CA;
- ``fill_from_cluster``: reads objects back from a real member cluster (``kubectl get -o json``)
  and stores them with the writer's upserts, so the API can be tested without the sync pipeline;
- ``parse_table`` / ``rows_by_cluster``: kubectl's column output as lists of cells, split at the
  header's column starts (cells may contain single spaces, columns are 3+ spaces apart).
"""

from __future__ import annotations

import json
import re
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from common.storage import StoreWriter
from harness.certs import CertificateAuthority
from harness.cluster import Cluster, free_port
from harness.paths import kubectl_binary
from harness.processes import Process
from tests.apiserver.storefill import add_objects, add_type

RESOURCES_PATH = "/apis/clusterpedia.io/v1beta1/resources"
REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Kind:
    group: str
    version: str
    resource: str
    kind: str
    namespaced: bool = True
    short_names: tuple[str, ...] = ()

    @property
    def kubectl_name(self) -> str:
        return f"{self.resource}.{self.group}" if self.group else self.resource


PODS = Kind("", "v1", "pods", "Pod", short_names=("po",))
DEPLOYMENTS = Kind("apps", "v1", "deployments", "Deployment", short_names=("deploy",))
SERVICES = Kind("", "v1", "services", "Service", short_names=("svc",))
CONFIGMAPS = Kind("", "v1", "configmaps", "ConfigMap", short_names=("cm",))
NAMESPACES = Kind("", "v1", "namespaces", "Namespace", namespaced=False, short_names=("ns",))
REPLICASETS = Kind("apps", "v1", "replicasets", "ReplicaSet", short_names=("rs",))
SECRETS = Kind("", "v1", "secrets", "Secret")
SERVICEACCOUNTS = Kind("", "v1", "serviceaccounts", "ServiceAccount", short_names=("sa",))
ROLES = Kind("rbac.authorization.k8s.io", "v1", "roles", "Role")
ROLEBINDINGS = Kind("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding")
CLUSTERROLES = Kind("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", namespaced=False)
DAEMONSETS = Kind("apps", "v1", "daemonsets", "DaemonSet", short_names=("ds",))
STATEFULSETS = Kind("apps", "v1", "statefulsets", "StatefulSet", short_names=("sts",))
JOBS = Kind("batch", "v1", "jobs", "Job")
CRONJOBS = Kind("batch", "v1", "cronjobs", "CronJob", short_names=("cj",))
LEASES = Kind("coordination.k8s.io", "v1", "leases", "Lease")
INGRESSES = Kind("networking.k8s.io", "v1", "ingresses", "Ingress", short_names=("ing",))
NETWORKPOLICIES = Kind("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", short_names=("netpol",))
PDBS = Kind("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", short_names=("pdb",))
PVCS = Kind("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", short_names=("pvc",))
EVENTS = Kind("", "v1", "events", "Event", short_names=("ev",))
ENDPOINTS = Kind("", "v1", "endpoints", "Endpoints", short_names=("ep",))


READER_ROLE = """
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: clusterpedia-reader}
rules:
- apiGroups: [clusterpedia.io, pedia.clusterpedia.io]
  resources: ["*"]
  verbs: [get, list]
"""
"""The host's ClusterRole for readers of Clusterpedia (as examples/apiservice.yaml has it)."""


class ApiTier:
    """``python -m cli apiserver`` against ``store_url``; stop() always."""

    def __init__(self, workdir: Path, store_url: str, *, extra_args: Sequence[str] = ()) -> None:
        self.workdir = workdir
        self.ca = CertificateAuthority("clusterpedia-test-ca")
        self.ca_pem = self.ca.cert_pem
        serving = self.ca.serving_cert(
            "clusterpedia-apiserver",
            hosts=("127.0.0.1", "localhost", "clusterpedia-apiserver.clusterpedia-system.svc"),
        )
        self.cert_file, self.key_file = serving.write(workdir / "pki", "apiserver")
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        argv = [
            sys.executable,
            "-m",
            "cli",
            "apiserver",
            f"--storage={store_url}",
            "--bind-host=127.0.0.1",
            f"--port={self.port}",
            f"--tls-cert-file={self.cert_file}",
            f"--tls-key-file={self.key_file}",
            "--log-format=text",
            # the kubectl tests read everything; member-rbac has its own tests (test_caller_permissions)
            *(
                []
                if any(a.startswith("--authorization-mode") for a in extra_args)
                else ["--authorization-mode=host-only"]
            ),
            *extra_args,
        ]
        self.process = Process("clusterpedia-apiserver", argv, workdir / "apiserver.log")

    def start(self, timeout: float = 60.0) -> ApiTier:
        self.process.start()
        ctx = ssl.create_default_context(cadata=self.ca_pem.decode())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.process.running():
                raise RuntimeError(f"the API tier exited:\n{self.process.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", context=ctx, timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"the API tier did not answer /healthz:\n{self.process.log_tail()}")

    def stop(self) -> None:
        self.process.stop()

    def kubeconfig(self, path: Path, clusters: Sequence[str] = ()) -> Path:
        """A kubeconfig straight to the API tier: ``clusterpedia`` plus one entry per cluster name."""
        import base64

        ca = base64.b64encode(self.ca_pem).decode()
        entries = [("clusterpedia", self.url + RESOURCES_PATH)]
        entries += [(c, f"{self.url}{RESOURCES_PATH}/clusters/{c}") for c in clusters]
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": n, "cluster": {"server": s, "certificate-authority-data": ca}} for n, s in entries
            ],
            "users": [{"name": "anonymous", "user": {"token": "not-checked"}}],
            "contexts": [
                {"name": "clusterpedia", "context": {"cluster": "clusterpedia", "user": "anonymous"}}
            ],
            "current-context": "clusterpedia",
        }
        path.write_text(yaml.safe_dump(config))
        return path


def fill_from_cluster(
    store: StoreWriter, cluster: Cluster, kinds: Sequence[Kind], *, name: str | None = None
) -> dict[str, int]:
    """Store every object of ``kinds`` from ``cluster`` (as ``name``), as the writer would."""
    counts = {}
    for kind in kinds:
        printer_columns = b""
        objects = cluster.get_json(kind.kubectl_name, "-A")["items"]
        for obj in objects:
            obj.setdefault("apiVersion", kind.group + "/" + kind.version if kind.group else kind.version)
            obj.setdefault("kind", kind.kind)
        add_type(
            store,
            name or cluster.name,
            kind.group,
            kind.version,
            kind.resource,
            kind.kind,
            namespaced=kind.namespaced,
            short_names=kind.short_names,
            printer_columns=printer_columns,
        )
        counts[kind.resource] = add_objects(
            store, name or cluster.name, kind.group, kind.version, kind.resource, objects
        )
    return counts


def fill_crd_from_cluster(store: StoreWriter, cluster: Cluster, crd_name: str) -> Kind:
    """Store a CRD's resource type (with its printer columns) and all its objects."""
    crd = cluster.get_json("customresourcedefinition", crd_name)
    version = next(v for v in crd["spec"]["versions"] if v.get("storage"))
    kind = Kind(
        crd["spec"]["group"],
        version["name"],
        crd["spec"]["names"]["plural"],
        crd["spec"]["names"]["kind"],
        crd["spec"]["scope"] == "Namespaced",
        tuple(crd["spec"]["names"].get("shortNames", [])),
    )
    add_type(
        store,
        cluster.name,
        kind.group,
        kind.version,
        kind.resource,
        kind.kind,
        namespaced=kind.namespaced,
        short_names=kind.short_names,
        printer_columns=json.dumps(version.get("additionalPrinterColumns", [])).encode(),
    )
    objects = cluster.get_json(kind.kubectl_name, "-A")["items"]
    add_objects(store, cluster.name, kind.group, kind.version, kind.resource, objects)
    return kind


_COLUMN = re.compile(r"\S+(?: \S+)*")


def parse_table(output: str) -> tuple[list[str], list[list[str]]]:
    """kubectl's column output -> (headers, rows of cells)."""
    lines = [line for line in output.splitlines() if line.strip()]
    if not lines:
        return [], []
    header = lines[0]
    starts = [m.start() for m in _COLUMN.finditer(header)]
    names = [m.group() for m in _COLUMN.finditer(header)]
    rows = []
    for line in lines[1:]:
        cells = []
        for i, start in enumerate(starts):
            end = starts[i + 1] if i + 1 < len(starts) else None
            cells.append(line[start:end].strip())
        rows.append(cells)
    return names, rows


def drop_columns(
    headers: list[str], rows: list[list[str]], drop: Sequence[str]
) -> tuple[list[str], list[list[str]]]:
    keep = [i for i, h in enumerate(headers) if h not in drop]
    return [headers[i] for i in keep], [[r[i] for i in keep] for r in rows]


def kubectl_run(
    kubectl: Path, kubeconfig: Path, *args: str, check: bool = True, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    argv = [str(kubectl), f"--kubeconfig={kubeconfig}", *args]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def json_of(proc: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(proc.stdout)


# ---- golden comparison: Clusterpedia's rows of one cluster == that member's own rows

GOLDEN_KINDS = [
    "pods",
    "deployments",
    "services",
    "configmaps",
    "namespaces",
    "widgets.example.com",
    "gadgets.example.com",
]
CLUSTER_SCOPED = ("namespaces", "gadgets.example.com")


def member_rows(cluster: Cluster, version: str, args: Sequence[str]) -> tuple[list[str], list[list[str]]]:
    """``kubectl get <args>`` on the member itself, AGE dropped."""
    out = cluster.kubectl("get", *args, version=version).stdout
    return drop_columns(*parse_table(out), ["AGE"])


def pedia_rows(
    kubeconfig: Path, version: str, cluster_entry: str, args: Sequence[str]
) -> tuple[list[str], list[list[str]]]:
    """``kubectl --cluster <entry> get <args>`` through Clusterpedia, AGE dropped."""
    out = kubectl_run(kubectl_binary(version), kubeconfig, "--cluster", cluster_entry, "get", *args).stdout
    return drop_columns(*parse_table(out), ["AGE"])


def without_cluster(
    headers: list[str], rows: list[list[str]], cluster: str
) -> tuple[list[str], list[list[str]]]:
    """One cluster's rows with the CLUSTER column removed."""
    i = headers.index("CLUSTER")
    return headers[:i] + headers[i + 1 :], [r[:i] + r[i + 1 :] for r in rows if r[i] == cluster]


def assert_golden(
    kubeconfig: Path, members: Mapping[str, Cluster], kind: str, version: str, *, wide: bool = False
) -> None:
    """``kubectl --cluster clusterpedia get <kind> -A`` rows == the union of each member's rows."""
    args = [kind, "-A"] + (["-o", "wide"] if wide else [])
    headers, rows = pedia_rows(kubeconfig, version, "clusterpedia", args)
    # kubectl puts NAMESPACE before the server's columns; CLUSTER is the server's first column
    expected_first = ["CLUSTER"] if kind in CLUSTER_SCOPED else ["NAMESPACE", "CLUSTER"]
    assert headers[: len(expected_first)] == expected_first, headers
    seen = 0
    for name, cluster in members.items():
        want_headers, want_rows = member_rows(cluster, version, args)
        got_headers, got_rows = without_cluster(headers, rows, name)
        assert got_headers == want_headers, f"{kind} wide={wide}"
        assert got_rows == want_rows, f"{kind} wide={wide} cluster={name}"
        assert want_rows, f"{name} has no {kind}"
        seen += len(got_rows)
    assert seen == len(rows), f"{kind}: rows of unknown clusters"


# ---- objects of the golden comparisons (applied to each member cluster)

WORKLOADS = """
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {team: a}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop, labels: {app: web}}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: nginx, image: "nginx:1.25"}
      - {name: sidecar, image: "busybox:1.36", command: [sleep, "3600"]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: default}
spec:
  replicas: 1
  selector:
    matchLabels: {app: api}
    matchExpressions: [{key: tier, operator: In, values: [backend, api]}]
  template:
    metadata: {labels: {app: api, tier: api}}
    spec:
      containers: [{name: api, image: "example/api:2"}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}, {name: dns, port: 53, protocol: UDP}]
---
apiVersion: v1
kind: Service
metadata: {name: web-np, namespace: shop}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web-lb, namespace: shop}
spec:
  type: LoadBalancer
  externalIPs: [192.0.2.10]
  ports: [{port: 443}]
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: default}
spec:
  type: ExternalName
  externalName: db.example.com
---
apiVersion: v1
kind: Service
metadata: {name: headless, namespace: default}
spec:
  clusterIP: None
  selector: {app: api}
  ports: [{port: 9000}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: shop}
data: {a: "1", b: "2"}
binaryData: {c: AAEC}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: empty, namespace: default}
---
apiVersion: v1
kind: Secret
metadata: {name: creds, namespace: shop}
type: Opaque
stringData: {user: u, password: p}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: reader, namespace: shop}
rules: [{apiGroups: [""], resources: [pods], verbs: [get]}]
"""

MORE_KINDS_YAML = """
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent, namespace: shop}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      nodeSelector: {kubernetes.io/os: linux}
      containers: [{name: agent, image: "agent:1"}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: shop}
spec:
  serviceName: db
  replicas: 1
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec: {containers: [{name: pg, image: "postgres:16"}]}
---
apiVersion: batch/v1
kind: Job
metadata: {name: migrate, namespace: shop}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: migrate, image: "migrate:1"}]
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly, namespace: shop}
spec:
  schedule: "0 3 * * *"
  timeZone: Etc/UTC
  suspend: true
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers: [{name: backup, image: "backup:1"}]
---
apiVersion: coordination.k8s.io/v1
kind: Lease
metadata: {name: leader, namespace: shop}
spec: {holderIdentity: pod-a, leaseDurationSeconds: 30}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web, namespace: shop}
spec:
  ingressClassName: nginx
  tls: [{hosts: [shop.example.com]}]
  rules:
  - host: shop.example.com
    http:
      paths: [{path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}]
  - host: api.example.com
    http:
      paths: [{path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Ingress]
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web, namespace: shop}
spec:
  minAvailable: 1
  selector: {matchLabels: {app: web}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data, namespace: shop}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
---
apiVersion: v1
kind: Endpoints
metadata: {name: external, namespace: shop}
subsets:
- addresses: [{ip: 192.0.2.1}, {ip: 192.0.2.2}, {ip: "2001:db8::1"}]
  ports: [{name: pg, port: 5432}, {name: metrics, port: 9187}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: readers, namespace: shop}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: reader}
subjects:
- {kind: User, name: alice, apiGroup: rbac.authorization.k8s.io}
- {kind: Group, name: devs, apiGroup: rbac.authorization.k8s.io}
- {kind: ServiceAccount, name: default, namespace: shop}
"""

CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wg]}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
    additionalPrinterColumns:
    - {name: Size, type: integer, jsonPath: .spec.size}
    - {name: Color, type: string, jsonPath: .spec.color}
    - {name: Ready, type: string, jsonPath: '.status.conditions[?(@.type=="Ready")].status'}
    - {name: Ratio, type: number, jsonPath: .spec.ratio, priority: 1}
    - {name: Paused, type: boolean, jsonPath: .spec.paused}
    - {name: Age, type: date, jsonPath: .metadata.creationTimestamp}
"""

GADGETS = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: gadgets.example.com}
spec:
  group: example.com
  scope: Cluster
  names: {plural: gadgets, singular: gadget, kind: Gadget}
  versions:
  - name: v1alpha1
    served: true
    storage: true
    schema:
      openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
---
apiVersion: example.com/v1alpha1
kind: Gadget
metadata: {name: g1}
"""

WIDGETS = """
apiVersion: example.com/v1
kind: Widget
metadata: {name: small, namespace: shop}
spec: {size: 1, color: red, ratio: 0.25, paused: false}
status: {conditions: [{type: Synced, status: "False"}, {type: Ready, status: "True"}]}
---
apiVersion: example.com/v1
kind: Widget
metadata: {name: bare, namespace: default}
spec: {}
"""
