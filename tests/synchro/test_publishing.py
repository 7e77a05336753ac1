import asyncio
import time
from collections.abc import Sequence

from common.events import Event, ListDone, PurgeCluster
from common.queue.base import QueueReset
from common.queue.memory import MemoryQueue
from synchro.publishing import EventFunnel


class RecordingPublisher:
    """The queue's protocol edge: records batches; can fail once with an error or a reset."""

    def __init__(self, fail_with: list[BaseException] | None = None) -> None:
        self.batches: list[list[Event]] = []
        self.fail_with = list(fail_with or ())

    async def publish(self, events: Sequence[Event]) -> None:
        if self.fail_with:
            raise self.fail_with.pop(0)
        if events:
            self.batches.append(list(events))

    async def oldest_unacked(self) -> None:
        return None

    async def close(self) -> None:
        pass


def done(i: int) -> ListDone:
    return ListDone("c", "", "v1", "pods", i)


async def _run(funnel: EventFunnel, body: object) -> None:
    task = asyncio.create_task(funnel.run())
    try:
        await body  # type: ignore[misc]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_batches_keep_order_and_drained_waits() -> None:
    pub = RecordingPublisher()
    funnel = EventFunnel(pub, batch_max_events=3)

    async def body() -> None:
        for i in range(7):
            await funnel.put(done(i))
        await funnel.drained()
        assert [e.epoch for b in pub.batches for e in b] == list(range(7))  # type: ignore[union-attr]
        assert all(len(b) <= 3 for b in pub.batches)
        await funnel.put(PurgeCluster("c"))
        await funnel.drained()
        assert pub.batches[-1] == [PurgeCluster("c")]

    asyncio.run(_run(funnel, body()))


def test_transient_errors_are_retried_and_reset_calls_back() -> None:
    resets: list[bool] = []
    pub = RecordingPublisher([ConnectionError("down"), QueueReset("lost")])
    funnel = EventFunnel(pub, batch_max_events=10, on_reset=lambda: resets.append(True))

    async def body() -> None:
        await funnel.put(done(1))
        await funnel.drained()  # ConnectionError retried, then QueueReset drops the batch
        assert resets == [True] and pub.batches == []
        await funnel.put(done(2))
        await funnel.drained()
        assert pub.batches == [[done(2)]]

    asyncio.run(_run(funnel, body()))


def test_idle_probe_reports_a_reset() -> None:
    resets: list[bool] = []
    pub = RecordingPublisher([QueueReset("lost")])
    funnel = EventFunnel(pub, on_reset=lambda: resets.append(True), idle_probe_seconds=0.05)

    async def body() -> None:
        for _ in range(100):
            if resets:
                break
            await asyncio.sleep(0.02)
        assert resets == [True]

    asyncio.run(_run(funnel, body()))


def test_purges_are_republished_after_a_reset() -> None:
    """A reset may lose an accepted PurgeCluster (a deleted PediaCluster's finalizer is already
    gone, so nothing would ever send it again): the funnel re-sends recent and dropped purges."""
    resets: list[bool] = []
    pub = RecordingPublisher()
    funnel = EventFunnel(pub, batch_max_events=10, on_reset=lambda: resets.append(True))

    async def body() -> None:
        await funnel.put(PurgeCluster("deleted"))
        await funnel.put(PurgeCluster("c", "apps", "deployments"))
        await funnel.drained()
        pub.batches.clear()  # the queue lost what it had accepted...
        pub.fail_with.append(QueueReset("lost"))  # ...and says so on the next publish
        await funnel.put(done(1))
        await funnel.put(PurgeCluster("other"))
        await funnel.drained()
        assert resets == [True]
        assert pub.batches == [
            [PurgeCluster("deleted"), PurgeCluster("c", "apps", "deployments"), PurgeCluster("other")]
        ]

    asyncio.run(_run(funnel, body()))


def test_purge_memory_is_bounded() -> None:
    pub = RecordingPublisher()
    funnel = EventFunnel(pub, batch_max_events=10, purge_memory_max=3)

    async def body() -> None:
        for i in range(10):
            await funnel.put(PurgeCluster(f"c{i}"))
        await funnel.drained()
        pub.fail_with.append(QueueReset("lost"))
        await funnel.put(done(1))
        await funnel.drained()
        assert pub.batches[-1] == [PurgeCluster(f"c{i}") for i in (7, 8, 9)]

    asyncio.run(_run(funnel, body()))


def test_the_backlog_tells_which_clusters_are_not_stored_yet() -> None:
    """A real in-process queue and consumer: a cluster whose events are all acked is caught up;
    one with an event still queued reports when that was queued."""
    queue = MemoryQueue(100)
    funnel = EventFunnel(queue.publisher(), backlog_interval_seconds=3600)
    writer = queue.consumer("w")
    stored = [ListDone("b", "", "v1", "pods", 1), ListDone("b", "", "v1", "pods", 2)]
    waiting = ListDone("a", "", "v1", "pods", 1)

    async def body() -> None:
        for event in stored:
            await funnel.put(event)
        await funnel.drained()
        before = time.time()
        await funnel.put(waiting)
        await funnel.drained()
        await funnel.check_backlog()
        assert funnel.unapplied_since("a") is not None and funnel.unapplied_since("b") is not None
        writer.ack(writer.read(2, 0))  # b's two events
        await funnel.check_backlog()
        assert funnel.unapplied_since("b") is None
        since = funnel.unapplied_since("a")
        assert since is not None and before - 1 <= since <= time.time()
        writer.ack(writer.read(10, 0))
        await funnel.check_backlog()
        assert funnel.unapplied_since("a") is None

    asyncio.run(_run(funnel, body()))
