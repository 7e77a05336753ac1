"""How the writer gathers a batch (``writer.batching.gather``), on the real in-process queue.

Latency-first when idle: a batch is cut as soon as a read finds nothing more ready, however long
``max_wait_seconds`` is. Batch-first under load: it keeps growing while entries keep arriving,
up to ``max_events`` or the deadline. The deadline is tested with a counting clock, not with time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

from common.events import Event
from common.queue import Delivery
from common.queue.memory import MemoryConsumer, MemoryQueue
from tests.common.storage.events import Objects
from writer.batching import gather

HOUR = 3600.0


def publish(queue: MemoryQueue, events: list[Event]) -> None:
    asyncio.run(queue.publisher().publish(events))


def events(n: int, start: int = 0) -> list[Event]:
    objs = Objects("c1")
    return [objs.upsert(f"o{i}", i + 1) for i in range(start, start + n)]


class Reads:
    """The real consumer's ``read``, recording each call's (max_events, block_seconds) and what it
    returned; ``after_read`` runs after each read (entries arriving while the writer gathers)."""

    def __init__(self, consumer: MemoryConsumer, after_read: Callable[[int], None] = lambda n: None) -> None:
        self.consumer = consumer
        self.after_read = after_read
        self.calls: list[tuple[int, float, int]] = []

    def __call__(self, max_events: int, block_seconds: float) -> list[Delivery]:
        out = self.consumer.read(max_events, block_seconds)
        self.calls.append((max_events, block_seconds, len(out)))
        self.after_read(len(self.calls))
        return out


def counting_clock(step: float = 1.0) -> Callable[[], float]:
    ticks: Iterator[int] = iter(range(10**6))
    return lambda: next(ticks) * step


def test_a_lone_event_is_not_held_for_company() -> None:
    q = MemoryQueue()
    publish(q, events(1))
    consumer = q.consumer("w")
    reads = Reads(consumer)
    batch = gather(reads, block_seconds=0.5, max_events=100, max_wait_seconds=HOUR, drained=consumer.drained)
    assert len(batch) == 1
    # the first read may wait for an event; it emptied the queue, so nobody looks again
    assert reads.calls == [(100, 0.5, 1)]


def test_a_lone_event_is_followed_by_one_look_when_the_consumer_cannot_say_it_drained() -> None:
    q = MemoryQueue()
    publish(q, events(1))
    reads = Reads(q.consumer("w"))
    batch = gather(reads, block_seconds=0.5, max_events=100, max_wait_seconds=HOUR)
    assert len(batch) == 1
    # the next read only looks at what is there, and finds nothing
    assert reads.calls == [(100, 0.5, 1), (99, 0.0, 0)]


def test_a_lone_event_of_a_restarted_consumers_own_backlog_is_followed_by_new_ones() -> None:
    """Reading its own unacked entries first leaves new ones behind: not drained."""
    q = MemoryQueue()
    publish(q, events(1))
    assert len(q.consumer("w").read(10, 0.0)) == 1  # delivered, never acked: the writer died
    publish(q, events(2, start=10))
    again = q.consumer("w")  # restarted under the same name
    reads = Reads(again)
    batch = gather(reads, block_seconds=0.5, max_events=100, max_wait_seconds=HOUR, drained=again.drained)
    assert [n for _, _, n in reads.calls] == [1, 2, 0]
    assert len(batch) == 3


def test_what_is_ready_is_taken_up_to_max_events() -> None:
    q = MemoryQueue()
    publish(q, events(25))
    consumer = q.consumer("w")
    first = gather(Reads(consumer), block_seconds=0.5, max_events=10, max_wait_seconds=HOUR)
    assert [d.entry_id for d in first] == [str(i) for i in range(1, 11)]
    rest = gather(Reads(consumer), block_seconds=0.5, max_events=100, max_wait_seconds=HOUR)
    assert len(rest) == 15


def test_the_batch_grows_while_events_keep_coming() -> None:
    q = MemoryQueue()
    publish(q, events(2))

    def arrivals(read_number: int) -> None:  # three more after each of the first four reads
        if read_number <= 4:
            publish(q, events(3, start=100 * read_number))

    consumer = q.consumer("w")
    reads = Reads(consumer, arrivals)
    batch = gather(reads, block_seconds=0.5, max_events=1000, max_wait_seconds=HOUR, drained=consumer.drained)
    assert len(batch) == 2 + 4 * 3
    assert [n for _, _, n in reads.calls] == [2, 3, 3, 3, 3, 0]
    assert all(block == 0.0 for _, block, _ in reads.calls[1:])


def test_growing_stops_at_the_deadline() -> None:
    q = MemoryQueue()
    publish(q, events(1))
    reads = Reads(q.consumer("w"), lambda n: publish(q, events(1, start=n * 10)))
    # the clock moves one second per look; a batch may grow for 3.5 of them
    batch = gather(reads, block_seconds=0.5, max_events=1000, max_wait_seconds=3.5, clock=counting_clock())
    assert len(batch) == 4
    assert q.depth()[0] == 1  # what arrived after the deadline waits for the next batch


def test_nothing_to_read_is_an_empty_batch_after_one_read() -> None:
    q = MemoryQueue()
    reads = Reads(q.consumer("w"))
    assert gather(reads, block_seconds=0.0, max_events=10, max_wait_seconds=HOUR) == []
    assert reads.calls == [(10, 0.0, 0)]
