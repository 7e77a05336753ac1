"""Watch: change-to-watcher delay under load, and what idle watchers cost the API tier.

    .venv/bin/python -m bench.watch --store sqlite|postgresql [--rates 500,2000] [--seconds 15]
                                    [--idle 1000] [--poll 0.1]

A real ``clusterpedia apiserver`` process serves the store; this process writes to the store the way
a writer does (batches every 50 ms, ``StoreWriter.apply``) at each rate, spread over 10 clusters,
each object carrying the wall time just before its batch was applied, while one watcher (all
clusters, all namespaces) reads the stream: the delay of each event is its arrival minus that time,
so it covers the commit, the API's change-feed poll (``--poll`` = apiserver.watch_poll_seconds),
filtering, rendering and the HTTP stream, not the synchro and queue before the writer (those are the
``freshness`` scenario of ``make bench``). Then ``--idle`` watchers (one TLS connection each, a
namespace nobody writes to) are opened and held: the API process's RSS and CPU with them against
without. Bounded: each rate runs ``--seconds``; everything stops by itself. Prints one line per
figure; they go into bench/notes.md by hand.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import ssl
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx

from bench.processes import Tiers, cpu_seconds, rss_bytes, wait_until
from bench.services import Services
from common.events import ResourceType, Upsert
from common.storage import ChangeFeed, Store, open_store
from harness.cluster import free_port

CLUSTERS = [f"bench-{i:02d}" for i in range(10)]
OBJECTS_PER_CLUSTER = 200
BATCH_SECONDS = 0.05
PATH = "/apis/clusterpedia.io/v1beta1/resources/api/v1/configmaps"


def _types(store: Store) -> None:
    store.apply(
        [],
        [],
        [
            ResourceType(c, "", "v1", "configmaps", "ConfigMap", True, ["cm"], ["get", "list", "watch"], "v1")
            for c in CLUSTERS
        ],
    )


def _batch(n: int, start: int, rv: int) -> list[Upsert]:
    """``n`` updates of the bench's configmaps (round robin over clusters and names)."""
    now = repr(time.time())
    out = []
    for k in range(start, start + n):
        cluster = CLUSTERS[k % len(CLUSTERS)]
        name = f"cm-{(k // len(CLUSTERS)) % OBJECTS_PER_CLUSTER}"
        body = {
            "metadata": {"resourceVersion": str(rv), "name": name, "namespace": "bench"},
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "data": {"t": now},
        }
        out.append(
            Upsert(
                cluster,
                "",
                "v1",
                "configmaps",
                "ConfigMap",
                "bench",
                name,
                f"u-{cluster}-{name}",
                rv,
                1,
                "",
                "",
                json.dumps(body).encode(),
            )
        )
    # one event per object per batch, sorted by key (as the writer applies them)
    latest = {(u.cluster, u.name): u for u in out}
    return sorted(latest.values(), key=lambda u: (u.cluster, u.namespace, u.name))


def _head(store: Store) -> int:
    assert isinstance(store, ChangeFeed)
    return asyncio.run(store.window())[1]


