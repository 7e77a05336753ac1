"""What one kube-state collection costs at 1M rows (``clusterpedia kube-state-metrics``).

    .venv/bin/python -m bench.kube_state --store postgresql --rows 1000000
    .venv/bin/python -m bench.kube_state --store sqlite --rows 1000000

Fills an empty store with the generator's pods (``bench.limits.synthetic_rows``, 3-8 KB objects,
given the status a kubelet would write: phase, IPs, conditions, one container status) spread over
10 clusters and 500 namespaces per cluster, then runs the tier's collection
(``kubestate.collector.collect``, default page size, ``max_series`` off) in a fresh child process
and reports its wall time, CPU time, peak RSS, the exposition's size and series, the database
server's CPU (PostgreSQL, MariaDB), and one scrape of the result through the tier's app. Alternates
``--repeat`` collections. Prints a table; the figures go into bench/notes.md by hand.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import itertools
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import msgspec
from sqlalchemy import text

from bench.limits import INSERT_BATCH, synthetic_rows
from bench.processes import cpu_seconds, server_pids
from bench.services import Services, Store
from common.events import ResourceType
from common.settings import KubeStateMetricsSettings
from common.storage import open_store
from common.storage.query import Search
from common.storage.sql.upserts import upsert_resources
from kubestate.collector import collect
from kubestate.families import RESOURCES
from kubestate.server import Collector, create_app

CLUSTERS = 10
NAMESPACES = 500
PHASES = ("Running",) * 17 + ("Pending", "Succeeded", "Failed")
_dec = msgspec.json.Decoder()
_enc = msgspec.json.Encoder()


def _rows(count: int) -> Iterator[dict[str, Any]]:
    for i, row in enumerate(synthetic_rows(count)):
        obj = _dec.decode(row["object"])
        obj["spec"]["nodeName"] = f"node-{i % 300:03d}"
        obj["status"] = {
            "phase": PHASES[i % len(PHASES)],
            "hostIP": f"10.0.{i % 250}.{i % 200}",
            "podIP": f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}",
            "conditions": [
                {"type": "Ready", "status": "True" if i % 20 else "False"},
                {"type": "PodScheduled", "status": "True"},
            ],
            "containerStatuses": [{"name": "app", "restartCount": i % 4, "ready": bool(i % 20)}],
        }
        yield {
            **row,
            "cluster": f"cluster-{i % CLUSTERS}",
            "namespace": f"ns-{(i // CLUSTERS) % NAMESPACES:03d}",
            "object": _enc.encode(obj).decode(),
        }


def _fill(store: Store, rows: int) -> float:
    store.reset()
    engine = store.engine(pool_size=2)
    try:
        stmt = upsert_resources(engine.dialect.name)
        start = time.perf_counter()
        rows_iter = _rows(rows)  # streamed: 1M objects of 3-8 KB do not fit in memory at once
        while batch := list(itertools.islice(rows_iter, INSERT_BATCH)):
            with engine.begin() as conn:
                conn.execute(stmt, batch)
        seconds = time.perf_counter() - start
        with engine.begin() as conn:
            analyze = (
                "ANALYZE" if engine.dialect.name in ("sqlite", "postgresql") else "ANALYZE TABLE resources"
            )
            conn.execute(text(analyze))
        return seconds
    finally:
        engine.dispose()


def _register(url: str) -> None:
    """The filled clusters' pods resource type, as the synchro writes it: the tier pages each
    cluster the catalog names (idempotent)."""
    store = open_store(url)
    try:
        types = [
            ResourceType(f"cluster-{c}", "", "v1", "pods", "Pod", True, [], ["get", "list"], "v1", b"")
            for c in range(CLUSTERS)
        ]
        store.apply([], [], types)
    finally:
        store.close()


def _server_cpu(kind: str) -> float:
    return sum(cpu_seconds(p) for p in server_pids(kind))


async def _collect_and_scrape(url: str, directory: Path, page_rows: int) -> dict[str, Any]:
    store = open_store(url)
    kind = url.partition(":")[0].partition("+")[0]
    try:
        server0 = _server_cpu(kind)
        start, cpu0 = time.perf_counter(), time.process_time()
        done = await collect(store, RESOURCES, directory, page_rows=page_rows, max_series=0)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu0
        server = _server_cpu(kind) - server0
        peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # the collection's peak
        collector = Collector(store, RESOURCES, KubeStateMetricsSettings(), directory)
        collector.current = done
        app = create_app(collector, b"", own_lifecycle=False)
        size = 0

        asked = False
        never = asyncio.Event()

        async def receive() -> dict[str, Any]:
            nonlocal asked
            if not asked:
                asked = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await never.wait()  # the client stays connected
            return {"type": "http.disconnect"}

        async def send(message: MutableMapping[str, Any]) -> None:
            nonlocal size
            if message["type"] == "http.response.body":
                size += len(message.get("body", b""))

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": "/metrics",
            "raw_path": b"/metrics",
            "query_string": b"",
            "root_path": "",
            "headers": [],
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 8080),
        }
        start = time.perf_counter()
        await app(scope, receive, send)  # the body counted as it streams, never held
        scrape = time.perf_counter() - start
        # The same pages read again without decoding or writing: the store's share of the collection.
        start, cpu0 = time.perf_counter(), time.process_time()
        for c in range(CLUSTERS):  # as the collector pages: one cluster at a time
            search = Search(group="", resource="pods", single_cluster=f"cluster-{c}", limit=page_rows)
            while (page := await store.list_objects(search)).next is not None:
                search = dataclasses.replace(search, continue_token=page.next)
        read, read_cpu = time.perf_counter() - start, time.process_time() - cpu0
        return {
            "seconds": wall,
            "cpu_seconds": cpu,
            "server_cpu_seconds": server,
            "series": done.series,
            "objects": done.objects,
            "bytes": done.path.stat().st_size,
            "scrape_seconds": scrape,
            "read_seconds": read,
            "read_cpu_seconds": read_cpu,
            "scrape_bytes": size,
            "peak_rss_mib": peak_rss,
        }
    finally:
        store.close()


def child(url: str, page_rows: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-ksm-") as directory:
        print(json.dumps(asyncio.run(_collect_and_scrape(url, Path(directory), page_rows))))


def _run_child(store: Store, page_rows: int) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.kube_state", "--child", store.url, "--page-rows", str(page_rows)],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--store", choices=("sqlite", "postgresql", "mysql"), default="postgresql")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--page-rows", type=int, default=KubeStateMetricsSettings().page_rows)
    parser.add_argument(
        "--existing",
        metavar="URL",
        help="measure a store this benchmark filled before (a kept sqlite:///...) instead of filling one",
    )
    parser.add_argument("--child", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.page_rows)
        return
    with tempfile.TemporaryDirectory(prefix="bench-ksm-") as scratch, Services(Path(scratch)) as services:
        if args.existing:
            target = Store(args.existing.partition(":")[0].partition("+")[0], args.existing)
        else:
            target = services.store(args.store)
            seconds = _fill(target, args.rows)
            print(f"{args.store}: {args.rows:,} pods over {CLUSTERS} clusters written in {seconds:.0f} s")
        _register(target.url)
        print(f"load average before: {os.getloadavg()}", flush=True)
        print(
            "\n| run | collection wall s | collection CPU s | DB server CPU s | peak RSS MiB | series"
            " | exposition MiB | one scrape s | pods' pages alone: wall s / CPU s | load (1 min) |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|")
        for run in range(args.repeat):
            r = _run_child(target, args.page_rows)
            server = f"{r['server_cpu_seconds']:.1f}" if target.kind != "sqlite" else "-"
            print(
                f"| {run + 1} | {r['seconds']:.1f} | {r['cpu_seconds']:.1f} | {server}"
                f" | {r['peak_rss_mib']:.0f} | {r['series']:,} | {r['bytes'] / 2**20:,.0f}"
                f" | {r['scrape_seconds']:.2f} | {r['read_seconds']:.1f} / {r['read_cpu_seconds']:.1f}"
                f" | {os.getloadavg()[0]:.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
