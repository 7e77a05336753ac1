"""The writer loop on each store with the in-process queue: batches, acks, barriers, bad input."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from prometheus_client import REGISTRY

from common.events import Event, PurgeCluster
from common.queue.memory import MemoryQueue
from common.queue.redis_streams import RedisPublisher
from common.settings import Settings, WriterSettings
from tests.common.redis_server import ThrowawayRedis
from tests.common.storage.test_event_retention import Events
from writer.analyzing import MIN_ROWS
from writer.worker import run_writer


def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def barrier_waits() -> float:
    return REGISTRY.get_sample_value("clusterpedia_writer_barrier_waits_total") or 0.0


def settings_for(store_url: str, **writer: object) -> Settings:
    return Settings(storage=store_url, writer=WriterSettings(**writer))  # type: ignore[arg-type]


@contextmanager
def writer_thread(settings: Settings, queue: MemoryQueue, name: str = "w1") -> Iterator[threading.Thread]:
    stop = threading.Event()
    t = threading.Thread(target=run_writer, args=(settings, stop), kwargs={"consumer": queue.consumer(name)})
    t.start()
    try:
        yield t
    finally:
        stop.set()
        t.join(15)
        assert not t.is_alive(), "writer did not stop"


def publish(queue: MemoryQueue, *events: Event) -> None:
    asyncio.run(queue.publisher().publish(list(events)))


def test_writer_applies_and_acks_batches(store_url, store, objs) -> None:
    q = MemoryQueue(1000)
    with writer_thread(settings_for(store_url, batch_max_events=50), q):
        for i in range(0, 300, 30):
            publish(q, *[objs.upsert(f"o{j}", j + 1) for j in range(i, i + 30)])
        publish(q, objs.delete("o7", 1000), objs.upsert("o8", 1001))
        eventually(lambda: q.depth() == (0, 0) and len(store.live(objs.cluster)) == 299)
    live = store.live(objs.cluster)
    assert "o7" not in live and live["o8"] == 1001 and live["o9"] == 10


def test_barrier_waits_for_earlier_entries_but_later_ones_go_on(store_url, store, objs) -> None:
    # The dead writer's entry must still be pending while the checks below run (a new writer
    # thread first creates the schema again, which takes a while on MariaDB): reclaim after 6 s.
    q = MemoryQueue(1000, reclaim_idle_seconds=6.0)
    settings = settings_for(store_url, barrier_retry_seconds=0.05)
    with writer_thread(settings, q):
        publish(q, objs.upsert("a", 1, epoch=1), objs.upsert("b", 2, epoch=1))
        eventually(lambda: store.live(objs.cluster) == {"a": 1, "b": 2})
    # A relist at epoch 5 still returns "a" (not "b"). Another writer takes that entry and dies
    # with it; the barrier behind it must not tombstone "a" meanwhile.
    publish(q, objs.upsert("a", 1, epoch=5))
    assert len(q.consumer("dead").read(1, 0)) == 1
    waits_before = barrier_waits()
    with writer_thread(settings, q):
        publish(q, objs.list_done(5), objs.upsert("c", 7, epoch=5))
        eventually(lambda: "c" in store.live(objs.cluster))  # later entries are not held up
        assert store.live(objs.cluster) == {"a": 1, "b": 2, "c": 7}
        assert barrier_waits() > waits_before
        # the dead writer's entry is reclaimed, then the barrier passes
        eventually(lambda: store.live(objs.cluster) == {"a": 1, "c": 7}, timeout=30)
        eventually(lambda: q.depth() == (0, 0), timeout=30)
    assert store.rows(objs.cluster)["a"][2] == 5


def test_purge_waits_for_earlier_entries_of_a_dead_writer(store_url, store, objs) -> None:
    q = MemoryQueue(1000, reclaim_idle_seconds=1.0)
    publish(q, objs.upsert("a", 1), objs.upsert("b", 2))
    assert len(q.consumer("dead").read(1, 0)) == 1  # holds the upsert of "a", then dies
    with writer_thread(settings_for(store_url, barrier_retry_seconds=0.05), q):
        publish(q, PurgeCluster(objs.cluster))
        eventually(lambda: q.depth() == (0, 0))
    assert store.rows(objs.cluster) == {}  # "a" was applied before the purge, not after it


def test_a_rejected_event_is_dropped_and_the_rest_applied(store_url, store, objs) -> None:
    q = MemoryQueue(1000)
    too_long = "x" * 400  # longer than any Kubernetes name: PostgreSQL and MariaDB refuse it
    with writer_thread(settings_for(store_url), q):
        publish(q, objs.upsert("ok-1", 1), objs.upsert(too_long, 2), objs.upsert("ok-2", 3))
        eventually(lambda: q.depth() == (0, 0))
    live = store.live(objs.cluster)
    assert live.get("ok-1") == 1 and live.get("ok-2") == 3
    if not store_url.startswith("sqlite"):  # SQLite does not enforce VARCHAR lengths
        assert too_long not in live


def test_stop_finishes_the_current_batch_and_leaves_the_rest_pending(store_url, store, objs) -> None:
    q = MemoryQueue(10_000)
    publish(q, *[objs.upsert(f"o{i}", i + 1) for i in range(2000)])
    with writer_thread(settings_for(store_url, batch_max_events=100), q):
        eventually(lambda: len(store.live(objs.cluster)) > 0)
    # stopped: whatever was read was committed and acked, nothing half-done is left pending
    undelivered, pending = q.depth()
    assert pending == 0
    assert len(store.live(objs.cluster)) == 2000 - undelivered


def test_writer_waits_for_a_queue_that_comes_up_later(store_url, store, objs, tmp_path) -> None:
    server = ThrowawayRedis(tmp_path)  # not started yet: nothing listens on its port
    settings = Settings(storage=store_url, queue=server.url)
    stop = threading.Event()
    t = threading.Thread(target=run_writer, args=(settings, stop))
    t.start()
    try:
        time.sleep(1.0)
        assert t.is_alive()  # waiting, not crashed
        server.start()
        publisher = RedisPublisher(server.url)

        async def go() -> None:
            await publisher.publish([objs.upsert("late", 3)])
            await publisher.close()

        asyncio.run(go())
        eventually(lambda: store.live(objs.cluster) == {"late": 3}, timeout=30)
    finally:
        stop.set()
        t.join(15)
        server.proc.stop()
    assert not t.is_alive()


def test_the_periodic_pass_applies_the_event_retention(store_url, store) -> None:
    ev = Events()
    q = MemoryQueue(1000)
    settings = settings_for(store_url, tombstone_gc_interval_seconds=0.05, event_retention_per_cluster=2)
    before = REGISTRY.get_sample_value("clusterpedia_writer_rows_removed_total", {"cause": "event_retention"})
    with writer_thread(settings, q):
        publish(q, *ev.types(), *[ev.event(f"e-{i}", i + 1) for i in range(5)])
        eventually(lambda: sorted(store.live(ev.cluster)) == ["e-3", "e-4"])
    after = REGISTRY.get_sample_value("clusterpedia_writer_rows_removed_total", {"cause": "event_retention"})
    assert (after or 0) - (before or 0) >= 3


def statistics_refreshes(outcome: str) -> float:
    sample = REGISTRY.get_sample_value("clusterpedia_writer_statistics_refreshes_total", {"outcome": outcome})
    return sample or 0.0


def test_after_a_large_sync_the_writer_refreshes_the_planner_statistics(store_url, engine, objs) -> None:
    """PostgreSQL and SQLite: ANALYZE once the writer caught up with a thousand rows (the planner then
    knows the table holds them); MySQL/MariaDB keep their statistics themselves (the writer is told so)."""
    kind = store_url.split(":", 1)[0].split("+", 1)[0]
    outcome = "kept_by_store" if kind == "mysql" else "refreshed"
    before = statistics_refreshes(outcome)
    q = MemoryQueue(5000)
    with writer_thread(settings_for(store_url), q):
        publish(q, *objs.types(), *[objs.upsert(f"o{j}", j + 1) for j in range(MIN_ROWS)])
        eventually(lambda: statistics_refreshes(outcome) > before, timeout=30)
    if kind == "postgresql":
        query = "SELECT reltuples FROM pg_class WHERE oid = CAST('resources' AS regclass)"
    elif kind == "sqlite":
        query = "SELECT stat FROM sqlite_stat1 WHERE tbl = 'resources' LIMIT 1"
    else:
        return
    with engine.connect() as conn:
        estimate = conn.exec_driver_sql(query).scalar()
    assert float(str(estimate).split()[0]) >= MIN_ROWS


def test_the_writer_goes_on_writing_while_the_statistics_are_refreshed(
    store_url, store, objs, monkeypatch
) -> None:
    """The refresh (a VACUUM (ANALYZE) of a large table takes seconds) runs beside the writes: a
    change arriving meanwhile is stored without waiting for it."""
    from common.storage.sql.store import SqlStore

    release = threading.Event()
    entered = threading.Event()
    original = SqlStore.refresh_statistics

    def slow_refresh(self: SqlStore) -> int | None:
        entered.set()
        assert release.wait(30), "the test never released the refresh"
        return original(self)

    monkeypatch.setattr(SqlStore, "refresh_statistics", slow_refresh)
    q = MemoryQueue(5000)
    try:
        with writer_thread(settings_for(store_url), q):
            publish(q, *objs.types(), *[objs.upsert(f"o{j}", j + 1) for j in range(MIN_ROWS)])
            assert entered.wait(30), "no refresh after a thousand rows"
            publish(q, objs.upsert("late", 5000))
            eventually(lambda: "late" in store.live(objs.cluster))  # stored while the refresh waits
            assert not release.is_set()
            release.set()
    finally:
        release.set()
