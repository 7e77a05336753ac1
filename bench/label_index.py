"""Label selectors on SQLite and MySQL/MariaDB: the label table against reading every object.

    .venv/bin/python -m bench.label_index --store sqlite --rows 200000
    .venv/bin/python -m bench.label_index --store mysql --rows 200000

Fills an empty store with the generator's pods (``bench.limits.synthetic_rows``: 3-8 KB objects,
five labels each plus pod-template-hash, ten namespaces, seven pods per app) spread over two
clusters, through the writer's guarded upsert in batches of ``bench.limits.INSERT_BATCH``, once with the label
triggers and once without them (the cost they add to every write), then times label-selector
statements exactly as the API tier builds them (``list_statement``/``count_statement``), with the
label table (``label_index=True``) and without it (the JSON scan an older release ran), same rows,
same process, alternating. Prints a table; the figures go into docs/performance.md by hand.
Bounded: one fill per mode, ``--repeat`` timings per statement.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from bench.limits import row_batches, synthetic_rows
from bench.services import Services, Store
from common.storage.query import LabelRequirement, Operator, OrderBy, Search
from common.storage.sql.reading import SqlReader
from common.storage.sql.schema import LABEL_TRIGGERS, label_dialect
from common.storage.sql.selects import LabelIndex, count_statement, is_positive, list_statement
from common.storage.sql.upserts import upsert_resources


def _fill(store: Store, rows: int, *, triggers: bool) -> tuple[float, Engine]:
    """Empty store, then ``rows`` upserted; seconds the upserts took (triggers on or off)."""
    store.reset()
    engine = store.engine(pool_size=2)
    kind = label_dialect(engine.dialect.name)
    if not triggers and kind is not None:
        with engine.begin() as conn:
            for name in LABEL_TRIGGERS[kind]:
                conn.execute(text(f"DROP TRIGGER IF EXISTS {name}"))
    stmt = upsert_resources(engine.dialect.name)
    batches = row_batches(
        {**row, "cluster": f"cluster-{i % 2}"} for i, row in enumerate(synthetic_rows(rows))
    )
    start = time.perf_counter()
    for b in batches:
        with engine.begin() as conn:
            conn.execute(stmt, b)
    seconds = time.perf_counter() - start
    with engine.begin() as conn:
        conn.execute(text("ANALYZE" if engine.dialect.name == "sqlite" else "ANALYZE TABLE resources"))
        if triggers and engine.dialect.name != "sqlite":
            conn.execute(text("ANALYZE TABLE resource_labels"))
    return seconds, engine


def _label(key: str, op: Operator, *values: str) -> LabelRequirement:
    return LabelRequirement(key, op, tuple(values))


def _queries() -> list[tuple[str, Search, bool]]:
    """(what, search, count instead of list): the query mix's label queries and a few more."""

    def pods(**kw: Any) -> Search:
        return Search(group="", resource="pods", **kw)

    app = "app-01000"  # seven pods per app, in one namespace
    return [
        (
            "all clusters, app=<one app> (the mix's b)",
            pods(labels=(_label("app", Operator.EQUALS, app),)),
            False,
        ),
        (
            "1 cluster + ns + tier=frontend + orderby name + limit 100 (a)",
            pods(
                single_cluster="cluster-0",
                namespace="bench-04",
                labels=(_label("tier", Operator.EQUALS, "frontend"),),
                orderby=(OrderBy("name"),),
                limit=100,
            ),
            False,
        ),
        (
            "all clusters, app=<one app>,env!=prod",
            pods(
                labels=(_label("app", Operator.EQUALS, app), _label("env", Operator.NOT_EQUALS, "prod")),
            ),
            False,
        ),
        (
            "all clusters, tier in (frontend,cache), limit 100",
            pods(labels=(_label("tier", Operator.IN, "frontend", "cache"),), limit=100),
            False,
        ),
        (
            "all clusters, !tier (matches none)",
            pods(labels=(_label("tier", Operator.DOES_NOT_EXIST),)),
            False,
        ),
        (
            "count of tier=frontend (withRemainingCount)",
            pods(labels=(_label("tier", Operator.EQUALS, "frontend"),)),
            True,
        ),
    ]


def _time(engine: Engine, search: Search, count: bool, label_index: LabelIndex | None) -> tuple[float, int]:
    dialect = engine.dialect.name
    limit = search.page_size + 1 if search.page_size is not None else None
    stmt = (
        count_statement(search, dialect, label_index=label_index)
        if count
        else list_statement(search, dialect, limit=limit, label_index=label_index)
    )
    with engine.connect() as conn:
        start = time.perf_counter()
        result = conn.execute(stmt)
        n = int(result.scalar_one()) if count else len(result.all())
        return time.perf_counter() - start, n


def _drive(search: Search) -> LabelIndex:
    return LabelIndex(drive=next(i for i, r in enumerate(search.labels) if is_positive(r)))


def run(store: Store, rows: int, repeat: int, say: Callable[[str], None]) -> None:
    bare, engine = _fill(store, rows, triggers=False)
    engine.dispose()
    say(
        f"{store.kind}: {rows} rows upserted without label triggers in {bare:.1f} s"
        f" ({rows / bare:,.0f} rows/s)"
    )
    indexed, engine = _fill(store, rows, triggers=True)
    say(
        f"{store.kind}: {rows} rows upserted with label triggers in {indexed:.1f} s"
        f" ({rows / indexed:,.0f} rows/s, {100 * (indexed - bare) / bare:+.0f} %)"
    )
    try:
        say(
            f"\n| query ({store.kind}, {rows} rows; p50 ms of {repeat}) | rows | objects scanned |"
            " label probe per row | start from the label | API tier picks (incl. its count) |"
        )
        say("|---|---|---|---|---|---|")
        reader = SqlReader(engine)
        for what, search, count in _queries():
            plans: dict[str, LabelIndex | None] = {"scan": None, "probe": LabelIndex()}
            if any(is_positive(r) for r in search.labels):
                plans["drive"] = _drive(search)
            times: dict[str, list[float]] = {name: [] for name in (*plans, "picked")}
            results: set[int] = set()
            picked_name = ""
            for _ in range(repeat):
                for name, plan in plans.items():
                    seconds, n = _time(engine, search, count, plan)
                    times[name].append(seconds)
                    results.add(n)
                with engine.connect() as conn:
                    start = time.perf_counter()
                    picked = reader.label_plan(conn, search)
                    if count and picked is not None:
                        picked = picked.for_count()  # as the API tier counts withRemainingCount
                    planning = time.perf_counter() - start
                picked_name = "drive" if picked is not None and picked.drive is not None else "probe"
                seconds, n = _time(engine, search, count, picked)
                times["picked"].append(planning + seconds)
                results.add(n)
            assert len(results) == 1, f"{what}: the plans disagree ({results})"
            cells = [
                f"{1000 * statistics.median(times[n]):,.1f}" if times.get(n) else "-"
                for n in ("scan", "probe", "drive")
            ]
            say(
                f"| {what} | {results.pop()} | {' | '.join(cells)}"
                f" | {picked_name}: {1000 * statistics.median(times['picked']):,.1f} |"
            )
    finally:
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--store", choices=("sqlite", "mysql"), default="sqlite")
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-labels-") as scratch, Services(Path(scratch)) as services:
        run(services.store(args.store), args.rows, args.repeat, lambda line: print(line, flush=True))


if __name__ == "__main__":
    main()
