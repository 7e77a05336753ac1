"""Steady-state freshness: how long a change in a member cluster takes to reach the store.

A paced loop merge-PATCHes pod annotations (``bench.clusterpedia.io/stamp``) at a fixed rate for a
bounded time; each PATCH response carries the new resourceVersion, and the client clock read right
after the response returns starts that change's timer. A poller thread asks the store, every
50 ms, for the pods of one benchmark cluster whose resourceVersion is above the oldest change still
outstanding; a change is visible once its row carries at least its resourceVersion, and its delay
ends when the poll that saw it returned (so the figures include up to one poll interval, 50 ms by
default as in issue 16's reference figures, plus the poll's own duration; ``--freshness-poll-ms 1``
times the pipeline itself). The API tier serves straight from the store, with no cache, so a
row the store holds is what the next API request returns.

When several PediaClusters point at the same member, every PATCH is one change per cluster in
the store: the load on the pipeline is ``rate x clusters`` changes/s, timed on the first cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import msgspec
from sqlalchemy import Engine, and_, select

from bench.generate import BENCH_ANNOTATION
from bench.members import Member
from bench.stats import percentile
from common.storage.sql.schema import resources

POLL_INTERVAL_SECONDS = 0.05
DRAIN_TIMEOUT_SECONDS = 30.0


class _Meta(msgspec.Struct):
    resourceVersion: str = ""


class _Patched(msgspec.Struct):
    metadata: _Meta


_patched = msgspec.json.Decoder(_Patched)


@dataclass
class FreshnessResult:
    target_rate: float
    achieved_rate: float
    clusters: int
    duration_seconds: float
    changes: int
    delays: list[float] = field(default_factory=list)
    watch_delays: list[float] = field(default_factory=list)
    """Reference: PATCH response -> the same change on a bare watch of the member's pods."""
    lost: int = 0
    """Changes not visible within the drain timeout after the load stopped."""
    pipeline_delays: list[float] = field(default_factory=list)
    """Per change: its row visible in the store minus its arrival on the bare watch of the member
    (the pipeline's own share, when the member itself is late at high rates)."""

    @property
    def p50(self) -> float:
        return percentile(self.delays, 50)

    @property
    def p99(self) -> float:
        return percentile(self.delays, 99)

    @property
    def watch_p50(self) -> float:
        return percentile(self.watch_delays, 50)

    @property
    def watch_p99(self) -> float:
        return percentile(self.watch_delays, 99)

    @property
    def pipeline_p50(self) -> float:
        return percentile(self.pipeline_delays, 50)

    @property
    def pipeline_p99(self) -> float:
        return percentile(self.pipeline_delays, 99)

    @property
    def max(self) -> float:
        return max(self.delays) if self.delays else float("nan")


class _Tracker:
    """Outstanding changes by pod key and the thread that sees them land in the store."""

    def __init__(self, engine: Engine, cluster: str, poll_seconds: float = POLL_INTERVAL_SECONDS) -> None:
        self.engine = engine
        self.cluster = cluster
        self.poll_seconds = poll_seconds
        self.lock = threading.Lock()
        self.outstanding: dict[tuple[str, str], tuple[int, float]] = {}
        """key -> (newest rv patched, time of its PATCH response); an older one is superseded."""
        self.delays: list[float] = []
        self.landed: list[tuple[tuple[str, str], int, float]] = []
        """(key, resourceVersion seen in the store, when)."""
        self.superseded = 0
        self.patches: list[tuple[tuple[str, str], int, float]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._poll, name="freshness-poll", daemon=True)

    def add(self, key: tuple[str, str], rv: int, at: float) -> None:
        self.patches.append((key, rv, at))
        with self.lock:
            if key in self.outstanding:
                # An object patched again before its previous change was seen: the earlier change
                # can no longer be observed on its own; it counts at its own start time below.
                _old_rv, old_at = self.outstanding[key]
                self.superseded += 1
                self.outstanding[key] = (rv, old_at)
            else:
                self.outstanding[key] = (rv, at)

    def _poll(self) -> None:
        c = resources.c
        with self.engine.connect() as conn:
            while not self.stop.is_set():
                with self.lock:
                    floor = min((rv for rv, _ in self.outstanding.values()), default=None)
                if floor is None:
                    time.sleep(self.poll_seconds)
                    continue
                stmt = select(c.namespace, c.name, c.resource_version).where(
                    and_(
                        c.cluster == self.cluster,
                        c.api_group == "",
                        c.resource == "pods",
                        c.resource_version >= floor,
                    )
                )
                rows = conn.execute(stmt).all()
                conn.commit()  # end the read transaction: the next poll sees newer commits
                seen_at = time.perf_counter()
                with self.lock:
                    for ns, name, rv in rows:
                        want = self.outstanding.get((ns, name))
                        if want is not None and rv >= want[0]:
                            self.delays.append(max(0.0, seen_at - want[1]))
                            self.landed.append(((ns, name), want[0], seen_at))
                            del self.outstanding[(ns, name)]
                time.sleep(self.poll_seconds)

    def pending(self) -> int:
        with self.lock:
            return len(self.outstanding)


class _WMeta(msgspec.Struct):
    name: str = ""
    namespace: str = ""
    resourceVersion: str = ""


