"""Acceptance: two writers on one Redis stream never leave a stale or resurrected row.

A randomized history (fixed, printed seed) of creates, updates, deletes and re-creates of a few
keys, with increasing resourceVersions as a member cluster would produce them, is published
shuffled within small windows (the reordering two consumers of one stream see), with some late
duplicates of older events (re-deliveries). Two writers with their own consumers and connection
pools apply it in small batches; at the end the store holds exactly the last state of each key.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time

from common.events import Event
from common.queue import Delivery
from common.queue.redis_streams import RedisConsumer, RedisPublisher
from common.settings import Settings, WriterSettings
from writer.worker import run_writer

SEED = 20261125
KEYS = 30
OPS = 1200
WINDOW = 8


class CountingConsumer(RedisConsumer):
    """Counts what this writer was handed, to show both writers took part."""

    delivered = 0

    def read(self, max_events: int, block_seconds: float) -> list[Delivery]:
        out = super().read(max_events, block_seconds)
        self.delivered += len(out)
        return out


def history(objs, rng: random.Random) -> tuple[list[Event], dict[str, int]]:  # type: ignore[no-untyped-def]
    """Events in the order the member cluster produced them, and the final live name -> rv."""
    live: dict[str, int] = {}
    events: list[Event] = []
    rv = 100
    for _ in range(OPS):
        rv += rng.randint(1, 3)
        name = f"k{rng.randrange(KEYS)}"
        if name in live and rng.random() < 0.25:
            events.append(objs.delete(name, rv))
            del live[name]
        else:
            events.append(objs.upsert(name, rv, body=f'{{"rv":{rv}}}'))
            live[name] = rv
    return events, live


def reorder(events: list[Event], rng: random.Random) -> list[Event]:
    out: list[Event] = []
    for i in range(0, len(events), WINDOW):
        window = events[i : i + WINDOW]
        rng.shuffle(window)
        out.extend(window)
        if i and rng.random() < 0.3:  # a late duplicate of an older event
            out.append(events[rng.randrange(i)])
    # Finally a stale event of every key (a writer that was slow with its batch): none may win
    # over the key's last state, be it an update or a delete.
    tail = []
    for key in {e.name for e in events}:
        older = [e for e in events if e.name == key][:-1]
        if older:
            tail.append(rng.choice(older))
    rng.shuffle(tail)
    return out + tail


def test_two_writers_converge_to_the_last_state(store_url, redis_url, store, objs) -> None:
    rng = random.Random(SEED)
    print(f"seed={SEED}")
    events, expected = history(objs, rng)
    published = reorder(events, rng)
    url = f"{redis_url}?stream=concurrency-{objs.cluster}"
    settings = Settings(
        storage=store_url,
        queue=url,
        writer=WriterSettings(batch_max_events=25, batch_max_wait_seconds=0.01, barrier_retry_seconds=0.05),
    )
    stop = threading.Event()
    consumers = [CountingConsumer(url, f"writer-{i}") for i in range(2)]
    threads = [
        threading.Thread(target=run_writer, args=(settings, stop), kwargs={"consumer": c}) for c in consumers
    ]
    for t in threads:
        t.start()
    try:

        async def produce() -> None:
            pub = RedisPublisher(url)
            try:
                for i in range(0, len(published), 40):
                    await pub.publish(published[i : i + 40])
            finally:
                await pub.close()

        asyncio.run(produce())
        deadline = time.monotonic() + 60
        while consumers[0].depth() != (0, 0):
            assert time.monotonic() < deadline, f"queue not drained: {consumers[0].depth()}"
            time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join(20)
    assert not any(t.is_alive() for t in threads)
    live = store.live(objs.cluster)
    stale = {k: (v, expected.get(k)) for k, v in live.items() if expected.get(k) != v}
    missing = {k: v for k, v in expected.items() if k not in live}
    assert not stale and not missing, f"seed={SEED}: stale or resurrected {stale}, missing {missing}"
    # Both writers took part: each committed several batches (25 events each). How the stream splits
    # between two threads of one process depends on scheduling (under a loaded CI machine one got
    # under 10 % while the other converged the store), so the share itself is not asserted.
    batch = settings.writer.batch_max_events
    assert all(c.delivered >= 2 * batch for c in consumers), [c.delivered for c in consumers]
    for c in consumers:
        c.close()
