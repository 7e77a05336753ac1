"""One collection: every selected resource read from the store, written as one exposition file.

Bounded cost, whatever the store holds:

* Memory stays flat: the store is read cluster by cluster (those ``StoreReader.resource_types``
  says serve the resource) in keyset pages (``page_rows`` objects through
  ``StoreReader.list_objects``, the same paging kubectl's ``--chunk-size`` uses) and each page's
  lines go straight to disk. The text format wants a family's samples together, while one pass over
  pods yields lines of four families interleaved, so each family is spooled to its own file and the
  files are concatenated behind their ``# HELP``/``# TYPE`` lines at the end.
* Work is bounded: only the fields the families read are decoded (``kubestate.families``), and at
  most ``max_series`` series are written; beyond it the collection stops, says so in the log and in
  ``clusterpedia_kube_state_metrics_truncated``, and serves what it has.
* Scrapes never collect: the server runs one collection per interval and every scrape streams the
  last finished file (``kubestate.server``), so N concurrent scrapes cost one collection.

The store is read as a whole (``Search.visibility`` None): this tier answers to its own access
rule (docs/kube-state-metrics.md), not to the search API's callers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import msgspec

from common.storage import StoredObject, StoreReader, UnknownCluster
from common.storage.query import Search
from kubestate.families import ResourceMetrics, header

log = logging.getLogger("clusterpedia.kubestate")

WRITE_BUFFER_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class Collection:
    """What one collection wrote: ``path`` holds the exposition (without the tier's own series)."""

    path: Path
    series: int
    objects: int
    skipped: int
    """Objects whose JSON did not fit the resource's shape (logged, left out)."""
    truncated: bool
    seconds: float
    finished_at: float
    """Wall-clock time (Unix seconds) the collection finished."""


class _Output:
    """The files of one collection: the output and one spool per family of the resource at hand.
    Blocking file work, run in a worker thread (the event loop keeps serving scrapes)."""

    def __init__(self, directory: Path) -> None:
        fd, name = tempfile.mkstemp(prefix="collection-", suffix=".prom", dir=directory)
        self.path = Path(name)
        self.out = os.fdopen(fd, "w", encoding="utf-8", buffering=WRITE_BUFFER_BYTES)
        self.spool_dir = Path(tempfile.mkdtemp(prefix="spool-", dir=directory))
        self.spools: list[IO[str]] = []
        self.skipped_logged = False

    def begin(self, rm: ResourceMetrics) -> None:
        self.spools = [
            open(self.spool_dir / f"{i}.prom", "w+", encoding="utf-8", buffering=WRITE_BUFFER_BYTES)  # noqa: SIM115
            for i in range(len(rm.families))
        ]

    def add(self, rm: ResourceMetrics, items: list[StoredObject], budget: int) -> tuple[int, int, int, bool]:
        """Write the lines of one page; (series, objects, skipped, budget reached)."""
        series = objects = skipped = 0
        for item in items:
            try:
                lines = list(rm.lines(item.cluster, item.object))
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                skipped += 1
                if not self.skipped_logged:  # one line per collection, the count in a series
                    self.skipped_logged = True
                    log.warning(
                        "object left out of the kube-state metrics: its JSON does not fit"
                        " (further ones are counted in clusterpedia_kube_state_metrics_skipped_objects)",
                        extra={
                            "cluster": item.cluster,
                            "resource": rm.key,
                            "namespace": item.namespace,
                            "object": item.name,
                            "error": str(exc),
                        },
                    )
                continue
            if budget and series + len(lines) > budget:
                return series, objects, skipped, True
            for index, line in lines:
                self.spools[index].write(line)
                self.spools[index].write("\n")
            series += len(lines)
            objects += 1
        return series, objects, skipped, False

    def end(self, rm: ResourceMetrics) -> None:
        """Append the resource's families, each behind its HELP and TYPE lines."""
        for family, spool in zip(rm.families, self.spools, strict=True):
            self.out.write(header(family))
            spool.flush()
            spool.seek(0)
            shutil.copyfileobj(spool, self.out, WRITE_BUFFER_BYTES)
            spool.close()
        self.spools = []

    def close(self, *, keep: bool) -> None:
        for spool in self.spools:
            spool.close()
        self.out.close()
        shutil.rmtree(self.spool_dir, ignore_errors=True)
        if not keep:
            self.path.unlink(missing_ok=True)


async def collect(
    reader: StoreReader,
    resources: tuple[ResourceMetrics, ...],
    directory: Path,
    *,
    page_rows: int,
    max_series: int,
) -> Collection:
    """Read ``resources`` from the store into a new file in ``directory`` (the caller renames or
    removes it). ``max_series`` 0: no bound."""
    start = time.perf_counter()
    series = objects = skipped = 0
    truncated = False
    output = await asyncio.to_thread(_Output, directory)
    kept = False
    try:
        served = await reader.resource_types()
        for rm in resources:
            await asyncio.to_thread(output.begin, rm)
            clusters = sorted({r.cluster for r in served if (r.group, r.resource) == (rm.group, rm.resource)})
            for cluster in clusters:
                # One cluster at a time: the keyset is then (namespace, name) under an equality on the
                # cluster, which every backend serves in index order (across clusters, SQLite sorts
                # each cluster's rows again for every page: 2.5 s a page at 1M pods).
                search = Search(group=rm.group, resource=rm.resource, single_cluster=cluster, limit=page_rows)
                while not truncated:
                    try:
                        page = await reader.list_objects(search)
                    except UnknownCluster:
                        break  # removed since the catalog was read
                    budget = max_series - series if max_series else 0
                    n, objs, bad, truncated = await asyncio.to_thread(output.add, rm, page.items, budget)
                    series, objects, skipped = series + n, objects + objs, skipped + bad
                    if page.next is None:
                        break
                    search = dataclasses.replace(search, continue_token=page.next)
            await asyncio.to_thread(output.end, rm)
        kept = True
    finally:
        await asyncio.to_thread(output.close, keep=kept)
    seconds = time.perf_counter() - start
    if truncated:
        log.warning(
            "kube-state metrics truncated: the collection reached kube_state_metrics.max_series;"
            " later objects and resources are left out until it is raised",
            extra={"max_series": max_series, "series": series, "objects": objects},
        )
    return Collection(output.path, series, objects, skipped, truncated, seconds, time.time())