class Watcher(threading.Thread):
    """One all-cluster watch; records the delay of every event."""

    def __init__(self, base: str, resource_version: int) -> None:
        super().__init__(daemon=True)
        self.url = f"{base}{PATH}?watch=1&resourceVersion={resource_version}"
        self.delays: list[float] = []
        self.events = 0
        self.ready = threading.Event()
        self.stop = threading.Event()

    def run(self) -> None:
        with contextlib.suppress(httpx.HTTPError):  # the server ends it when the bench stops
            self._read()

    def _read(self) -> None:
        with (
            httpx.Client(verify=False, timeout=httpx.Timeout(None)) as client,
            client.stream("GET", self.url) as resp,
        ):
            self.ready.set()
            for line in resp.iter_lines():
                if not line:
                    continue
                arrived = time.time()
                event = json.loads(line)
                self.events += 1
                sent = float(event["object"]["data"]["t"])
                self.delays.append(arrived - sent)
                if self.stop.is_set():
                    return


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _load(store: Store, rate: int, seconds: float, base: str) -> str:
    per_batch = max(1, int(rate * BATCH_SECONDS))
    watcher = Watcher(base, _head(store))
    watcher.start()
    watcher.ready.wait(10)
    time.sleep(0.5)  # the watch is registered once its response started; settle the first poll
    sent = 0
    rv = int(time.time() * 1000)
    start = time.perf_counter()
    tick = start
    while time.perf_counter() - start < seconds:
        rv += 1
        batch = _batch(per_batch, sent, rv)
        store.apply(batch, [], [])
        sent += len(batch)
        tick += BATCH_SECONDS
        pause = tick - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
    achieved = sent / (time.perf_counter() - start)
    with contextlib.suppress(TimeoutError):  # the figures say how many arrived
        wait_until(lambda: watcher.events >= sent, timeout_seconds=30)
    watcher.stop.set()
    d = [x * 1000 for x in watcher.delays]
    return (
        f"rate {rate}/s (achieved {achieved:,.0f}/s, {len(CLUSTERS)} clusters): {sent} changes,"
        f" {watcher.events} events; delay p50 {statistics.median(d):.0f} ms,"
        f" p99 {_percentile(d, 0.99):.0f} ms, max {max(d):.0f} ms"
    )


async def _idle(base: str, n: int, resource_version: int, pid: int) -> str:
    host, port = base.removeprefix("https://").split(":")
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    before_rss = rss_bytes(pid)
    idle = PATH.replace("/configmaps", "/namespaces/idle/configmaps")
    path = f"{idle}?watch=1&resourceVersion={resource_version}"
    request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\n\r\n".encode()
    conns = []
    for _ in range(n):
        reader, writer = await asyncio.open_connection(host, int(port), ssl=ctx)
        writer.write(request)
        await writer.drain()
        status = await reader.readline()
        assert b" 200 " in status, status
        conns.append((reader, writer))
    await asyncio.sleep(3)
    with_rss = rss_bytes(pid)
    cpu0 = cpu_seconds(pid)
    await asyncio.sleep(20)
    cpu = cpu_seconds(pid) - cpu0
    for _, writer in conns:
        writer.close()
    per = (with_rss - before_rss) / n
    return (
        f"{n} idle watchers: API RSS {before_rss / 2**20:.1f} -> {with_rss / 2**20:.1f} MiB"
        f" ({per / 1024:.1f} KiB each, TLS connection included); API CPU while idle {cpu / 20 * 100:.1f} %"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--store", choices=("sqlite", "postgresql", "mysql"), default="sqlite")
    parser.add_argument("--rates", default="500,2000")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--idle", type=int, default=1000)
    parser.add_argument("--poll", type=float, default=0.1)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="bench-watch-") as scratch,
        Services(Path(scratch)) as services,
    ):
        url = services.store(args.store).url
        store = open_store(url)
        store.migrate()
        _types(store)
        port = free_port()
        env = {
            "CLUSTERPEDIA_STORAGE": url,
            "CLUSTERPEDIA_LOG_LEVEL": "WARNING",
            "CLUSTERPEDIA_LOG_FORMAT": "text",
            "CLUSTERPEDIA_APISERVER__BIND_HOST": "127.0.0.1",
            "CLUSTERPEDIA_APISERVER__PORT": str(port),
            "CLUSTERPEDIA_APISERVER__AUTHORIZATION_MODE": "host-only",
            "CLUSTERPEDIA_APISERVER__WATCH_POLL_SECONDS": str(args.poll),
        }
        base = f"https://127.0.0.1:{port}"
        with Tiers(Path(scratch), env) as tiers:
            api = tiers.start("apiserver", ["apiserver"])

            def answers() -> bool:
                try:
                    return httpx.get(f"{base}/healthz", verify=False, timeout=1).status_code == 200
                except httpx.HTTPError:
                    return False

            wait_until(answers, timeout_seconds=30)
            print(f"{args.store}: apiserver.watch_poll_seconds {args.poll}", flush=True)
            for rate in (int(r) for r in args.rates.split(",") if r):
                print(_load(store, rate, args.seconds, base), flush=True)
            if args.idle:
                print(asyncio.run(_idle(base, args.idle, _head(store), api.pid)), flush=True)
        store.close()


if __name__ == "__main__":
    main()
