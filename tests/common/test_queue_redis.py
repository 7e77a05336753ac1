"""The Redis streams queue against a real Redis: delivery, reclaim, barriers, bounds, resets.

Each test uses its own stream key in the module's Redis database. The restart tests start a
throw-away ``redis-server`` of their own (no persistence), since restarting the shared one would
disturb other tests.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from common.events import Event, ListDone, Upsert
from common.queue import QueueReset
from common.queue.redis_streams import GROUP, RedisConsumer, RedisPublisher, split_url
from tests.common.redis_server import ThrowawayRedis


def ev(i: int) -> Upsert:
    return Upsert("c", "", "v1", "pods", "Pod", "ns", f"p{i}", "u", i, 1, "", "", b'{"i":%d}' % i)


@pytest.fixture
def url(redis_url: str) -> str:
    return f"{redis_url}?stream=test-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def raw(url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(split_url(url)[0])
    yield client
    client.close()


def publish(url: str, events: list[Event], max_len: int = 100_000) -> None:
    async def go() -> None:
        pub = RedisPublisher(url, max_len=max_len)
        try:
            await pub.publish(events)
        finally:
            await pub.close()

    asyncio.run(go())


def consumer(url: str, name: str, reclaim: float = 60.0) -> RedisConsumer:
    return RedisConsumer(url, name, reclaim_idle_seconds=reclaim)


def test_order_ack_depth_and_trim(url: str, raw: redis.Redis) -> None:
    publish(url, [ev(i) for i in range(10)])
    c = consumer(url, "w1")
    assert c.depth() == (10, 0)
    got = c.read(4, 0) + c.read(100, 0.1)
    assert [d.event for d in got] == [ev(i) for i in range(10)]
    assert c.depth() == (0, 10)
    assert c.read(10, 0.05) == []
    c.ack(got)
    assert c.depth() == (0, 0)
    assert raw.xlen(split_url(url)[1]) <= 1  # processed entries are trimmed
    c.close()


def test_restarted_consumer_rereads_its_pending_entries_first(url: str) -> None:
    publish(url, [ev(i) for i in range(6)])
    first = consumer(url, "w1")
    held = first.read(4, 0)
    first.ack(held[:1])
    first.close()
    again = consumer(url, "w1")
    redelivered = again.read(2, 0) + again.read(2, 0)
    assert [d.entry_id for d in redelivered] == [d.entry_id for d in held[1:]]
    assert [d.event for d in again.read(10, 0)] == [ev(4), ev(5)]
    assert consumer(url, "w2").read(10, 0.05) == []  # not idle long enough to be reclaimed
    again.close()


def test_a_publisher_appends_with_its_checks_while_the_backlog_has_room(url: str, raw: redis.Redis) -> None:
    """One round trip per publish while the writers keep up; from half of ``max_len`` on the checks
    come first again, so back-pressure (tested below) still sees the backlog before appending."""
    stream = split_url(url)[1]
    c = consumer(url, "w")
    commands: list[int] = []

    async def scenario() -> None:
        pub = RedisPublisher(url, max_len=10)
        real = pub._r.pipeline

        def counting(*args: Any, **kwargs: Any) -> Any:
            commands.append(1)
            return real(*args, **kwargs)

        pub._r.pipeline = counting  # type: ignore[method-assign]
        try:
            await pub.publish([ev(0)])  # the first publish learns the backlog: two round trips
            assert len(commands) == 2
            for i in range(1, 4):
                await pub.publish([ev(i)])  # backlog 1..3 of 10: room, one round trip each
            assert len(commands) == 5
            await pub.publish([ev(4), ev(5)])  # 4 + 2 = 6 >= 5: appended, and no room after it
            assert len(commands) == 6
            await pub.publish([ev(6)])  # checks first again
            assert len(commands) == 8
        finally:
            await pub.close()

    asyncio.run(scenario())
    assert [d.event for d in c.read(100, 0.1)] == [ev(i) for i in range(7)]
    assert raw.xlen(stream) == 7
    c.close()


def test_drained_says_whether_a_read_took_every_new_entry(url: str) -> None:
    publish(url, [ev(i) for i in range(5)])
    first = consumer(url, "w1")
    assert len(first.read(3, 0)) == 3
    assert not first.drained()  # as many as asked: more may be there
    assert len(first.read(3, 0)) == 2
    assert first.drained()  # fewer than asked: the queue had no more new entries then
    first.close()
    publish(url, [ev(9)])
    again = consumer(url, "w1")  # restarted: its own five unacked entries come first
    own = again.read(10, 0)
    assert [d.event for d in own] == [ev(i) for i in range(5)]
    assert not again.drained()  # the new entry is still there
    assert [d.event for d in again.read(10, 0)] == [ev(9)]
    assert again.drained()
    assert again.read(10, 0) == [] and again.drained()
    again.close()


def test_entries_pending_on_a_dead_consumer_are_reclaimed(url: str) -> None:
    publish(url, [ev(i) for i in range(3)])
    dead = consumer(url, "dead")
    held = dead.read(10, 0)
    alive = consumer(url, "alive", reclaim=0.3)
    got = []
    deadline = time.monotonic() + 10
    while len(got) < 3 and time.monotonic() < deadline:
        got += alive.read(10, 0.1)
    assert [d.entry_id for d in got] == [d.entry_id for d in held]
    alive.ack(got)
    assert alive.depth() == (0, 0)


def test_all_acked_before(url: str) -> None:
    publish(url, [ev(1), ev(2), ListDone("c", "", "v1", "pods", 1), ev(3)])
    a, b = consumer(url, "a"), consumer(url, "b")
    first = a.read(1, 0)
    rest = b.read(10, 0)
    barrier = rest[1]
    assert isinstance(barrier.event, ListDone)
    assert not b.all_acked_before(barrier)
    b.ack(rest[:1])
    assert not b.all_acked_before(barrier)  # ev(1) is still pending on a
    a.ack(first)
    assert b.all_acked_before(barrier)
    assert not b.all_acked_before(rest[2])  # the barrier itself is still pending


def test_barrier_is_not_passed_while_older_entries_are_undelivered(url: str) -> None:
    publish(url, [ev(1), ListDone("c", "", "v1", "pods", 1)])
    c = consumer(url, "a")
    both = c.read(10, 0)
    # A delivery the group has not reached yet (a later id) cannot be "all acked before".
    publish(url, [ev(2), ev(3)])
    c.ack(both)
    ahead = c.read(1, 0)
    fake_later = type(ahead[0])(f"{int(ahead[0].entry_id.split('-')[0]) + 10_000}-0", ev(9))
    assert not c.all_acked_before(fake_later)


def test_back_pressure_waits_and_drops_nothing(url: str, raw: redis.Redis) -> None:
    total, bound = 300, 20
    stream = split_url(url)[1]  # unprocessed = the group's lag + pending
    got: list[int] = []
    seen_max = 0
    c = consumer(url, "w")
    bound_hit = threading.Event()

    def drain() -> None:
        bound_hit.wait(30)  # the publisher hits the bound first
        while len(got) < total:
            batch = c.read(7, 1.0)
            c.ack(batch)
            got.extend(d.event.resource_version for d in batch)  # type: ignore[union-attr]

    async def produce() -> None:
        nonlocal seen_max
        pub = RedisPublisher(url, max_len=bound)
        try:
            for i in range(0, total, 10):
                await pub.publish([ev(j) for j in range(i, i + 10)])
                group = raw.xinfo_groups(stream)[0]
                seen_max = max(seen_max, group["lag"] + group["pending"])
                if seen_max >= bound:
                    bound_hit.set()
        finally:
            bound_hit.set()
            await pub.close()

    t = threading.Thread(target=drain)
    t.start()
    asyncio.run(produce())
    t.join(30)
    assert got == list(range(total))
    assert bound <= seen_max <= bound + 10  # it hit the bound, and overshot by one batch at most


def test_trimming_never_removes_unacked_entries(url: str, raw: redis.Redis) -> None:
    stream = split_url(url)[1]
    publish(url, [ev(i) for i in range(20)])
    slow, fast = consumer(url, "slow"), consumer(url, "fast")
    held = slow.read(5, 0)  # pending, not acked
    done = fast.read(10, 0)
    fast.ack(done)  # trims: only what is before the oldest pending entry may go
    ids = {e[0].decode() for e in raw.xrange(stream)}
    assert {d.entry_id for d in held} <= ids
    assert len(ids) >= 20 - 10  # the 5 undelivered entries and the 5 pending ones are kept
    slow.close()
    restarted = consumer(url, "slow")  # the pending entries still carry their data
    assert [d.event for d in restarted.read(10, 0)] == [d.event for d in held]
    rest = restarted.read(10, 0)
    assert [d.event for d in rest] == [ev(i) for i in range(15, 20)]
    restarted.ack(held + rest)
    assert raw.xlen(stream) <= 1


def test_lost_stream_is_recreated_and_publishers_told(url: str, raw: redis.Redis) -> None:
    stream = split_url(url)[1]
    c = consumer(url, "w")

    async def scenario() -> None:
        pub = RedisPublisher(url)
        try:
            await pub.publish([ev(1)])
            assert len(c.read(10, 0)) == 1
            raw.delete(stream)  # the stream and its group are gone
            assert c.read(10, 0.05) == []  # NOGROUP: the group is recreated
            assert c.generation == 1
            with pytest.raises(QueueReset):
                await pub.publish([ev(2)])
            await pub.publish([ev(3)])
        finally:
            await pub.close()

    asyncio.run(scenario())
    got = c.read(10, 0.5)
    # The publish that noticed the reset appended in the same round trip (the backlog had room):
    # its entry is in the new stream, harmless since writes are guarded, and the relist that
    # QueueReset starts sends everything again.
    assert [d.event for d in got] == [ev(2), ev(3)]
    c.ack(got)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[ThrowawayRedis]:
    server = ThrowawayRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.proc.stop()


def test_restart_without_persistence_resets_publisher_and_consumer(own_redis: ThrowawayRedis) -> None:
    url = own_redis.url
    c = consumer(url, "w")

    async def scenario() -> None:
        pub = RedisPublisher(url)
        try:
            await pub.publish([ev(1)])
            assert len(c.read(10, 0.2)) == 1
            own_redis.restart()  # everything queued is gone
            with pytest.raises(QueueReset):
                for _ in range(20):  # the first attempts may meet the closed connection
                    try:
                        await pub.publish([])  # an idle publisher's probe notices it too
                    except redis.ConnectionError:
                        await asyncio.sleep(0.1)
            await pub.publish([ev(3)])  # once: then it publishes again
        finally:
            await pub.close()

    asyncio.run(scenario())
    got: list[Event] = []
    for _ in range(20):
        try:
            got += [d.event for d in c.read(10, 0.1)]
        except redis.ConnectionError:
            continue
        if got:
            break
    assert got == [ev(3)]
    assert c.generation == 1
    c.close()


def test_flushall_resets_consumer_and_publisher(own_redis: ThrowawayRedis) -> None:
    url = own_redis.url
    c = consumer(url, "w")
    admin = redis.Redis(port=own_redis.port)

    async def scenario() -> None:
        pub = RedisPublisher(url)
        try:
            await pub.publish([ev(1)])
            assert len(c.read(10, 0)) == 1
            admin.flushall()
            assert c.read(10, 0.05) == []  # a new incarnation: the group is recreated
            assert c.generation == 1
            with pytest.raises(QueueReset):
                await pub.publish([ev(2)])
            await pub.publish([ev(3)])
        finally:
            await pub.close()

    asyncio.run(scenario())
    assert [d.event for d in c.read(10, 0.5)] == [ev(2), ev(3)]  # as in the test above
    assert admin.xinfo_groups(split_url(url)[1])[0]["name"] == GROUP.encode()
    admin.close()
    c.close()


def test_oldest_unacked_is_the_oldest_pending_or_undelivered_entry(url: str) -> None:
    async def go() -> None:
        pub = RedisPublisher(url)
        try:
            assert await pub.oldest_unacked() is None  # no stream yet
            before = time.time()
            last = await pub.publish([ev(i) for i in range(3)])
            c = consumer(url, "w1")
            try:
                first, second = c.read(2, 0)
                assert last is not None and last > second.entry_id
                oldest = await pub.oldest_unacked()
                assert oldest is not None and oldest.entry_id == first.entry_id
                assert before - 1 <= oldest.queued_at <= time.time() + 1  # Redis's clock, the same host
                c.ack([first])
                assert (await pub.oldest_unacked()).entry_id == second.entry_id  # type: ignore[union-attr]
                c.ack([second])
                assert (await pub.oldest_unacked()).entry_id == last  # type: ignore[union-attr]
                c.ack(c.read(10, 0))
                assert await pub.oldest_unacked() is None
            finally:
                c.close()
        finally:
            await pub.close()

    asyncio.run(go())
