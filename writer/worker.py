"""The writer loop: read a batch from the queue, apply it in one transaction, commit, then ack.

Entry point: :func:`run_writer` (``settings``, a ``threading.Event`` to stop). Setting the event
(SIGTERM) lets the current batch finish; whatever is not acked stays pending in the queue and is
re-read by this consumer name or reclaimed by another writer, and re-applying is harmless because
every write of the store is guarded by resourceVersion (``common.storage.base``, the guarantees).

Barriers (``ListDone``, ``PurgeCluster``) and why later entries may overtake them
---------------------------------------------------------------------------------
A ``ListDone(epoch E)`` tombstones rows of its resource whose epoch is older than ``E``. It is
correct only once every entry queued before it is committed (some of those may be upserts that
raise a row's epoch to ``E``), whichever writer holds them; ``consumer.all_acked_before`` says so.
Until then the writer commits what preceded the barrier in its batch, keeps the barrier unacked
in a short list, retries it every ``barrier_retry_seconds``, and goes on with later entries. That
is safe because nothing queued after the barrier can be undone or hidden by applying it late:

* Upserts after it come from the list of ``E`` or the watch that follows it, so they carry an
  epoch >= ``E``; the barrier only touches rows with an epoch below ``E``, and upserts never lower
  a row's epoch.
* Deletes after it write tombstones; the barrier only touches rows that are not tombstones.
* A later barrier ``E2`` waits for this one (it is an unacked entry before it), so barriers of one
  queue apply in queue order. Purges and resource types do not interact with epochs.

Purges (``PurgeCluster``) wait the same way, so that an upsert queued before the purge and
reclaimed from a dead writer after it cannot re-create a row of the removed cluster; nothing
should follow a purge for its cluster (its PediaCluster is gone).

The same argument makes a barrier applied twice (redelivered after a crash, or reclaimed by
another writer while this one waited) harmless. A barrier from before the queue lost its entries
(Redis restarted empty: the consumer's ``generation`` moved) is dropped: entries before it may be
lost, and the synchro relists everything with a new epoch after a reset anyway. A purge the queue
lost is applied at once instead: no relist would ever remove that cluster's rows.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import TypeVar

import redis.exceptions

from common.events import Event
from common.observability import HEALTH
from common.queue import Consumer, Delivery, entry_order, open_consumer
from common.settings import Settings
from common.storage import (
    StorageError,
    StorageRejected,
    StorageUnavailable,
    Store,
    StoreOptions,
    StoreWriter,
    open_store,
)
from writer import metrics
from writer.analyzing import StatisticsPolicy
from writer.batching import Barrier, Purge, Writes, gather, plan

log = logging.getLogger("clusterpedia.writer")

T = TypeVar("T")

_REJECTED = (StorageRejected,)
"""The store refuses the data itself: retrying cannot help (the event is logged and dropped)."""

_TRANSIENT = (StorageUnavailable, redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
"""Errors of the store or the queue a retry may get past (deadlocks, lost connections, restarts)."""

_IDLE_BLOCK_SECONDS = 0.5
_DEPTH_INTERVAL_SECONDS = 1.0
_BARRIER_WARN_SECONDS = 60.0
_REFRESH_STOP_SECONDS = 30.0
"""How long a stopping writer waits for a statistics refresh still running before it closes."""


class _Stopped(Exception):
    """Stop was requested while a step was being retried: leave it unacked."""


def _event_type(event: Event) -> str:
    return type(event).__name__


def _generation(consumer: Consumer) -> int:
    return int(getattr(consumer, "generation", 0))


class Writer:
    def __init__(
        self,
        settings: Settings,
        consumer: Consumer,
        store: StoreWriter,
        stop: threading.Event,
        *,
        name: str = "",
    ) -> None:
        self.settings = settings
        self.cfg = settings.writer
        self.consumer = consumer
        self.store = store
        self.store_name = name
        self.stop = stop
        # entry id -> (barrier, queue generation when read, monotonic time when read)
        self._barriers: dict[str, tuple[Barrier | Purge, int, float]] = {}
        self._next_gc = time.monotonic() + self.cfg.tombstone_gc_interval_seconds
        self._next_depth = 0.0
        self._component = "writer"  # the health component: the thread's name once running
        self._failing = False
        self.statistics = StatisticsPolicy()
        """When the store's planner statistics are refreshed (``writer/analyzing.py``)."""
        self._refreshing: threading.Thread | None = None
        self._refreshed: tuple[int, int | None, StorageError | None, float] | None = None
        """Set by the refresh thread: (rows it accounts for, the store's estimate, error, seconds)."""

    # -- loop
    def run(self) -> None:
        self._component = threading.current_thread().name
        log.info(
            "writer started",
            extra={"consumer": getattr(self.consumer, "name", ""), "store": self.store_name},
        )
        delay = 0.05
        while not self.stop.is_set():
            try:
                self.step()
                delay = 0.05
                if self._failing:
                    self._failing = False
                    HEALTH.set_ready(self._component, True)
            except _Stopped:
                break
            except Exception as exc:
                metrics.RETRIES.labels(cause=type(exc).__name__).inc()
                log.warning("writer step failed, retrying in %.2fs: %s", delay, exc, exc_info=True)
                if delay >= 1.0 and not self._failing:
                    self._failing = True
                    HEALTH.set_ready(self._component, False, f"{type(exc).__name__}: {exc}"[:200])
                self.stop.wait(delay)
                delay = min(delay * 2, self.cfg.retry_max_seconds)
        log.info("writer stopped", extra={"barriers_held": len(self._barriers)})

    def step(self) -> int:
        """Read one batch (waiting a little when idle), apply and ack it; the number of entries."""
        batch = self._read_batch()
        if batch:
            started = time.perf_counter()
            self._process(batch)
            metrics.BATCH_EVENTS.observe(len(batch))
            metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
        self._try_barriers()
        self._housekeeping(caught_up=len(batch) < self.cfg.batch_max_events)
        return len(batch)

    def _read_batch(self) -> list[Delivery]:
        cfg = self.cfg
        return gather(
            self.consumer.read,
            block_seconds=cfg.barrier_retry_seconds if self._barriers else _IDLE_BLOCK_SECONDS,
            max_events=cfg.batch_max_events,
            max_wait_seconds=cfg.batch_max_wait_seconds,
            drained=self.consumer.drained,
        )

    # -- applying
    def _process(self, batch: Sequence[Delivery]) -> None:
        for step in plan(batch):
            if isinstance(step, Writes):
                self._apply_writes(step)
            else:  # ListDone or PurgeCluster: barriers
                if step.delivery.entry_id not in self._barriers:
                    self._barriers[step.delivery.entry_id] = (
                        step,
                        _generation(self.consumer),
                        time.monotonic(),
                    )
                self._try_barriers()

    def _apply_writes(self, writes: Writes) -> None:
        try:
            self._retrying(partial(self._write, writes))
        except _REJECTED as exc:
            log.warning("store rejected a batch, applying its events one by one: %s", exc)
            self._apply_one_by_one(writes.deliveries)
            return
        counts: dict[str, int] = {}
        for d in writes.deliveries:
            counts[_event_type(d.event)] = counts.get(_event_type(d.event), 0) + 1
        self.consumer_ack(writes.deliveries)
        self.statistics.wrote(len(writes.deliveries))
        for kind, n in counts.items():
            metrics.EVENTS_APPLIED.labels(type=kind).inc(n)

    def _write(self, writes: Writes) -> None:
        self.store.apply(writes.upserts(), writes.deletes(), list(writes.resource_types.values()))

    def _apply_one_by_one(self, deliveries: Sequence[Delivery]) -> None:
        for d in deliveries:
            single = Writes()
            single.add(d)
            try:
                self._retrying(partial(self._write, single))
                metrics.EVENTS_APPLIED.labels(type=_event_type(d.event)).inc()
            except _REJECTED as exc:
                metrics.EVENTS_DROPPED.labels(type=_event_type(d.event)).inc()
                log.error(
                    "store rejected an event; dropped",
                    extra={"entry_id": d.entry_id, "event": _describe(d.event), "error": str(exc)},
                )
            self.consumer_ack([d])

    def _try_barriers(self) -> None:
        if not self._barriers:
            metrics.BARRIERS_HELD.set(0)
            return
        generation = _generation(self.consumer)
        for entry_id in sorted(self._barriers, key=entry_order):
            barrier, gen, since = self._barriers[entry_id]
            lost = gen != generation
            if lost and isinstance(barrier, Barrier):
                log.warning("dropping a list barrier the queue lost", extra={"entry_id": entry_id})
                del self._barriers[entry_id]
                continue
            # A purge the queue lost is applied at once: its cluster is gone, nothing relists it.
            if not lost and not self._retrying(partial(self.consumer.all_acked_before, barrier.delivery)):
                metrics.BARRIER_WAITS.inc()
                waited = time.monotonic() - since
                if waited > _BARRIER_WARN_SECONDS:
                    log.warning("barrier waiting", extra={"entry_id": entry_id, "seconds": round(waited)})
                break  # later barriers wait for this one anyway
            self._apply_barrier(barrier)
            del self._barriers[entry_id]
        metrics.BARRIERS_HELD.set(len(self._barriers))

    def _apply_barrier(self, barrier: Barrier | Purge) -> None:
        if isinstance(barrier, Barrier):
            n = self._retrying(partial(self.store.list_done, barrier.event))
            self.statistics.wrote(n)
            metrics.ROWS_REMOVED.labels(cause="list_done").inc(n)
            if n:
                log.info(
                    "list done: unlisted rows tombstoned",
                    extra={"event": _describe(barrier.event), "rows": n},
                )
        else:
            n = self._retrying(partial(self.store.purge, barrier.event))
            self.statistics.wrote(n)
            metrics.ROWS_REMOVED.labels(cause="purge").inc(n)
            log.info("purged cluster data", extra={"event": _describe(barrier.event), "rows": n})
        self._ack([barrier.delivery], _event_type(barrier.event))

    def _housekeeping(self, *, caught_up: bool) -> None:
        self._collect_refresh()
        if self._refreshing is None and self.statistics.due(caught_up=caught_up):
            self._start_refresh()
        now = time.monotonic()
        if now >= self._next_depth:
            self._next_depth = now + _DEPTH_INTERVAL_SECONDS
            undelivered, pending = self.consumer.depth()
            metrics.QUEUE_UNDELIVERED.set(undelivered)
            metrics.QUEUE_PENDING.set(pending)
        if now >= self._next_gc:
            self._next_gc = now + self.cfg.tombstone_gc_interval_seconds
            cfg = self.cfg
            n = self._retrying(
                partial(
                    self.store.expire_events, cfg.event_retention_seconds, cfg.event_retention_per_cluster
                )
            )
            metrics.ROWS_REMOVED.labels(cause="event_retention").inc(n)
            self.statistics.wrote(n)
            if n:
                log.info("tombstoned events past retention", extra={"rows": n})
            n = self._retrying(partial(self.store.collect_tombstones, cfg.tombstone_ttl_seconds))
            metrics.ROWS_REMOVED.labels(cause="tombstone_gc").inc(n)
            self.statistics.wrote(n)
            if n:
                log.info("removed expired tombstones", extra={"rows": n})

    def _start_refresh(self) -> None:
        """Refresh the store's planner statistics in a thread of its own: the writes go on."""
        counted = self.statistics.started()

        def refresh() -> None:
            started = time.perf_counter()
            try:
                rows, error = self.store.refresh_statistics(), None
            except StorageError as exc:  # e.g. a database user who may not ANALYZE: queries still work
                rows, error = None, exc
            except Exception as exc:
                rows, error = None, StorageError(f"{type(exc).__name__}: {exc}")
            self._refreshed = (counted, rows, error, time.perf_counter() - started)

        self._refreshing = threading.Thread(target=refresh, name="writer-statistics", daemon=True)
        self._refreshing.start()

    def _collect_refresh(self) -> None:
        """Account for a refresh that has ended (in the writer's thread, as the policy is)."""
        done = self._refreshed
        if self._refreshing is None or done is None:
            return
        self._refreshing.join()
        self._refreshing = self._refreshed = None
        counted, rows, error, seconds = done
        if error is not None:
            self.statistics.failed(counted)
            metrics.STATISTICS_REFRESHES.labels(outcome="failed").inc()
            log.warning("refreshing the store's planner statistics failed: %s", error)
            return
        self.statistics.refreshed(rows, counted)
        metrics.STATISTICS_REFRESHES.labels(outcome="kept_by_store" if rows is None else "refreshed").inc()
        if rows is not None:
            log.info("planner statistics refreshed", extra={"rows": rows, "seconds": round(seconds, 3)})

    def stop_refresh(self, timeout_seconds: float) -> None:
        """Wait for a running refresh (at most ``timeout_seconds``) before the store is closed."""
        if self._refreshing is not None:
            self._refreshing.join(timeout_seconds)

    # -- plumbing
    def consumer_ack(self, deliveries: Sequence[Delivery]) -> None:
        self._retrying(lambda: self.consumer.ack(deliveries))

    def _ack(self, deliveries: Sequence[Delivery], kind: str) -> None:
        self.consumer_ack(deliveries)
        metrics.EVENTS_APPLIED.labels(type=kind).inc(len(deliveries))

    def _retrying(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` until it succeeds, backing off on errors of the store or the queue.

        Data the store rejects (``_REJECTED``) propagates at once; a stop request while backing off
        raises ``_Stopped`` (the step stays unacked)."""
        delay = 0.05
        while True:
            try:
                result = fn()
                if self._failing:
                    self._failing = False
                    HEALTH.set_ready(self._component, True)
                return result
            except _REJECTED:
                raise
            except _TRANSIENT as exc:
                metrics.RETRIES.labels(cause=type(exc).__name__).inc()
                log.warning("store or queue error, retrying in %.2fs: %s", delay, exc)
                if delay >= 1.0 and not self._failing:  # not a passing deadlock: report it
                    self._failing = True
                    HEALTH.set_ready(self._component, False, f"{type(exc).__name__}: {exc}"[:200])
            if self.stop.wait(delay):
                raise _Stopped
            delay = min(delay * 2, self.cfg.retry_max_seconds)


def _describe(event: Event) -> str:
    parts = [type(event).__name__, event.cluster]
    for attr in ("group", "resource", "namespace", "name", "resource_version", "epoch"):
        value = getattr(event, attr, None)
        if value not in (None, ""):
            parts.append(f"{attr}={value}")
    return " ".join(str(p) for p in parts)


def _until_ready(what: str, fn: Callable[[], T], stop: threading.Event, max_delay: float) -> T | None:
    """Call ``fn`` until it succeeds (the store or Redis may start after the writer); None on stop.

    Writers starting together may also race on creating the schema: a retry sees the tables."""
    component = threading.current_thread().name
    delay = 0.2
    while not stop.is_set():
        try:
            result = fn()
            HEALTH.set_ready(component, True)
            return result
        except _TRANSIENT as exc:
            log.warning("%s failed, retrying in %.1fs: %s", what, delay, exc)
            HEALTH.set_ready(component, False, f"{what}: {type(exc).__name__}")
        stop.wait(delay)
        delay = min(delay * 2, max_delay)
    return None


def _migrate(store: Store) -> bool:
    store.migrate()
    return True


def run_writer(
    settings: Settings,
    stop_event: threading.Event,
    *,
    consumer: Consumer | None = None,
    store: Store | None = None,
) -> None:
    """Run one writer until ``stop_event`` is set (the current batch is finished first).

    ``consumer`` / ``store`` default to ones opened from ``settings.queue`` / ``settings.storage``
    (and closed on return); tests and embedders may pass their own. The store and the queue may
    come up after the writer: it waits for them (not ready meanwhile)."""
    own_store = store is None
    st = store if store is not None else open_store(settings.storage, _store_options(settings))
    cons: Consumer | None = consumer
    max_delay = settings.writer.retry_max_seconds
    try:
        if _until_ready("creating the schema", partial(_migrate, st), stop_event, max_delay) is None:
            return
        if cons is None:
            connect = partial(open_consumer, settings.queue, settings)
            cons = _until_ready("connecting to the queue", connect, stop_event, max_delay)
            if cons is None:
                return
        writer = Writer(settings, cons, st, stop_event, name=st.name)
        try:
            writer.run()
        finally:
            writer.stop_refresh(_REFRESH_STOP_SECONDS)
    finally:
        if consumer is None and cons is not None:
            cons.close()
        if own_store:
            st.close()


def _store_options(settings: Settings) -> StoreOptions:
    return StoreOptions(chunk_rows=settings.writer.purge_chunk_rows)