class _WObject(msgspec.Struct):
    metadata: _WMeta = msgspec.field(default_factory=_WMeta)


class _WEvent(msgspec.Struct):
    type: str
    object: _WObject


_wevent = msgspec.json.Decoder(_WEvent)


class _ListRV(msgspec.Struct):
    metadata: _WMeta


async def _watch_reference(
    member: Member, resource_version: str, seen: dict[tuple[str, str, int], float], seconds: float
) -> None:
    """A bare watch on the member's pods: when each change reaches any watcher (the reference)."""
    params = {"watch": "1", "resourceVersion": resource_version, "timeoutSeconds": str(int(seconds))}
    async with (
        member.session(concurrency=1, timeout_seconds=seconds + 30) as session,
        session.get("/api/v1/pods", params=params) as resp,
    ):
        async for line in resp.content:
            now = time.perf_counter()
            if not line.strip():
                continue
            ev = _wevent.decode(line)
            if ev.type == "MODIFIED":
                m = ev.object.metadata
                seen[(m.namespace, m.name, int(m.resourceVersion))] = now


async def _with_watch(
    member: Member,
    keys: Sequence[tuple[str, str]],
    rate: float,
    duration: float,
    tracker: _Tracker,
    seen: dict[tuple[str, str, int], float],
) -> tuple[int, float]:
    start_rv = ""
    async with (
        member.session(concurrency=1) as session,
        session.get("/api/v1/pods", params={"limit": "1"}) as r,
    ):
        if r.status == 200:
            start_rv = msgspec.json.decode(await r.read(), type=_ListRV).metadata.resourceVersion
    watch = asyncio.create_task(_watch_reference(member, start_rv, seen, duration + 60))
    try:
        result = await _patch_load(member, keys, rate, duration, tracker)
        # let the watch catch up with the last PATCHes (at most 10 s), checking a plain dict
        for _ in range(100):
            if len(seen) >= len(tracker.patches) or watch.done():
                break
            await asyncio.sleep(0.1)
        return result
    finally:
        watch.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await watch


async def _patch_load(
    member: Member, keys: Sequence[tuple[str, str]], rate: float, duration: float, tracker: _Tracker
) -> tuple[int, float]:
    """PATCH ``rate`` pods per second for ``duration`` seconds (fewer when the member cannot keep
    the pace: no new PATCH starts after ``duration``); returns (changes, seconds)."""
    total = int(rate * duration)
    in_flight = asyncio.Semaphore(128)
    headers = {"Content-Type": "application/merge-patch+json"}
    done = 0

    async with member.session(concurrency=64, timeout_seconds=30) as session:

        async def one(i: int) -> None:
            nonlocal done
            ns, name = keys[i % len(keys)]
            body = msgspec.json.encode({"metadata": {"annotations": {BENCH_ANNOTATION: str(time.time_ns())}}})
            async with session.patch(
                f"/api/v1/namespaces/{ns}/pods/{name}", data=body, headers=headers
            ) as resp:
                content = await resp.read()
                at = time.perf_counter()
                if resp.status != 200:
                    raise RuntimeError(f"PATCH pod {ns}/{name}: {resp.status} {content[:200]!r}")
            tracker.add((ns, name), int(_patched.decode(content).metadata.resourceVersion), at)
            done += 1
            in_flight.release()

        start = time.perf_counter()
        end = start + duration
        tasks: set[asyncio.Task[None]] = set()
        for i in range(total):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await in_flight.acquire()  # a saturated server slows the pace instead of piling up
            if time.perf_counter() >= end:
                in_flight.release()
                break  # bounded in time as well as in count: the achieved rate tells the rest
            task = asyncio.create_task(one(i))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks)
        return done, max(duration, time.perf_counter() - start)


def run_freshness(
    engine: Engine,
    member: Member,
    cluster: str,
    clusters: int,
    pod_keys: Sequence[tuple[str, str]],
    rate: float,
    duration_seconds: float,
    poll_seconds: float = POLL_INTERVAL_SECONDS,
) -> FreshnessResult:
    tracker = _Tracker(engine, cluster, poll_seconds)
    tracker.thread.start()
    try:
        seen: dict[tuple[str, str, int], float] = {}
        changes, seconds = asyncio.run(_with_watch(member, pod_keys, rate, duration_seconds, tracker, seen))
        deadline = time.perf_counter() + DRAIN_TIMEOUT_SECONDS
        while tracker.pending() and time.perf_counter() < deadline:
            time.sleep(0.1)
    finally:
        tracker.stop.set()
        tracker.thread.join(5)
    watch_delays = [
        max(0.0, seen[(key[0], key[1], rv)] - at)
        for key, rv, at in tracker.patches
        if (key[0], key[1], rv) in seen
    ]
    pipeline_delays = [
        max(0.0, at - seen[(key[0], key[1], rv)])
        for key, rv, at in tracker.landed
        if (key[0], key[1], rv) in seen
    ]
    return FreshnessResult(
        watch_delays=watch_delays,
        pipeline_delays=pipeline_delays,
        target_rate=rate * clusters,
        achieved_rate=changes / seconds * clusters if seconds else 0.0,
        clusters=clusters,
        duration_seconds=seconds,
        changes=changes,
        delays=list(tracker.delays),
        lost=tracker.pending(),
    )
