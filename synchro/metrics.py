"""Prometheus metrics of a synchro worker (registered once per process, labelled by cluster).

Sync lag is computed at scrape time from the last event or bookmark seen per watch, so an idle but
healthy watch (bookmarks keep arriving) shows a small lag and a stuck one a growing lag.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from prometheus_client import REGISTRY, Counter, Gauge
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

EVENTS = Counter(
    "clusterpedia_synchro_events_total",
    "Objects received from member clusters (list items and watch events)",
    ["cluster", "resource", "type"],
)
WATCHES = Gauge("clusterpedia_synchro_watches_active", "Open watch streams", ["cluster"])
OBJECTS = Gauge("clusterpedia_synchro_objects", "Objects currently synced", ["cluster", "resource"])
RELISTS = Counter(
    "clusterpedia_synchro_relists_total",
    "Lists after the first one (410 Gone, errors)",
    ["cluster", "resource"],
)
HEALTHY = Gauge(
    "clusterpedia_synchro_cluster_healthy", "1 when the member cluster answers its probe", ["cluster"]
)
OWNED = Gauge("clusterpedia_synchro_clusters_owned", "Clusters whose lease this worker holds")

_last_seen: dict[tuple[str, str], float] = {}


def touch(cluster: str, resource: str) -> None:
    """Record that a watch of cluster/resource just delivered an event or bookmark."""
    _last_seen[(cluster, resource)] = time.time()


def forget(cluster: str, resource: str | None = None) -> None:
    """Drop the series of a cluster (or one resource of it) that this worker stopped syncing."""

    def match(key: tuple[str, str]) -> bool:
        return key[0] == cluster and (resource is None or key[1] == resource)

    for key in [k for k in _last_seen if match(k)]:
        del _last_seen[key]
    for key in [k for k in _object_keys if match(k)]:
        OBJECTS.remove(*key)
        _object_keys.discard(key)
    if resource is None:
        for gauge in (HEALTHY, WATCHES):
            with contextlib.suppress(KeyError):
                gauge.remove(cluster)


_object_keys: set[tuple[str, str]] = set()


def set_objects(cluster: str, resource: str, count: int) -> None:
    _object_keys.add((cluster, resource))
    OBJECTS.labels(cluster, resource).set(count)


class _LagCollector(Collector):
    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "clusterpedia_synchro_sync_lag_seconds",
            "Seconds since the last event or bookmark of each watched resource",
            labels=["cluster", "resource"],
        )
        now = time.time()
        for (cluster, resource), seen in list(_last_seen.items()):
            family.add_metric([cluster, resource], now - seen)
        yield family


REGISTRY.register(_LagCollector())
