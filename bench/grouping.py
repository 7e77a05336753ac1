"""Group-by counts (``StoreReader.count_groups``) at 1M rows, beside the plain count of the same search.

    .venv/bin/python -m bench.grouping --store postgresql --rows 1000000
    .venv/bin/python -m bench.grouping --store sqlite --rows 1000000
    .venv/bin/python -m bench.grouping --store mysql --rows 200000

Fills an empty store with the generator's pods (``bench.generate._pod``: 3-8 KB objects, six
labels, ten namespaces, seven pods per app) given a phase (Running 80 %, Pending 10 %, Succeeded
5 %, Failed 5 %) and a node (one of 200 per cluster), spread over ten clusters, through the
writer's guarded upsert in batches of ``bench.limits.INSERT_BATCH`` (built and written batch by
batch: 1M objects are not held in memory). Then times, through the store's reader as the API tier
calls it (``count_groups``; the SQL it runs is ``common.storage.sql.grouping.group_statement``),
each group-by of the mix and, alternating with it, ``count_objects`` of the same search (what the
same filters cost without grouping), p50 / max of ``--repeat`` in one process; on PostgreSQL also
the grouping as one statement under its LIMIT against the MATERIALIZED CTE the store sends
(alternating, same rows). Prints tables and
the database's plan of two of them; the figures go into bench/notes.md by hand. Bounded: one fill,
``--repeat`` timings per query.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
from sqlalchemy import Engine, text

from bench.limits import INSERT_BATCH, pod_row, synthetic_pod
from bench.services import Services, Store
from common.events import ResourceType
from common.storage import open_store
from common.storage.facets import FACET_PATHS, facets_of
from common.storage.grouping import GROUP_COLUMNS, GroupField
from common.storage.query import FieldRequirement, Grant, LabelRequirement, Operator, Search, SetFilter
from common.storage.sql import grouping as sql_grouping
from common.storage.sql import selects as sql_selects
from common.storage.sql.grouping import group_statement
from common.storage.sql.store import SqlStore
from common.storage.sql.upserts import upsert_resources

CLUSTERS = 10
NODES = 200
PHASES = ("Running",) * 16 + ("Pending",) * 2 + ("Succeeded", "Failed")


def _rows(count: int, seed: int = 7) -> Iterator[list[dict[str, Any]]]:
    """Batches of ``resources`` rows (pods of ``CLUSTERS`` clusters), built lazily."""
    rng = random.Random(seed)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    enc = msgspec.json.Encoder()
    batch: list[dict[str, Any]] = []
    for i in range(count):
        cluster = f"cluster-{i % CLUSTERS}"
        obj, rs_uid = synthetic_pod(i, f"bench-{(i // CLUSTERS) % 10:02d}", f"app-{i // 70:05d}", rng)
        obj["spec"]["nodeName"] = f"node-{rng.randrange(NODES):03d}"
        obj["status"] = {"phase": PHASES[rng.randrange(len(PHASES))]}
        raw = enc.encode(obj)
        phase, node_name = facets_of(raw)  # what the writer's upsert_row does
        batch.append({**pod_row(cluster, i, obj, rs_uid, now, raw), "phase": phase, "node_name": node_name})
        if len(batch) >= INSERT_BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _field(name: str) -> GroupField:
    if name in GROUP_COLUMNS:
        return GroupField(name, column=GROUP_COLUMNS[name])
    path = tuple(name.replace("['", ".").replace("']", "").split("."))
    return GroupField(name, path=path)


def _queries() -> list[tuple[str, Search]]:
    def pods(*fields: str, **kw: Any) -> Search:
        return Search(resource="pods", group_by=tuple(_field(f) for f in fields), **kw)

    team = LabelRequirement("team", Operator.EQUALS, ("team-3",))
    grants = tuple(
        Grant(f"cluster-{c}", "", "pods", namespaces=("bench-01", "bench-02", "bench-03"))
        for c in range(CLUSTERS)
    )
    return [
        ("all pods by cluster (the issue's example)", pods("cluster")),
        ("all pods by cluster, namespace", pods("cluster", "namespace")),
        ("all pods by status.phase", pods("status.phase")),
        ("all pods by cluster, status.phase", pods("cluster", "status.phase")),
        ("1 cluster by spec.nodeName", pods("spec.nodeName", single_cluster="cluster-3")),
        (
            "1 cluster + 1 namespace by status.phase",
            pods("status.phase", single_cluster="cluster-3", namespace="bench-04"),
        ),
        ("label team=team-3 by cluster", pods("cluster", labels=(team,))),
        (
            "by metadata.labels['app'], 1 namespace",
            pods("metadata.labels['app']", namespaces=SetFilter(include=("bench-05",))),
        ),
        ("member-rbac user (3 namespaces in 10 clusters) by cluster", pods("cluster", visibility=grants)),
    ]


def _timed(coro: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = asyncio.run(coro)
    return time.perf_counter() - t0, out


def run(
    bench_store: Store, n: int, repeat: int, say: Callable[[str], None], *, upgrade: bool = False
) -> None:
    bench_store.reset()
    store = open_store(bench_store.url)
    assert isinstance(store, SqlStore)
    store.migrate()
    try:
        store.apply(
            [],
            [],
            [
                ResourceType(f"cluster-{c}", "", "v1", "pods", "Pod", True, [], ["list"], "v1")
                for c in range(CLUSTERS)
            ],
        )
        engine = bench_store.engine(pool_size=1)
        stmt = upsert_resources(engine.dialect.name)
        start = time.perf_counter()
        for batch in _rows(n):
            with engine.begin() as conn:
                conn.execute(stmt, batch)
        fill = time.perf_counter() - start
        with engine.begin() as conn:
            conn.execute(text("ANALYZE" if engine.dialect.name != "mysql" else "ANALYZE TABLE resources"))
        say(f"{bench_store.kind}: {n:,} pods written in {fill:.0f} s ({n / fill:,.0f} rows/s)")
        if upgrade:
            _upgrade(store, engine, say)
            return
        say(
            f"\n| {bench_store.kind}, {n:,} pods: query | groups | objects |"
            " group-by p50 / max ms | JSON path (no facets) p50 / max ms | count p50 / max ms |"
        )
        say("|---|---|---|---|---|---|")
        for what, search in _queries():
            grouped: list[float] = []
            unfaceted: list[float] = []
            counted: list[float] = []
            found: Any = None
            total = 0
            faceted = any(f.path in FACET_PATHS for f in search.group_by)
            for _ in range(repeat):
                seconds, found = _timed(store.count_groups(search, 10_000))
                grouped.append(seconds)
                if faceted:  # the statement before facets: the paths read from the JSON
                    with _without_facets():
                        seconds, json_found = _timed(store.count_groups(search, 10_000))
                    assert json_found == found, what
                    unfaceted.append(seconds)
                plain = dataclasses.replace(search, group_by=())
                seconds, total = _timed(store.count_objects(plain))
                counted.append(seconds)
            assert sum(g.count for g in found) == total, (what, total)
            before = (
                f"{1000 * statistics.median(unfaceted):,.1f} / {1000 * max(unfaceted):,.1f}"
                if unfaceted
                else "-"
            )
            say(
                f"| {what} | {len(found):,} | {total:,} |"
                f" {1000 * statistics.median(grouped):,.1f} / {1000 * max(grouped):,.1f} | {before} |"
                f" {1000 * statistics.median(counted):,.1f} / {1000 * max(counted):,.1f} |"
            )
        _field_selectors(store, repeat, say)
        if engine.dialect.name == "postgresql":
            _compare_fence(engine, repeat, say)
        explain = {"sqlite": "EXPLAIN QUERY PLAN ", "postgresql": "EXPLAIN ", "mysql": "EXPLAIN "}
        for what, search in _queries()[:3:2]:
            compiled = group_statement(search, engine.dialect.name, limit=10_001).compile(
                engine, compile_kwargs={"literal_binds": True}
            )
            with engine.connect() as conn:
                plan = conn.execute(text(explain[engine.dialect.name] + str(compiled))).all()
            say(f"\nplan of {what}:")
            for row in plan:
                say("    " + " | ".join(str(c) for c in row if c is not None))
        engine.dispose()
    finally:
        store.close()


def _upgrade(store: SqlStore, engine: Engine, say: Callable[[str], None]) -> None:
    """Schema 2 -> 3 on the filled store: made to look like a schema-2 store (no facet columns, no
    facet indexes, no ``facets`` capability), then ``migrate`` timed (columns, indexes, backfill)."""
    with engine.begin() as conn:
        for column in FACET_PATHS.values():
            conn.execute(text(f"ALTER TABLE resources DROP COLUMN {column}"))  # drops its index too
        conn.execute(text("DELETE FROM store_features WHERE name = 'facets'"))
        conn.execute(text("UPDATE schema_version SET version = 2"))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    start = time.perf_counter()
    store.migrate()
    say(f"upgrade 2 -> 3 (columns, indexes, backfill of every row): {time.perf_counter() - start:.1f} s")
    with engine.connect() as conn:
        unfilled = conn.execute(text("SELECT count(*) FROM resources WHERE phase IS NULL")).scalar_one()
    say(f"rows left without a phase facet: {unfilled}")


@contextlib.contextmanager
def _without_facets() -> Iterator[None]:
    """The statements as they were before facets: every path read from the objects' JSON."""
    modules = (vars(sql_grouping), vars(sql_selects))
    saved = [m["facet_column"] for m in modules]
    for m in modules:
        m["facet_column"] = lambda path: None
    try:
        yield
    finally:
        for m, f in zip(modules, saved, strict=True):
            m["facet_column"] = f


