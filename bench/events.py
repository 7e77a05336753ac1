"""Events: the query ``kubectl describe`` sends for an object's events, and the retention pass.

    .venv/bin/python -m bench.events --store sqlite --events 200000
    .venv/bin/python -m bench.events --store postgresql --events 200000
    .venv/bin/python -m bench.events --store mysql --events 200000

Fills an empty store with ``--events`` core/v1 Events built by the synchro's own transformer
(``common.transform.ObjectTransformer``: the subject's uid goes to ``owner_uid``) and written
through the store's ``apply`` in batches of 1,000: two clusters, ten namespaces, three events per
object (so each namespace of a cluster holds a tenth of its events), half created two days ago.
Then times, through ``StoreReader.list_objects`` as the API tier calls it (p50 of ``--repeat``):

* describe's query: path cluster and namespace, the field selector ``involvedObject.name``,
  ``.namespace``, ``.kind``, ``.uid`` and kubectl's ``limit=500``;
* the same without ``involvedObject.uid`` (what the store would read without the indexed column:
  every event of the namespace, matched by JSON path);

prints the database's plan of the first, and times ``StoreWriter.expire_events``: the age pass
(a day: the older half goes) and then the count pass (10,000 per cluster). Prints a table; the
figures go into bench/notes.md by hand. Bounded: one fill, ``--repeat`` timings per query.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import text

from bench.services import Services, Store
from common.events import ResourceType, Upsert
from common.storage import open_store
from common.storage.query import FieldRequirement, Operator, Search
from common.storage.sql.selects import list_statement
from common.storage.sql.store import SqlStore
from common.transform import ObjectTransformer
from common.types import GVR

EVENTS = GVR("", "v1", "events")
CLUSTERS = ("cluster-0", "cluster-1")
NAMESPACES = 10
PER_OBJECT = 3
BATCH = 1000


def _events(n: int) -> list[list[Upsert]]:
    """Batches of ``n`` events of ``CLUSTERS`` (three per object, the older half two days old)."""
    now = dt.datetime.now(dt.UTC)
    old, recent = (now - dt.timedelta(days=2)), now
    transformers = {c: ObjectTransformer(c, EVENTS, "Event") for c in CLUSTERS}
    batches: list[list[Upsert]] = [[]]
    for i in range(n):
        cluster = CLUSTERS[i % len(CLUSTERS)]
        obj = i // (PER_OBJECT * len(CLUSTERS))
        ns = f"ns-{obj % NAMESPACES:02d}"
        created = (old if i < n // 2 else recent).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {
            "metadata": {
                "name": f"pod-{obj:07d}.{i:x}",
                "namespace": ns,
                "uid": f"event-{i}",
                "resourceVersion": str(i + 1),
                "creationTimestamp": created,
            },
            "involvedObject": {
                "kind": "Pod",
                "namespace": ns,
                "name": f"pod-{obj:07d}",
                "uid": f"pod-uid-{cluster}-{obj}",
                "apiVersion": "v1",
            },
            "reason": "Pulled",
            "message": f"Successfully pulled image registry.example/app:{obj % 50} in 1.2s" + " " * 200,
            "type": "Normal",
            "count": 1,
            "firstTimestamp": created,
            "lastTimestamp": created,
            "source": {"component": "kubelet", "host": f"node-{obj % 40}"},
        }
        upsert = transformers[cluster].upsert(json.dumps(body).encode(), 1)
        assert upsert is not None
        if len(batches[-1]) >= BATCH:
            batches.append([])
        batches[-1].append(upsert)
    return batches


def _describe(obj: int, *, uid: bool) -> Search:
    cluster = CLUSTERS[0]
    ns = f"ns-{obj % NAMESPACES:02d}"
    fields = [
        FieldRequirement(("involvedObject", "name"), Operator.EQUALS, (f"pod-{obj:07d}",)),
        FieldRequirement(("involvedObject", "namespace"), Operator.EQUALS, (ns,)),
        FieldRequirement(("involvedObject", "kind"), Operator.EQUALS, ("Pod",)),
    ]
    if uid:
        fields.append(
            FieldRequirement(("involvedObject", "uid"), Operator.EQUALS, (f"pod-uid-{cluster}-{obj}",))
        )
    return Search(resource="events", single_cluster=cluster, namespace=ns, fields=tuple(fields), limit=500)


def run(bench_store: Store, n: int, repeat: int, say: Callable[[str], None]) -> None:
    bench_store.reset()
    store = open_store(bench_store.url)
    assert isinstance(store, SqlStore)
    store.migrate()
    try:
        store.apply(
            [], [], [ResourceType(c, "", "v1", "events", "Event", True, [], ["list"], "v1") for c in CLUSTERS]
        )
        start = time.perf_counter()
        for batch in _events(n):
            store.apply(batch, [], [])
        fill = time.perf_counter() - start
        engine = bench_store.engine(pool_size=1)
        with engine.begin() as conn:
            conn.execute(text("ANALYZE" if engine.dialect.name != "mysql" else "ANALYZE TABLE resources"))
        say(f"{bench_store.kind}: {n:,} events written in {fill:.1f} s ({n / fill:,.0f} events/s)")
        say(f"\n| query ({bench_store.kind}, {n:,} events; p50 / max ms of {repeat}) | events | ms |")
        say("|---|---|---|")
        objects = n // (PER_OBJECT * len(CLUSTERS))
        for what, uid in (("describe's query (with involvedObject.uid)", True), ("without the uid", False)):
            samples: list[float] = []
            found: set[int] = set()
            for r in range(repeat):
                search = _describe((r * 7919) % objects, uid=uid)
                t0 = time.perf_counter()
                page = asyncio.run(store.list_objects(search))
                samples.append(time.perf_counter() - t0)
                found.add(len(page.items))
            say(
                f"| {what} | {','.join(map(str, sorted(found)))} |"
                f" {1000 * statistics.median(samples):,.2f} / {1000 * max(samples):,.2f} |"
            )
        stmt = list_statement(_describe(1, uid=True), engine.dialect.name, limit=501)
        compiled = stmt.compile(engine, compile_kwargs={"literal_binds": True})
        explain = {"sqlite": "EXPLAIN QUERY PLAN ", "postgresql": "EXPLAIN ", "mysql": "EXPLAIN "}
        with engine.connect() as conn:
            plan = conn.execute(text(explain[engine.dialect.name] + str(compiled))).all()
        say("\nplan of describe's query:")
        for row in plan:
            say("    " + " | ".join(str(c) for c in row if c is not None))
        engine.dispose()
        for what, age, count in (
            ("age pass (1 day: the older half)", 86400.0, 0),
            ("count pass (10,000 per cluster)", 0.0, 10_000),
        ):
            t0 = time.perf_counter()
            gone = store.expire_events(age, count)
            seconds = time.perf_counter() - t0
            rate = gone / max(seconds, 1e-9)
            say(f"retention, {what}: {gone:,} events tombstoned in {seconds:.2f} s ({rate:,.0f}/s)")
        t0 = time.perf_counter()
        again = store.expire_events(86400.0, 10_000)
        idle = 1000 * (time.perf_counter() - t0)
        say(f"retention, a pass with nothing to do: {again} events, {idle:.1f} ms")
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--store", choices=("sqlite", "postgresql", "mysql"), default="sqlite")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=21)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-events-") as scratch, Services(Path(scratch)) as services:
        run(services.store(args.store), args.events, args.repeat, lambda line: print(line, flush=True))


if __name__ == "__main__":
    main()
