"""One batching funnel from every sync task of a worker into the queue's Publisher.

Sync tasks ``put`` events into a bounded asyncio queue (back-pressure: a fast list waits for the
queue instead of buffering a cluster in memory); one task drains it in batches of up to
``publish_batch_max_events`` and appends them to the queue, keeping their order. When the queue
reports :class:`QueueReset` (it lost accepted entries), ``on_reset`` is called: every cluster then
relists under a new epoch, which repairs whatever was lost -- except a purge: a relist cannot bring
back the PurgeCluster of a deleted PediaCluster (its finalizer is already gone) or of a resource
dropped from the spec. So the funnel remembers the purges it handed over recently and publishes
them again, with the ones of the dropped batch, right after every reset (a purge is idempotent).

Lag: the funnel remembers, per cluster, the queue id of the last event it appended and when it
first appended one that may still be unacked. Every ``backlog_interval_seconds`` (while anything
is unconfirmed) it asks the queue for its oldest unacked entry: a cluster whose last event is older
than that entry is fully stored; otherwise its oldest event not yet stored was queued at the later
of the two times (``unapplied_since``), which the cluster's status reports (``synchro/status.py``)
and the API tier turns into a freshness warning past its threshold. One small queue request per
interval per synchro process, whatever the number of clusters.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from common.events import Event, PurgeCluster
from common.queue import entry_order
from common.queue.base import Publisher, QueueReset

log = logging.getLogger(__name__)


class EventFunnel:
    def __init__(
        self,
        publisher: Publisher,
        *,
        batch_max_events: int = 500,
        on_reset: Callable[[], None] | None = None,
        idle_probe_seconds: float = 5.0,
        purge_memory_seconds: float = 600.0,
        purge_memory_max: int = 1024,
        backlog_interval_seconds: float = 1.0,
    ) -> None:
        self._publisher = publisher
        self._batch_max = max(1, batch_max_events)
        self._queue: asyncio.Queue[Event | asyncio.Future[None]] = asyncio.Queue(maxsize=self._batch_max * 4)
        self._on_reset = on_reset
        self._idle_probe_seconds = idle_probe_seconds
        self.published = 0
        self._purge_memory_seconds = purge_memory_seconds
        self._purge_memory_max = max(1, purge_memory_max)
        self._recent_purges: dict[PurgeCluster, float] = {}
        """Purges handed to the queue lately -> when (monotonic); insertion ordered."""
        self._backlog_interval = backlog_interval_seconds
        self._unconfirmed: dict[str, tuple[float, tuple[int, int]]] = {}
        """cluster -> (when it first appended an event that may be unacked (Unix seconds), the
        queue order of its last appended event)."""
        self._unapplied_since: dict[str, float] = {}
        """cluster -> when its oldest event not yet stored was queued (Unix seconds)."""

    async def put(self, event: Event) -> None:
        await self._queue.put(event)

    async def drained(self) -> None:
        """Wait until everything put so far has been handed to the queue (a marker travels
        through the funnel: later puts by other clusters do not delay it)."""
        marker: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self._queue.put(marker)
        await marker

    async def run(self) -> None:
        """Drain forever (cancel to stop). Transient publish errors are retried; nothing is dropped
        except on QueueReset, where the relist that follows re-emits everything."""
        backlog = asyncio.create_task(self._watch_backlog(), name="funnel-backlog")
        try:
            await self._drain()
        finally:
            backlog.cancel()

    def unapplied_since(self, cluster: str) -> float | None:
        """When ``cluster``'s oldest event that no writer has stored yet was queued (Unix seconds);
        None when all of them are stored (as of the last backlog check)."""
        return self._unapplied_since.get(cluster)

    async def _watch_backlog(self) -> None:
        while True:
            await asyncio.sleep(self._backlog_interval)
            if not self._unconfirmed:
                continue
            try:
                await self.check_backlog()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the queue is down: publishing reports it; keep the last figures
                log.debug("reading the queue's backlog failed: %s", exc)

    async def check_backlog(self) -> None:
        """Ask the queue for its oldest unacked entry and update ``unapplied_since``."""
        oldest = await self._publisher.oldest_unacked()
        floor = entry_order(oldest.entry_id) if oldest is not None else None
        for cluster, (first_at, last) in list(self._unconfirmed.items()):
            if oldest is None or floor is None or last < floor:
                del self._unconfirmed[cluster]
                self._unapplied_since.pop(cluster, None)
            else:
                self._unapplied_since[cluster] = max(first_at, oldest.queued_at)

    async def _drain(self) -> None:
        queue = self._queue
        while True:
            batch: list[Event] = []
            markers: list[asyncio.Future[None]] = []
            try:
                item = await asyncio.wait_for(queue.get(), self._idle_probe_seconds)
            except TimeoutError:
                # Idle: an empty publish lets the queue report a reset (lost entries) anyway.
                await self._publish([])
                continue
            while True:
                if isinstance(item, asyncio.Future):
                    markers.append(item)
                    break  # publish what precedes the marker, then release it
                batch.append(item)
                if len(batch) >= self._batch_max or queue.empty():
                    break
                item = queue.get_nowait()
            if batch:
                await self._publish(batch)
            for marker in markers:
                if not marker.done():
                    marker.set_result(None)

    async def _publish(self, batch: list[Event]) -> None:
        delay = 0.2
        while True:
            try:
                last = await self._publisher.publish(batch)
                if last is not None:
                    self._appended(batch, entry_order(last))
                self.published += len(batch)
                self._remember_purges(batch)
                return
            except QueueReset:
                log.warning("queue lost entries: every cluster relists")
                if self._on_reset is not None:
                    self._on_reset()
                batch = self._purges_to_resend(batch)
                if not batch:
                    return
                log.warning("re-publishing %d purge(s) the reset may have lost", len(batch))
                delay = 0.2
                continue
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("publishing %d events failed; retrying", len(batch))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _appended(self, batch: list[Event], last: tuple[int, int]) -> None:
        now = time.time()
        for cluster in {event.cluster for event in batch}:
            first_at = self._unconfirmed.get(cluster, (now, last))[0]
            self._unconfirmed[cluster] = (first_at, last)

    def _remember_purges(self, batch: list[Event]) -> None:
        now = time.monotonic()
        recent = self._recent_purges
        for event in batch:
            if isinstance(event, PurgeCluster):
                recent.pop(event, None)
                recent[event] = now
        horizon = now - self._purge_memory_seconds
        for event, at in list(recent.items()):
            if at >= horizon and len(recent) <= self._purge_memory_max:
                break
            del recent[event]

    def _purges_to_resend(self, dropped: list[Event]) -> list[Event]:
        """Recent purges (the queue may have lost them) plus those of the dropped batch, in order."""
        horizon = time.monotonic() - self._purge_memory_seconds
        out: dict[PurgeCluster, None] = {e: None for e, at in self._recent_purges.items() if at >= horizon}
        for event in dropped:
            if isinstance(event, PurgeCluster):
                out.pop(event, None)
                out[event] = None
        return list(out)
