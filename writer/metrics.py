"""Prometheus metrics of the writer tier (default registry, served by the process's /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

BATCH_EVENTS = Histogram(
    "clusterpedia_writer_batch_events",
    "Queue entries per batch read by a writer.",
    buckets=(1, 5, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000),
)
BATCH_SECONDS = Histogram(
    "clusterpedia_writer_batch_seconds",
    "Time to apply and acknowledge one batch.",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
EVENTS_APPLIED = Counter(
    "clusterpedia_writer_events_applied_total",
    "Events committed to the store, by event type.",
    ["type"],
)
EVENTS_DROPPED = Counter(
    "clusterpedia_writer_events_dropped_total",
    "Events the store rejected as invalid (logged and acknowledged), by event type.",
    ["type"],
)
QUEUE_UNDELIVERED = Gauge(
    "clusterpedia_queue_undelivered_entries", "Queue entries not yet read by any writer."
)
QUEUE_PENDING = Gauge("clusterpedia_queue_pending_entries", "Queue entries read but not yet acknowledged.")
BARRIER_WAITS = Counter(
    "clusterpedia_writer_barrier_waits_total",
    "Times a list barrier was found not yet applicable (earlier entries still in flight).",
)
BARRIERS_HELD = Gauge("clusterpedia_writer_barriers_held", "List barriers this writer holds, waiting.")
RETRIES = Counter("clusterpedia_writer_retries_total", "Batches retried after an error, by cause.", ["cause"])
ROWS_REMOVED = Counter(
    "clusterpedia_writer_rows_removed_total",
    "Rows deleted from the store, by cause (purge, tombstone_gc) or tombstoned (list_done, event_retention).",
    ["cause"],
)
STATISTICS_REFRESHES = Counter(
    "clusterpedia_writer_statistics_refreshes_total",
    "Times the writer asked the store to refresh its query-planner statistics, by outcome (refreshed;"
    " kept_by_store: the store keeps them itself, the writer stops asking; failed).",
    ["outcome"],
)
