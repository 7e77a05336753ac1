"""Offset pages (the seed's ``size``/``offset`` paging) at growing offsets, through the store's reader.

    .venv/bin/python -m bench.offset_pages --store postgresql --rows 50000

Fills an empty store with the generator's pods (``bench.limits.synthetic_rows``, 3-8 KB objects,
the fill of ``bench.permissions``: 10 clusters, 500 namespaces each) and times a page of 100 at
offsets 0, 5,000 and 20,000 (default order), ``--repeat`` times each. Prints one line per offset;
the figures go into bench/notes.md by hand. Bounded: one fill, a few dozen reads.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

from bench.permissions import _fill, register_pods
from bench.services import Services
from common.storage import open_store
from common.storage.query import Search

OFFSETS = (0, 5_000, 20_000)


async def _run(url: str, repeat: int) -> list[tuple[int, float]]:
    store = open_store(url)
    try:
        register_pods(store)
        out: list[tuple[int, float]] = []
        for offset in OFFSETS:
            search = dataclasses.replace(
                Search(group="", version="v1", resource="pods"), size=100, offset=offset
            )
            times = []
            for _ in range(repeat):
                start = time.perf_counter()
                page = await store.list_objects(search)
                times.append(time.perf_counter() - start)
                assert len(page.items) == 100
            out.append((offset, 1000 * statistics.median(times)))
        return out
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--store", choices=("sqlite", "postgresql", "mysql"), default="postgresql")
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-offset-") as scratch, Services(Path(scratch)) as services:
        target = services.store(args.store)
        _fill(target, args.rows)
        for offset, ms in asyncio.run(_run(target.url, args.repeat)):
            print(f"{args.store} {args.rows} rows: 100 at offset {offset}: p50 {ms:.1f} ms", flush=True)


if __name__ == "__main__":
    main()
