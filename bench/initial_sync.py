"""Initial sync, end to end: from PediaCluster creation to every object stored, and its memory.

The tiers are started first and left idle (no PediaCluster), so neither interpreter start-up nor
imports count; their RSS then is the "0 objects" base. The clock starts when the PediaClusters are
created in the host and stops when the store holds a live row for every object of every cluster
(polled every 50-200 ms). The synchro's bytes per synced object is (peak RSS during the sync -
RSS before it) / objects synced; the RSS a few seconds after the sync (``settled``) shows what
the process keeps once its page buffers are released.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from bench.members import Member
from bench.pediaclusters import cluster_names, create_pediaclusters
from bench.processes import cpu_seconds, server_pids
from bench.system import System

SETTLE_SECONDS = 3.0
"""After the last row is stored, how long to wait before reading the RSS the tiers keep."""


@dataclass
class TierMemory:
    name: str
    base_bytes: int
    peak_bytes: int
    settled_bytes: int = 0
    """RSS ``SETTLE_SECONDS`` after the sync: what the process keeps (page buffers released)."""
    cpu_seconds: float = 0.0
    """CPU (user + system) the process used from PediaCluster creation to the last row stored."""

    @property
    def growth_bytes(self) -> int:
        return max(0, self.peak_bytes - self.base_bytes)


@dataclass
class SyncResult:
    store: str
    queue: str
    clusters: int
    objects: int
    """Rows expected and reached: objects per member x clusters."""
    seconds: float
    memory: list[TierMemory] = field(default_factory=list)
    other_cpu_seconds: dict[str, float] = field(default_factory=dict)
    """CPU of the member (kube-apiserver, etcd) and of the database server over the same span."""

    @property
    def objects_per_second(self) -> float:
        return self.objects / self.seconds if self.seconds else 0.0

    def tier(self, prefix: str) -> TierMemory | None:
        return next((m for m in self.memory if m.name.startswith(prefix)), None)

    @property
    def synchro_bytes_per_object(self) -> float:
        """Growth of the process holding the synchro (all-in-one: with writer and API tier)."""
        tier = self.tier("synchro") or self.tier("all-in-one")
        return tier.growth_bytes / self.objects if tier and self.objects else float("nan")


def run_initial_sync(
    system: System,
    host: Member,
    members: Sequence[Member],
    objects_per_member: int,
    clusters: int,
    *,
    prefix: str,
    timeout_seconds: float = 1800.0,
) -> tuple[SyncResult, list[str]]:
    """Create ``clusters`` PediaClusters spread over ``members`` and wait for all their rows.

    Returns the result and the cluster names (the caller removes them once done)."""
    names = cluster_names(clusters, prefix)
    assignment = [(name, members[i % len(members)]) for i, name in enumerate(names)]
    tiers = system.process_tiers()
    time.sleep(1.0)  # let the idle tiers settle before their base RSS is taken
    bases = {t.name: t.rss.reset() for t in tiers}
    others = {name: [pid] for m in members for name, pid in m.pids}
    others["database"] = server_pids(system.store.kind)
    cpu0 = {t.name: cpu_seconds(t.pid) for t in tiers}
    other0 = {name: sum(cpu_seconds(p) for p in pids) for name, pids in others.items()}
    expected = objects_per_member * clusters
    start = time.perf_counter()
    create_pediaclusters(host, assignment)
    done = system.wait_rows(names, expected, timeout_seconds)
    seconds = done - start
    cpu = {t.name: cpu_seconds(t.pid) - cpu0[t.name] for t in tiers}
    other = {name: sum(cpu_seconds(p) for p in pids) - other0[name] for name, pids in others.items()}
    peaks = {t.name: t.rss.peak for t in tiers}
    time.sleep(SETTLE_SECONDS)
    memory = [
        TierMemory(t.name, bases[t.name], max(peaks[t.name], t.rss.peak), t.rss.last, cpu[t.name])
        for t in tiers
    ]
    queue = system.queue_url.split(":", 1)[0]
    result = SyncResult(system.store.kind, queue, clusters, expected, seconds, memory, other)
    return result, names
