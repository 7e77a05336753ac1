"""Cluster ownership with ``coordination.k8s.io/v1`` Leases in the host cluster: pure rules.

Each worker renews a heartbeat Lease (``synchro-worker-<id>``, labelled) so all workers can count
the live ones, and one Lease per PediaCluster it owns (``pediacluster-<name>``). A Lease is free
when its holder is empty or its renewTime is older than its duration. Optimistic concurrency
(resourceVersion on update, AlreadyExists on create) makes two workers racing for one Lease end
with exactly one holder. A worker holds at most ``fair_share`` clusters, so clusters spread out.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any

WORKER_LABEL = "clusterpedia.io/synchro-worker"
CLUSTER_LABEL = "clusterpedia.io/pediacluster"
CLUSTER_PREFIX = "pediacluster-"
WORKER_PREFIX = "synchro-worker-"


def microtime(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_microtime(value: str | None) -> float:
    if not value:
        return 0.0
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def dns_label(value: str) -> str:
    """A string usable in an object name (lowercase alphanumerics, '-' and '.')."""
    cleaned = re.sub(r"[^a-z0-9.-]+", "-", value.lower()).strip("-.")
    return cleaned[:200] or "worker"


def cluster_lease_name(cluster: str) -> str:
    return CLUSTER_PREFIX + cluster


def holder(lease: dict[str, Any] | None) -> str:
    return str(((lease or {}).get("spec") or {}).get("holderIdentity") or "")


def is_alive(lease: dict[str, Any] | None, now: float) -> bool:
    """The holder renewed within the lease's duration."""
    spec = (lease or {}).get("spec") or {}
    if not spec.get("holderIdentity"):
        return False
    renewed = parse_microtime(spec.get("renewTime") or spec.get("acquireTime"))
    return renewed + float(spec.get("leaseDurationSeconds") or 0) >= now


def fair_share(clusters: int, live_workers: int) -> int:
    return math.ceil(clusters / max(1, live_workers))


def lease_body(
    name: str,
    *,
    holder_identity: str,
    duration_seconds: float,
    now: float,
    previous: dict[str, Any] | None = None,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A Lease held by ``holder_identity`` renewed at ``now``; from ``previous`` it keeps the
    resourceVersion (the optimistic lock), acquireTime when the holder is unchanged, and counts
    transitions."""
    prev_spec = (previous or {}).get("spec") or {}
    same_holder = prev_spec.get("holderIdentity") == holder_identity and bool(holder_identity)
    transitions = int(prev_spec.get("leaseTransitions") or 0) + (0 if same_holder or not previous else 1)
    metadata: dict[str, Any] = {"name": name, "labels": labels or {}}
    if previous:
        metadata["resourceVersion"] = previous["metadata"]["resourceVersion"]
    spec: dict[str, Any] = {
        "holderIdentity": holder_identity,
        "leaseDurationSeconds": max(1, math.ceil(duration_seconds)),
        "renewTime": microtime(now),
        "acquireTime": prev_spec.get("acquireTime") if same_holder else microtime(now),
        "leaseTransitions": transitions,
    }
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata, "spec": spec}
