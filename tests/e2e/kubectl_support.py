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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import Engine

from tests.apiserver.storefill import add_objects, add_type
from tests.harness.certs import CertificateAuthority
from tests.harness.cluster import Cluster, free_port
from tests.harness.processes import Process

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
    engine: Engine, cluster: Cluster, kinds: Sequence[Kind], *, name: str | None = None
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
            engine,
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
            engine, name or cluster.name, kind.group, kind.version, kind.resource, objects
        )
    return counts


def fill_crd_from_cluster(engine: Engine, cluster: Cluster, crd_name: str) -> Kind:
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
        engine,
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
    add_objects(engine, cluster.name, kind.group, kind.version, kind.resource, objects)
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
