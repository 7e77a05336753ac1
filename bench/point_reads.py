"""Point reads, counts and offset pages through the API tier, the way issue 16 measured them.

    .venv/bin/python -m bench.point_reads --store postgresql --rows 20000
    .venv/bin/python -m bench.point_reads --store mysql --rows 50000 --no-analyze

Fills an empty store with the generator's pods (``bench.permissions``: 10 clusters, 500
namespaces each, 3-8 KB objects), starts ``clusterpedia apiserver`` on it (``host-only``, one
worker, its own process) and sends each request ``--samples`` times in sequence over one kept-alive
HTTPS connection (JSON), after one warm-up: a get of one pod by name (cluster path), a count
(``limit=1&withRemainingCount=true`` over all pods), and pages of 100 at offsets 0, 5,000 and
20,000 (the seed's ``size``/``offset`` search conditions, when the store holds that many). The same
reads through the store's reader in this process (no HTTP, no TLS, no rendering) are timed beside
them, which splits a request's time into the store's and the API tier's. Prints p50 / p99 per read.
After the fill the store's statistics are refreshed as the writer does once a sync is over
(``StoreWriter.refresh_statistics``: VACUUM (ANALYZE) on PostgreSQL, ANALYZE on SQLite; ANALYZE
TABLE on MariaDB, which otherwise takes them in its own time). ``--no-analyze`` skips that, as a
store right after a large initial sync with a writer of before session 6 was (issue 16: "query
latency must be stable right after a large sync").
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

import aiohttp

from bench.limits import row_batches
from bench.permissions import CLUSTERS, _rows, register_pods
from bench.processes import Tier, Tiers
from bench.services import Services, Store
from bench.stats import percentile
from bench.system import _answers, free_port
from common.storage import open_store
from common.storage.query import Search
from common.storage.sql.upserts import upsert_resources

RESOURCES = "/apis/clusterpedia.io/v1beta1/resources"
OFFSETS = (0, 5_000, 20_000)


def fill(store: Store, rows: int, *, analyze: bool) -> float:
    from sqlalchemy import text

    store.reset()
    engine = store.engine(pool_size=2)
    try:
        stmt = upsert_resources(engine.dialect.name)
        start = time.perf_counter()
        for batch in row_batches(_rows(rows)):
            with engine.begin() as conn:
                conn.execute(stmt, batch)
        if analyze and engine.dialect.name == "mysql":  # InnoDB keeps them itself, in a while
            with engine.begin() as conn:
                conn.execute(text("ANALYZE TABLE resources"))
        elif analyze:  # what the writer does once a sync is over (writer/analyzing.py)
            sql_store = open_store(store.url)
            try:
                sql_store.refresh_statistics()
            finally:
                sql_store.close()
        return time.perf_counter() - start
    finally:
        engine.dispose()


def reads(rows: int) -> list[tuple[str, str, Search]]:
    """(what, API path, the same read as a store search) of each measured read."""
    pods = Search(group="", version="v1", resource="pods")
    out: list[tuple[str, str, Search]] = [
        ("get one pod by name", "", pods),
        (
            "count: limit 1 + withRemainingCount, all pods",
            f"{RESOURCES}/api/v1/pods?limit=1&withRemainingCount=true",
            dataclasses.replace(pods, limit=1, with_remaining_count=True),
        ),
    ]
    for offset in OFFSETS:
        if offset + 100 <= rows:
            out.append(
                (
                    f"page of 100 at offset {offset:,}",
                    f"{RESOURCES}/api/v1/pods?size=100&offset={offset}",
                    dataclasses.replace(pods, size=100, offset=offset),
                )
            )
    return out


async def _time(samples: int, call: Callable[[], Awaitable[None]]) -> list[float]:
    await call()  # warm the connection and the caches
    out = []
    for _ in range(samples):
        start = time.perf_counter()
        await call()
        out.append(time.perf_counter() - start)
    return out


async def _measure(
    api_url: str, store_url: str, rows: int, samples: int
) -> list[tuple[str, list[float], list[float]]]:
    store = open_store(store_url)
    connector = aiohttp.TCPConnector(limit=1, ssl=False)
    results = []
    try:
        async with aiohttp.ClientSession(api_url, connector=connector) as session:
            # a pod that exists: the first one of cluster-3 in name order
            page = await store.list_objects(
                Search(group="", version="v1", resource="pods", single_cluster="cluster-3", limit=1)
            )
            pod = page.items[0]
            for what, path, search in reads(rows):
                if not path:
                    where = f"clusters/{pod.cluster}/api/v1/namespaces/{pod.namespace}"
                    path = f"{RESOURCES}/{where}/pods/{pod.name}"

                async def api(path: str = path) -> None:
                    async with session.get(path, headers={"Accept": "application/json"}) as resp:
                        body = await resp.read()
                        if resp.status != 200:
                            raise RuntimeError(f"{path}: HTTP {resp.status} {body[:200]!r}")

                direct = (
                    partial(store.get_objects, pod.cluster, "", "pods", pod.namespace, pod.name)
                    if what.startswith("get")
                    else partial(store.list_objects, search)
                )

                async def reader(direct: Callable[[], Awaitable[object]] = direct) -> None:
                    await direct()

                api_times = await _time(samples, api)
                store_times = await _time(samples, reader)
                results.append((what, api_times, store_times))
    finally:
        store.close()
    return results


def _ms(samples: list[float]) -> str:
    return f"{1000 * percentile(samples, 50):.1f} / {1000 * percentile(samples, 99):.1f} ms"


def api_env(store_url: str, port: int, workers: int = 1) -> dict[str, str]:
    """``clusterpedia apiserver`` on ``store_url``, on loopback ``port``, everything visible."""
    return {
        "CLUSTERPEDIA_STORAGE": store_url,
        "CLUSTERPEDIA_LOG_LEVEL": "WARNING",
        "CLUSTERPEDIA_APISERVER__BIND_HOST": "127.0.0.1",
        "CLUSTERPEDIA_APISERVER__PORT": str(port),
        "CLUSTERPEDIA_APISERVER__AUTHORIZATION_MODE": "host-only",
        "CLUSTERPEDIA_APISERVER__WORKERS": str(workers),
    }


def wait_answering(tier: Tier, port: int, timeout_seconds: float = 60) -> str:
    """The API tier's URL once it answers /healthz (its log's tail if it ends or takes too long)."""
    url = f"https://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_seconds
    while not _answers(f"{url}/healthz", ok_only=False):
        tier.check()
        if time.monotonic() > deadline:
            raise TimeoutError(tier.log_tail())
        time.sleep(0.1)
    return url


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--store", choices=("sqlite", "postgresql", "mysql"), default="postgresql")
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--samples", type=int, default=60)
    parser.add_argument("--no-analyze", action="store_true")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} at the start", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-point-") as scratch, Services(Path(scratch)) as services:
        target = services.store(args.store)
        seconds = fill(target, args.rows, analyze=not args.no_analyze)
        print(
            f"{args.store}: {args.rows:,} pods over {CLUSTERS} clusters filled in {seconds:.0f} s", flush=True
        )
        store = open_store(target.url)
        register_pods(store)
        store.close()
        port = free_port()
        with Tiers(Path(scratch), api_env(target.url, port)) as tiers:
            url = wait_answering(tiers.start("apiserver", ["apiserver"]), port)
            results = asyncio.run(_measure(url, target.url, args.rows, args.samples))
        what = f"{args.store}, {args.rows:,} pods, p50 / p99 of {args.samples}"
        print(f"\n| read ({what}) | API tier (HTTPS) | store reader |")
        print("|---|---|---|")
        for read, api_times, store_times in results:
            print(f"| {read} | {_ms(api_times)} | {_ms(store_times)} |")
    print(f"load average {os.getloadavg()[0]:.2f} at the end", flush=True)


if __name__ == "__main__":
    main()
