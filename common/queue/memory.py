"""In-process queue for the embedded all-in-one mode (no Redis on a laptop).

The synchro publishes from its asyncio loop, writer threads consume with blocking reads: one lock
and condition variable guard the state, and a publisher waiting for room parks on an asyncio
future that consumers resolve through ``call_soon_threadsafe`` (the event loop is never blocked).

It mirrors the Redis streams semantics the writer relies on: entry ids increase monotonically;
an entry stays pending on the consumer it was handed to until acked; a consumer created again
under the same name (a restarted writer thread) first gets its own pending entries back, and
entries idle on another consumer longer than ``reclaim_idle_seconds`` are taken over;
``all_acked_before`` is exact. The bound counts undelivered plus pending entries, like the Redis
publisher's back-pressure, plus a bound on the object bytes held (this queue is memory);
nothing is ever dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import threading
import time
from collections import deque
from collections.abc import Sequence

from common.events import Event, Upsert
from common.queue.base import Delivery, Oldest, QueueReset

__all__ = ["MemoryConsumer", "MemoryPublisher", "MemoryQueue", "QueueReset"]

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
"""Object bytes the in-process queue holds before publishers wait: with the entry bound alone, a
big initial list outrunning a SQLite writer could hold ``queue_max_len`` whole objects in memory."""


class _Pending:
    __slots__ = ("consumer", "delivered_at", "event")

    def __init__(self, consumer: str, event: Event, delivered_at: float) -> None:
        self.consumer = consumer
        self.event = event
        self.delivered_at = delivered_at


class MemoryQueue:
    """The shared state; hand out :meth:`publisher` and :meth:`consumer` views of it."""

    def __init__(
        self, max_len: int = 100_000, *, reclaim_idle_seconds: float = 5.0, max_bytes: int = DEFAULT_MAX_BYTES
    ) -> None:
        if max_len < 1 or max_bytes < 1:
            raise ValueError("max_len and max_bytes must be positive")
        self.max_len = max_len
        self.max_bytes = max_bytes
        self._bytes = 0  # object bytes of the unprocessed entries
        self.reclaim_idle_seconds = reclaim_idle_seconds
        self._cond = threading.Condition()
        self._next_id = 1
        self._undelivered: deque[tuple[int, Event]] = deque()
        self._pending: dict[int, _Pending] = {}
        self._unacked_heap: list[int] = []  # min-heap of unacked ids, lazily cleaned on ack
        self._acked_ids: set[int] = set()  # acked ids still present in the heap
        self._queued_at: dict[int, float] = {}  # unacked id -> when appended (time.time())
        self._space_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    # -- views
    def publisher(self) -> MemoryPublisher:
        return MemoryPublisher(self)

    def consumer(self, name: str) -> MemoryConsumer:
        return MemoryConsumer(self, name)

    # -- state operations (called by the views)
    def _unprocessed(self) -> int:
        return len(self._undelivered) + len(self._pending)

    def _full(self) -> bool:
        # Caller holds the lock. An empty queue always takes a batch, however large.
        count = self._unprocessed()
        return count > 0 and (count >= self.max_len or self._bytes >= self.max_bytes)

    def _append(self, events: Sequence[Event]) -> int:
        """Append; the id of the last event."""
        with self._cond:
            now = time.time()
            for event in events:
                entry = self._next_id
                self._next_id += 1
                self._undelivered.append((entry, event))
                self._bytes += _size(event)
                heapq.heappush(self._unacked_heap, entry)
                self._queued_at[entry] = now
            self._cond.notify_all()
            return self._next_id - 1

    def _oldest_unacked(self) -> Oldest | None:
        with self._cond:
            if not self._unacked_heap:
                return None
            entry = self._unacked_heap[0]
            return Oldest(str(entry), self._queued_at.get(entry, 0.0))

    def _add_space_waiter(self, loop: asyncio.AbstractEventLoop, fut: asyncio.Future[None]) -> bool:
        """Register a publisher waiting for room; False when there is room already."""
        with self._cond:
            if not self._full():
                return False
            self._space_waiters.append((loop, fut))
            return True

    def _wake_space_waiters(self) -> None:
        # Caller holds the lock.
        if not self._space_waiters or self._full():
            return
        waiters, self._space_waiters = self._space_waiters, []
        for loop, fut in waiters:
            if fut.done():
                continue  # that publisher stopped waiting (timeout, cancelled)
            with contextlib.suppress(RuntimeError):  # its event loop is closed
                loop.call_soon_threadsafe(_resolve, fut)

    def _own_pending(self, consumer: str, after: int, max_events: int) -> list[Delivery]:
        with self._cond:
            now = time.monotonic()
            out: list[Delivery] = []
            for entry in sorted(e for e, p in self._pending.items() if p.consumer == consumer and e > after):
                if len(out) >= max_events:
                    break
                self._pending[entry].delivered_at = now
                out.append(Delivery(str(entry), self._pending[entry].event))
            return out

    def _read(self, consumer: str, max_events: int, block_seconds: float) -> list[Delivery]:
        deadline = time.monotonic() + block_seconds
        with self._cond:
            while True:
                now = time.monotonic()
                out: list[Delivery] = []
                idle_before = now - self.reclaim_idle_seconds
                for entry in sorted(self._pending):
                    if len(out) >= max_events:
                        break
                    p = self._pending[entry]
                    if p.consumer != consumer and p.delivered_at <= idle_before:
                        p.consumer, p.delivered_at = consumer, now
                        out.append(Delivery(str(entry), p.event))
                while self._undelivered and len(out) < max_events:
                    entry, event = self._undelivered.popleft()
                    self._pending[entry] = _Pending(consumer, event, now)
                    out.append(Delivery(str(entry), event))
                if out:
                    return out
                remaining = deadline - now
                if remaining <= 0:
                    return []
                # Wake up in time to notice entries becoming idle on a dead consumer.
                self._cond.wait(min(remaining, max(self.reclaim_idle_seconds / 2, 0.05)))

    def _ack(self, entries: Sequence[int]) -> None:
        with self._cond:
            for entry in entries:
                done = self._pending.pop(entry, None)
                if done is not None:
                    self._acked_ids.add(entry)
                    self._queued_at.pop(entry, None)
                    self._bytes -= _size(done.event)
            heap = self._unacked_heap
            while heap and heap[0] in self._acked_ids:
                self._acked_ids.discard(heapq.heappop(heap))
            self._wake_space_waiters()
            self._cond.notify_all()

    def _all_acked_before(self, entry: int) -> bool:
        with self._cond:
            heap = self._unacked_heap
            return not heap or heap[0] >= entry

    def depth(self) -> tuple[int, int]:
        with self._cond:
            return len(self._undelivered), len(self._pending)


def _size(event: Event) -> int:
    return len(event.object) if isinstance(event, Upsert) else 0


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class MemoryPublisher:
    def __init__(self, queue: MemoryQueue) -> None:
        self._queue = queue

    async def publish(self, events: Sequence[Event]) -> str | None:
        if not events:
            return None
        loop = asyncio.get_running_loop()
        while True:
            fut: asyncio.Future[None] = loop.create_future()
            if not self._queue._add_space_waiter(loop, fut):
                break
            # A bounded wait as well: a consumer acking on another loop/thread wakes us, but a
            # timeout keeps a lost wake-up from ever stalling the publisher.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(fut, timeout=1.0)
        return str(self._queue._append(events))

    async def oldest_unacked(self) -> Oldest | None:
        return self._queue._oldest_unacked()

    async def close(self) -> None:
        return None


class MemoryConsumer:
    def __init__(self, queue: MemoryQueue, name: str) -> None:
        self._queue = queue
        self.name = name
        self._own_cursor: int | None = 0  # a (re)started consumer first gets back what it held
        self.generation = 0
        """Bumped when the queue lost entries (never, in memory); see the Redis consumer."""
        self._drained = False

    def read(self, max_events: int, block_seconds: float) -> list[Delivery]:
        self._drained = False
        if self._own_cursor is not None:
            own = self._queue._own_pending(self.name, self._own_cursor, max_events)
            self._own_cursor = int(own[-1].entry_id) if len(own) >= max_events else None
            if own:
                return own
        out = self._queue._read(self.name, max_events, block_seconds)
        self._drained = len(out) < max_events
        return out

    def drained(self) -> bool:
        return self._drained

    def ack(self, deliveries: Sequence[Delivery]) -> None:
        self._queue._ack([int(d.entry_id) for d in deliveries])

    def all_acked_before(self, delivery: Delivery) -> bool:
        return self._queue._all_acked_before(int(delivery.entry_id))

    def depth(self) -> tuple[int, int]:
        return self._queue.depth()

    def close(self) -> None:
        return None
