"""The in-process queue (embedded mode): the same delivery guarantees the writers get from Redis."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from common.events import ListDone, Upsert
from common.queue import open_consumer, open_publisher
from common.queue.memory import MemoryQueue
from common.settings import Settings


def ev(i: int) -> Upsert:
    return Upsert("c", "", "v1", "pods", "Pod", "ns", f"p{i}", "u", i, 1, "", "", b"{}")


def publish(queue: MemoryQueue, events: list) -> None:  # type: ignore[type-arg]
    asyncio.run(queue.publisher().publish(events))


def test_entries_arrive_in_order_with_increasing_ids() -> None:
    q = MemoryQueue(100)
    publish(q, [ev(i) for i in range(10)])
    c = q.consumer("w1")
    got = c.read(4, 0) + c.read(100, 0)
    assert [d.event for d in got] == [ev(i) for i in range(10)]
    ids = [int(d.entry_id) for d in got]
    assert ids == sorted(ids) and len(set(ids)) == 10
    assert c.read(10, 0.05) == []
    assert c.depth() == (0, 10)
    c.ack(got)
    assert c.depth() == (0, 0)


def test_restarted_consumer_gets_its_pending_entries_first() -> None:
    q = MemoryQueue(100, reclaim_idle_seconds=60)
    publish(q, [ev(i) for i in range(6)])
    first = q.consumer("w1")
    held = first.read(4, 0)
    first.ack(held[:1])
    # "w1" restarts: a new consumer with the same name
    again = q.consumer("w1")
    redelivered = again.read(2, 0) + again.read(2, 0)
    assert [d.entry_id for d in redelivered] == [d.entry_id for d in held[1:4]]
    assert [d.event for d in again.read(10, 0)] == [ev(4), ev(5)]
    # another consumer does not get w1's pending entries before they are idle long enough
    assert q.consumer("w2").read(10, 0.05) == []


def test_entries_idle_on_a_dead_consumer_are_reclaimed() -> None:
    q = MemoryQueue(100, reclaim_idle_seconds=0.2)
    publish(q, [ev(i) for i in range(3)])
    dead = q.consumer("dead")
    held = dead.read(10, 0)
    other = q.consumer("alive")
    start = time.monotonic()
    reclaimed = other.read(10, 2.0)  # blocks until they are idle long enough
    assert time.monotonic() - start >= 0.15
    assert [d.entry_id for d in reclaimed] == [d.entry_id for d in held]
    other.ack(reclaimed)
    assert q.depth() == (0, 0)


def test_all_acked_before_is_exact() -> None:
    q = MemoryQueue(100)
    publish(q, [ev(1), ev(2), ListDone("c", "", "v1", "pods", 1), ev(3)])
    a, b = q.consumer("a"), q.consumer("b")
    first = a.read(1, 0)
    rest = b.read(10, 0)
    barrier = rest[1]
    assert isinstance(barrier.event, ListDone)
    assert not b.all_acked_before(barrier)
    b.ack(rest[:1])
    assert not b.all_acked_before(barrier)  # ev(1) is still pending on a
    a.ack(first)
    assert b.all_acked_before(barrier)  # later entries (ev(3)) do not matter
    assert not b.all_acked_before(rest[2])  # the barrier itself is before ev(3)


def test_back_pressure_waits_without_blocking_the_loop_and_drops_nothing() -> None:
    q = MemoryQueue(10)
    consumer = q.consumer("w")
    total = 200
    got: list[int] = []

    async def produce() -> int:
        ticks = 0
        pub = q.publisher()
        done = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0.001)

        t = asyncio.create_task(ticker())
        for i in range(0, total, 5):
            await pub.publish([ev(j) for j in range(i, i + 5)])
            assert sum(q.depth()) <= 10 + 5  # the bound holds (a batch may overshoot it once)
        done.set()
        await t
        return ticks

    def consume() -> None:
        time.sleep(0.3)  # let the publisher hit the bound first
        while len(got) < total:
            batch = consumer.read(3, 1.0)
            time.sleep(0.001)
            consumer.ack(batch)
            got.extend(d.event.resource_version for d in batch)  # type: ignore[union-attr]

    t = threading.Thread(target=consume)
    t.start()
    ticks = asyncio.run(produce())
    t.join(10)
    assert got == list(range(total))
    assert ticks > 10  # the event loop kept running while the publisher waited


def test_factory_shares_one_queue_per_url_and_names_consumers_apart() -> None:
    settings = Settings(queue="memory://factory-test")
    asyncio.run(open_publisher(settings.queue, settings).publish([ev(1), ev(2)]))
    c1 = open_consumer(settings.queue, settings)
    c2 = open_consumer(settings)
    assert c1.name != c2.name  # type: ignore[attr-defined]
    assert [d.event for d in c1.read(1, 0) + c2.read(5, 0)] == [ev(1), ev(2)]


def test_object_bytes_are_bounded_too() -> None:
    q = MemoryQueue(1000, max_bytes=1000)
    big = [
        Upsert("c", "", "v1", "pods", "Pod", "ns", f"p{i}", "u", i, 1, "", "", b"x" * 300) for i in range(8)
    ]
    publish(q, big[:4])  # an empty queue takes a batch even over the bound

    async def second_batch(seconds: float) -> None:
        async with asyncio.timeout(seconds):
            await q.publisher().publish(big[4:])

    with pytest.raises(TimeoutError):
        asyncio.run(second_batch(0.3))  # waits for room
    assert q.depth() == (4, 0)  # nothing of the second batch went in
    c = q.consumer("w")
    threading.Timer(0.2, lambda: c.ack(c.read(10, 0))).start()
    asyncio.run(second_batch(5.0))
    assert [d.event for d in c.read(10, 0)] == big[4:]


def test_oldest_unacked_follows_acks() -> None:
    q = MemoryQueue(100)
    pub = q.publisher()
    assert asyncio.run(pub.oldest_unacked()) is None
    assert asyncio.run(pub.publish([])) is None
    before = time.time()
    last = asyncio.run(pub.publish([ev(i) for i in range(3)]))
    c = q.consumer("w1")
    first, second = c.read(2, 0)
    assert last is not None and int(last) == int(first.entry_id) + 2
    oldest = asyncio.run(pub.oldest_unacked())
    assert oldest is not None and oldest.entry_id == first.entry_id
    assert before <= oldest.queued_at <= time.time()
    c.ack([first])
    assert asyncio.run(pub.oldest_unacked()).entry_id == second.entry_id  # type: ignore[union-attr]
    c.ack([second])
    assert asyncio.run(pub.oldest_unacked()).entry_id == last  # type: ignore[union-attr]  # undelivered
    c.ack(c.read(10, 0))
    assert asyncio.run(pub.oldest_unacked()) is None