def _field_selectors(store: SqlStore, repeat: int, say: Callable[[str], None]) -> None:
    """Counts and first pages (500) of kubectl's classic field selectors on the facets."""
    say(
        "\n| field selector | objects | count p50 / max ms | JSON path (no facets) count |"
        " page of 500 p50 / max ms | JSON path (no facets) page |"
    )
    say("|---|---|---|---|---|---|")
    for selector, fields in (
        ("status.phase=Failed", (FieldRequirement(("status", "phase"), Operator.EQUALS, ("Failed",)),)),
        ("spec.nodeName=node-007", (FieldRequirement(("spec", "nodeName"), Operator.EQUALS, ("node-007",)),)),
        (
            "1 cluster, spec.nodeName=node-007,status.phase=Running",
            (
                FieldRequirement(("spec", "nodeName"), Operator.EQUALS, ("node-007",)),
                FieldRequirement(("status", "phase"), Operator.EQUALS, ("Running",)),
            ),
        ),
    ):
        one = "cluster-3" if selector.startswith("1 cluster") else ""
        search = Search(resource="pods", fields=fields, single_cluster=one)
        samples: dict[str, list[float]] = {k: [] for k in ("count", "json count", "page", "json page")}
        total = 0
        for _ in range(repeat):
            for json_path in (False, True):
                with _without_facets() if json_path else contextlib.nullcontext():
                    seconds, n = _timed(store.count_objects(search))
                    samples["json count" if json_path else "count"].append(seconds)
                    seconds, _page = _timed(store.list_objects(dataclasses.replace(search, limit=500)))
                    samples["json page" if json_path else "page"].append(seconds)
                assert not total or n == total, selector
                total = n
        cells = " | ".join(
            f"{1000 * statistics.median(samples[k]):,.1f} / {1000 * max(samples[k]):,.1f}"
            for k in ("count", "json count", "page", "json page")
        )
        say(f"| {selector} | {total:,} | {cells} |")


