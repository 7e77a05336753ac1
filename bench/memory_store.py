"""What one stored object costs the memory backend (``memory://``), in bytes of the process.

    .venv/bin/python -m bench.memory_store --objects 100000

Applies the generator's pods (``bench.limits.synthetic_rows``: 3-8 KB of JSON each, labels and
owners as in the clusters) to an empty :class:`common.storage.memory.MemoryStore` in batches of
1,000, as a writer does, and drops every event once applied, so that only what the store keeps is
counted. Two fills of the same objects, each into a fresh store: one with ``tracemalloc`` (bytes
Python allocated and still holds after a full collection, per object) and one without it (the
process's RSS growth per object, which also counts allocator slack and freed pages not returned).
The JSON text of an object is the floor: the store keeps the event's bytes as they are, and the
rest is the row around them (identity strings, parsed labels, the bucket's key and dict slot).
Prints a table; the figures go into bench/notes.md by hand. Bounded: ``--objects`` (at most
1,000,000) per fill and ``--max-seconds`` per fill (a fill stops early and says how far it got).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import os
import time
import tracemalloc
from collections.abc import Iterator

from bench.limits import synthetic_rows
from bench.processes import rss_bytes
from common.events import ResourceType, Upsert
from common.storage.memory import MemoryStore

MAX_OBJECTS = 1_000_000
BATCH = 1000
CREATED_AT = "2026-01-01T00:00:00Z"  # the creationTimestamp synthetic_rows puts in every object


@dataclasses.dataclass(frozen=True)
class Fill:
    objects: int
    json_bytes: int  # the objects' JSON text, summed
    grown_bytes: int  # what the store holds after the fill (tracemalloc) or RSS growth
    seconds: float

    @property
    def per_object(self) -> float:
        return self.grown_bytes / self.objects if self.objects else 0.0

    @property
    def json_per_object(self) -> float:
        return self.json_bytes / self.objects if self.objects else 0.0


def batches(count: int) -> Iterator[list[Upsert]]:
    """The generator's pods as writer batches of upserts (built lazily: one batch alive at a time)."""
    batch: list[Upsert] = []
    for row in synthetic_rows(count):
        batch.append(
            Upsert(
                row["cluster"],
                row["api_group"],
                row["version"],
                row["resource"],
                row["kind"],
                row["namespace"],
                row["name"],
                row["uid"],
                row["resource_version"],
                row["epoch"],
                row["owner_uid"],
                CREATED_AT,
                row["object"].encode(),
            )
        )
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def fill(count: int, max_seconds: float, *, traced: bool) -> tuple[MemoryStore, Fill]:
    """Fill a fresh store with ``count`` objects (or as many as ``max_seconds`` allow); measure."""
    types = [ResourceType("bench", "", "v1", "pods", "Pod", True, ["po"], ["get", "list"], "v1")]
    gc.collect()
    if traced:
        tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0] if traced else rss_bytes(os.getpid())
    store = MemoryStore()
    store.apply([], [], types)
    began = time.monotonic()
    n = json_bytes = 0
    for batch in batches(count):
        store.apply(batch, [], [])
        n += len(batch)
        json_bytes += sum(len(u.object) for u in batch)
        del batch
        if time.monotonic() - began > max_seconds:
            break
    seconds = time.monotonic() - began
    gc.collect()
    after = tracemalloc.get_traced_memory()[0] if traced else rss_bytes(os.getpid())
    if traced:
        tracemalloc.stop()
    return store, Fill(n, json_bytes, after - before, seconds)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.memory_store", description=__doc__.splitlines()[0])
    p.add_argument("--objects", type=int, default=100_000, help=f"objects per fill (at most {MAX_OBJECTS})")
    p.add_argument("--max-seconds", type=float, default=300.0, help="a fill stops after this long")
    ns = p.parse_args(argv)
    count = max(1, min(ns.objects, MAX_OBJECTS))
    rows: list[tuple[str, Fill]] = []
    for name, traced in (("RSS growth", False), ("tracemalloc (held after gc)", True)):
        store, measured = fill(count, ns.max_seconds, traced=traced)
        rows.append((name, measured))
        del store  # the next fill starts from an empty store
        gc.collect()
    print(f"memory:// store, {rows[0][1].objects:,} pods of the generator, batches of {BATCH}")
    print("| measure | objects | JSON B/object | B/object | beyond the JSON | fill s |")
    print("|---|---|---|---|---|---|")
    for name, f in rows:
        print(
            f"| {name} | {f.objects:,} | {f.json_per_object:,.0f} | {f.per_object:,.0f} |"
            f" {f.per_object - f.json_per_object:,.0f} | {f.seconds:.1f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
