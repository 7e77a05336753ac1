"""PediaClusters for the benchmark: the CRD in a host, and N clusters pointing at members.

To simulate many member clusters on two cores, several PediaClusters may point at the same
kube-apiserver: each is a separate cluster to the synchro (its own lists, watches, rows), while
the member serves the same objects to each. The host may be a member itself: the synchro only
needs the PediaCluster CRD and Leases there, and one kube-apiserver fewer leaves CPU to the tiers
under test.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Sequence
from pathlib import Path

import yaml

from bench.members import Member
from bench.services import REPO

CRD_FILE = REPO / "charts" / "clusterpedia" / "crds" / "clusters.clusterpedia.io_pediaclusters.yaml"
PEDIACLUSTERS = "/apis/clusters.clusterpedia.io/v1alpha1/pediaclusters"
SYNCED = (("apps", ("deployments", "replicasets")), ("", ("pods",)))
"""What each benchmark PediaCluster syncs: the generator's three kinds."""


def install_crd(host: Member, timeout_seconds: float = 60.0) -> None:
    crd = yaml.safe_load(CRD_FILE.read_text())
    with host.sync_client() as client:
        resp = client.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=crd)
        if resp.status_code not in (200, 201, 409):
            raise RuntimeError(f"installing the PediaCluster CRD: {resp.status_code} {resp.text[:300]}")
        deadline = time.monotonic() + timeout_seconds
        name = crd["metadata"]["name"]
        while time.monotonic() < deadline:
            got = client.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
            conds = (got.json().get("status") or {}).get("conditions") or [] if got.status_code == 200 else []
            established = any(c["type"] == "Established" and c["status"] == "True" for c in conds)
            if established and client.get(PEDIACLUSTERS).status_code == 200:
                return
            time.sleep(0.2)
    raise TimeoutError("the PediaCluster CRD was not established in time")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def pediacluster(name: str, member: Member) -> dict[str, object]:
    spec: dict[str, object] = {
        "apiserverURL": member.server,
        "tokenData": _b64(member.token.encode()),
        "resources": [{"group": g, "resources": list(rs)} for g, rs in SYNCED],
    }
    if member.ca_file:
        spec["caData"] = _b64(Path(member.ca_file).read_bytes())
    else:
        spec["insecureSkipTLSVerify"] = True
    return {
        "apiVersion": "clusters.clusterpedia.io/v1alpha1",
        "kind": "PediaCluster",
        "metadata": {"name": name, "labels": {"bench.clusterpedia.io/run": "1"}},
        "spec": spec,
    }


def create_pediaclusters(host: Member, names_to_members: Sequence[tuple[str, Member]]) -> None:
    with host.sync_client() as client:
        for name, member in names_to_members:
            resp = client.post(PEDIACLUSTERS, json=pediacluster(name, member))
            if resp.status_code not in (200, 201):
                raise RuntimeError(f"creating PediaCluster {name}: {resp.status_code} {resp.text[:300]}")


def remove_pediaclusters(host: Member, names: Sequence[str]) -> None:
    """Delete without waiting for the synchro's cleanup (its finalizer is dropped first): used once
    the tiers are stopped, the store being reset before the next scenario anyway."""
    with host.sync_client() as client:
        for name in names:
            client.patch(
                f"{PEDIACLUSTERS}/{name}",
                json={"metadata": {"finalizers": None}},
                headers={"Content-Type": "application/merge-patch+json"},
            )
            client.delete(f"{PEDIACLUSTERS}/{name}")


def cluster_names(count: int, prefix: str = "bench") -> list[str]:
    return [f"{prefix}-c{i:03d}" for i in range(count)]
