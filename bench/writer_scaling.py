"""Writer scaling: 1, 2 and 4 ``clusterpedia writer`` processes draining one pre-filled stream.

The stream is filled first through the project's own Redis publisher with Upsert events carrying
the generator's objects (distinct keys, so every event is one row). Then the writers start
together and the store is polled; the rate is taken between 5 % and 95 % of the rows, the steady
part, so interpreter start-up and the last partial batch do not count. CPU seconds of each
writer and of the database server are read from /proc to show where the two cores went.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from dataclasses import dataclass
from pathlib import Path

from bench.limits import synthetic_rows
from bench.members import Member
from bench.processes import Tiers, cpu_seconds, server_pids
from bench.services import Services, Store
from bench.system import System
from common.events import Upsert
from common.queue import open_publisher
from common.settings import load_settings

STREAM = "cpbench:writers"
CLUSTER = "bench-writers"


@dataclass
class ScalingResult:
    store: str
    writers: int
    events: int
    seconds: float
    """Time between 5 % and 95 % of the rows."""
    writer_cpu_seconds: float
    db_cpu_seconds: float
    total_seconds: float

    @property
    def rows_per_second(self) -> float:
        return 0.9 * self.events / self.seconds if self.seconds else 0.0


def _events(count: int) -> list[Upsert]:
    out = []
    for row in synthetic_rows(count, cluster=CLUSTER, seed=11):
        out.append(
            Upsert(
                cluster=row["cluster"],
                group=row["api_group"],
                version=row["version"],
                resource=row["resource"],
                kind=row["kind"],
                namespace=row["namespace"],
                name=row["name"],
                uid=row["uid"],
                resource_version=row["resource_version"],
                epoch=row["epoch"],
                owner_uid=row["owner_uid"],
                created_at=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                object=row["object"].encode(),
            )
        )
    return out


def prefill(queue_url: str, events: list[Upsert]) -> None:
    settings = load_settings(environ={}, overrides={"queue": queue_url, "queue_max_len": len(events) + 1000})

    async def go() -> None:
        pub = open_publisher(queue_url, settings)
        try:
            for i in range(0, len(events), 1000):
                await pub.publish(events[i : i + 1000])
        finally:
            await pub.close()

    asyncio.run(go())


def run_scaling(
    store: Store, services: Services, writers: int, events: list[Upsert], scratch: Path
) -> ScalingResult:
    queue_url = f"{services.redis_url()}?stream={STREAM}"
    services.delete_stream(STREAM)
    store.reset()
    prefill(queue_url, events)
    no_host = Member("none", "", "", "")  # writers need no host cluster
    system = System(
        store, queue_url, no_host, scratch, writers=writers, name=f"writers-{store.kind}-{writers}"
    )
    db_pids = server_pids(store.kind)
    db_cpu0 = sum(cpu_seconds(p) for p in db_pids)
    n = len(events)
    lo, hi = int(n * 0.05), int(n * 0.95)
    t_lo = t_hi = 0.0
    with Tiers(system.log_dir, system.tiers.env) as tiers:
        procs = [
            tiers.start(f"writer-{i}", ["writer"], {"CLUSTERPEDIA_WRITER__CONSUMER_NAME": f"scale-{i}"})
            for i in range(writers)
        ]
        start = time.perf_counter()
        deadline = start + 600
        while True:
            count = system.live_rows([CLUSTER])
            now = time.perf_counter()
            if not t_lo and count >= lo:
                t_lo = now
            if count >= hi and not t_hi:
                t_hi = now
            if count >= n:
                break
            tiers.check()
            if now > deadline:
                raise TimeoutError(f"writers stored {count}/{n} rows in 600 s")
            time.sleep(0.05)
        total = time.perf_counter() - start
        writer_cpu = sum(cpu_seconds(p.pid) for p in procs)
        db_cpu = sum(cpu_seconds(p) for p in server_pids(store.kind)) - db_cpu0
    system.stop()
    return ScalingResult(store.kind, writers, n, t_hi - t_lo, writer_cpu, max(0.0, db_cpu), total)


def make_events(count: int) -> list[Upsert]:
    return _events(count)
