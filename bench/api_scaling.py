"""How the API tier scales with cores where the database is not the limit (issue 16, item 3).

    .venv/bin/python -m bench.api_scaling --rows 20000 --seconds 10

The store is SQLite on tmpfs, filled with the generator's pods (``bench.permissions``: 10
clusters, 500 namespaces each, 3-8 KB objects): SQLite runs inside each API process, so every
read costs that process's CPU and nothing else, and N worker processes read N times as much. The
client is a small Go program (``bench/loadgen``, built with the Go toolchain) that costs a
fraction of the server's CPU per request; a Python client needs a core of its own at these rates.

Runs, each ``--seconds`` per concurrency, alternating rounds (``--rounds``):

- ``1 worker, 1 core``: ``clusterpedia apiserver --workers 1`` pinned to CPU 0, the client to CPU 1;
- ``1 worker, 2 cores``: the same, unpinned (one Python process cannot use more than ~one core);
- ``2 workers, 2 cores``: ``--workers 2`` unpinned, the client beside them.

Requests (JSON, round robin over kept-alive HTTPS connections): a get of one pod by name (50
different pods) and a page of 20 pods of one namespace of one cluster. Printed per run: requests/s,
p50 / p99, the API processes' CPU per request and the client's (from /proc). Scaling in cores is
the 2-worker rate over the 1-worker 1-core rate; the CPU per request says whether a worker costs
what one process costs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.permissions import CLUSTERS, register_pods
from bench.point_reads import api_env, fill, wait_answering
from bench.processes import Tiers, tree_cpu_seconds
from bench.services import REPO, Store
from bench.system import free_port
from common.storage import open_store
from common.storage.query import Search
from harness.paths import go_program

RESOURCES = "/apis/clusterpedia.io/v1beta1/resources"
HEADER = "| round | API tier | clients | req/s | p50 / p99 | API CPU µs/request | client CPU µs/request |"
HEADER = "| round | API tier | clients | req/s | p50 / p99 | API CPU µs/request | client CPU µs/request |"
SHAPES = (("1 worker, 1 core", 1, {0}), ("1 worker, 2 cores", 1, None), ("2 workers, 2 cores", 2, None))


@contextmanager
def _affinity(cpus: set[int] | None) -> Iterator[None]:
    """Processes started inside inherit ``cpus`` (None: every CPU); this one gets its own back."""
    mine = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus if cpus is not None else set(range(os.cpu_count() or 1)))
    try:
        yield
    finally:
        os.sched_setaffinity(0, mine)


async def _paths(store_url: str) -> list[str]:
    store = open_store(store_url)
    try:
        out: list[str] = []
        for c in range(CLUSTERS):
            page = await store.list_objects(
                Search(group="", version="v1", resource="pods", single_cluster=f"cluster-{c}", limit=5)
            )
            for pod in page.items:
                where = f"clusters/{pod.cluster}/api/v1/namespaces/{pod.namespace}"
                out.append(f"{RESOURCES}/{where}/pods/{pod.name}")
                out.append(f"{RESOURCES}/{where}/pods?limit=20")
        return out
    finally:
        await asyncio.to_thread(store.close)


def _run_client(loadgen: Path, url: str, paths: Path, concurrency: int, seconds: float) -> dict[str, Any]:
    """One run of the Go client; its JSON result."""
    cmd = [str(loadgen), "-base", url, "-paths", str(paths), "-c", str(concurrency), "-d", f"{seconds}s"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"loadgen failed: {proc.stderr.strip()}")
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", default="8,32")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if not 1 <= args.seconds <= 120 or not 1 <= args.rounds <= 5:
        raise SystemExit("--seconds 1..120, --rounds 1..5")
    levels = [int(c) for c in args.concurrency.split(",")]
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("needs at least two CPUs")
    loadgen = go_program(REPO / "bench" / "loadgen")
    print(f"load average {os.getloadavg()[0]:.2f} at the start", flush=True)
    shm = Path("/dev/shm") if Path("/dev/shm").is_dir() else None
    with tempfile.TemporaryDirectory(prefix="bench-scaling-", dir=shm) as scratch:
        target = Store("sqlite", f"sqlite:///{Path(scratch) / 'store.db'}")
        seconds = fill(target, args.rows, analyze=True)
        print(f"sqlite: {args.rows:,} pods over {CLUSTERS} clusters filled in {seconds:.0f} s", flush=True)
        store = open_store(target.url)
        register_pods(store)
        store.close()
        paths_file = Path(scratch) / "paths.txt"
        paths_file.write_text("\n".join(asyncio.run(_paths(target.url))) + "\n")
        rows: list[str] = []
        for rnd in range(1, args.rounds + 1):
            for label, workers, cpus in SHAPES:
                port = free_port()
                with Tiers(Path(scratch), api_env(target.url, port, workers)) as tiers:
                    with _affinity(cpus):
                        tier = tiers.start("apiserver", ["apiserver"])
                    url = wait_answering(tier, port)
                    client_cpus = {max(os.sched_getaffinity(0))} if cpus is not None else None
                    for c in levels:
                        api_before = tree_cpu_seconds(tier.pid)
                        client_before = _children_cpu()
                        with _affinity(client_cpus):
                            result = _run_client(loadgen, url, paths_file, c, args.seconds)
                        api_cpu = tree_cpu_seconds(tier.pid) - api_before
                        client_cpu = _children_cpu() - client_before
                        n = max(1, result["requests"])
                        if result["errors"]:
                            raise RuntimeError(f"{result['errors']} errors, first: {result['first_error']}")
                        rows.append(
                            f"| {rnd} | {label} | {c} | {result['requests'] / result['seconds']:,.0f} | "
                            f"{result['p50_ms']:.1f} / {result['p99_ms']:.1f} ms | "
                            f"{api_cpu / n * 1e6:,.0f} | {client_cpu / n * 1e6:,.0f} |"
                        )
                        print(rows[-1], flush=True)
        print(f"\n{HEADER}\n|---|---|---|---|---|---|---|")
        print("\n".join(rows))
    print(f"load average {os.getloadavg()[0]:.2f} at the end", flush=True)


def _children_cpu() -> float:
    """CPU seconds of this process's reaped children (the clients, once each has ended)."""
    t = os.times()
    return t.children_user + t.children_system


if __name__ == "__main__":
    main()