def _compare_fence(engine: Engine, repeat: int, say: Callable[[str], None]) -> None:
    """PostgreSQL: the grouping as one statement under the LIMIT (before) and as a MATERIALIZED CTE
    the LIMIT reads (``group_statement``'s shape), alternating, same rows."""
    say("\n| PostgreSQL: query | one statement under LIMIT p50 / max ms | MATERIALIZED CTE p50 / max ms |")
    say("|---|---|---|")
    for what, search in _queries()[:5]:
        shapes = {
            "limit": group_statement(search, "postgresql").limit(10_001),
            "cte": group_statement(search, "postgresql", limit=10_001),
        }
        samples: dict[str, list[float]] = {k: [] for k in shapes}
        for _ in range(repeat):
            for name, stmt in shapes.items():
                with engine.connect() as conn:
                    t0 = time.perf_counter()
                    conn.execute(stmt).all()
                    samples[name].append(time.perf_counter() - t0)
        say(
            f"| {what} |"
            + " |".join(
                f" {1000 * statistics.median(v):,.1f} / {1000 * max(v):,.1f}" for v in samples.values()
            )
            + " |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--store", choices=("sqlite", "postgresql", "mysql"), default="sqlite")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--upgrade", action="store_true", help="time the schema 2 -> 3 upgrade instead")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="bench-grouping-") as scratch,
        Services(Path(scratch)) as services,
    ):
        run(
            services.store(args.store),
            args.rows,
            args.repeat,
            lambda line: print(line, flush=True),
            upgrade=args.upgrade,
        )


if __name__ == "__main__":
    main()
