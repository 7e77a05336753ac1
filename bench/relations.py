"""Relationship queries at 1M rows: what a relation costs beyond the plain list it becomes.

    .venv/bin/python -m bench.relations --store sqlite --rows 1000000
    .venv/bin/python -m bench.relations --store postgresql --rows 1000000
    .venv/bin/python -m bench.relations --store mysql --rows 1000000

Fills an empty store through the writer's guarded upsert (batches of ``bench.limits.INSERT_BATCH``,
label triggers on) with ``--rows`` objects shaped as a fleet: two clusters, ten namespaces each;
per app a Deployment, its ReplicaSet, five Pods (controller ownerReferences, labels ``app``,
``tier``, ``pod-template-hash``, ``spec.nodeName`` one of 500 Nodes), a Service selecting
``app`` and two Events about the ReplicaSet (ten rows per app), plus the Nodes. Then times each
relation through ``StoreReader.list_objects`` as the API tier calls it (kubectl's ``limit=500``),
``--repeat`` times on different subjects (p50 / max ms), beside the plain search the relation
becomes (what a user who already knew the uids, selector or node name would send), the two
alternating which reads a subject first (the second finds its pages cached). Prints a
table; the figures go into bench/notes.md by hand. Bounded: one fill, ``--repeat`` timings each.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
from sqlalchemy import text
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.elements import ClauseElement

from bench.limits import INSERT_BATCH
from bench.services import Services, Store
from common.events import ResourceType
from common.storage import open_store, relations
from common.storage.query import (
    FieldRequirement,
    GroupResource,
    LabelRequirement,
    Operator,
    Search,
    SetFilter,
)
from common.storage.relations import Relation, RelationKind, Subject
from common.storage.sql.reading import SqlReader
from common.storage.sql.relations import SqlLookups
from common.storage.sql.selects import list_statement
from common.storage.sql.store import SqlStore
from common.storage.sql.upserts import upsert_resources

CLUSTERS = ("cluster-0", "cluster-1")
NAMESPACES = 10
NODES = 500
PODS = 5
ROWS_PER_APP = 1 + 1 + PODS + 1 + 2
TIERS = ("frontend", "backend", "cache", "batch")
_enc = msgspec.json.Encoder()


def _uid(kind: str, cluster: int, app: int, n: int = 0) -> str:
    return f"{kind}-{cluster}-{app:07d}-{n}"


def _ns(app: int) -> str:
    return f"ns-{app % NAMESPACES:02d}"


def _rows(apps: int) -> Iterator[dict[str, Any]]:
    now = dt.datetime(2026, 1, 1)
    rv = 0

    def row(
        c: int, group: str, resource: str, kind: str, ns: str, name: str, uid: str, owner: str, obj: Any
    ) -> dict[str, Any]:
        nonlocal rv
        rv += 1
        meta = {"name": name, "uid": uid, "resourceVersion": str(rv), **({"namespace": ns} if ns else {})}
        obj["metadata"] = {**meta, **obj.get("metadata", {})}
        obj["apiVersion"], obj["kind"] = (f"{group}/v1" if group else "v1"), kind
        return {
            "cluster": CLUSTERS[c],
            "api_group": group,
            "version": "v1",
            "resource": resource,
            "kind": kind,
            "namespace": ns,
            "name": name,
            "uid": uid,
            "owner_uid": owner,
            "resource_version": rv,
            "epoch": 1,
            "created_at": now,
            "synced_at": now,
            "deleted": False,
            "object": _enc.encode(obj).decode(),
            "revision": rv,
            "created_revision": rv,
        }

    for c in range(len(CLUSTERS)):
        for n in range(NODES):
            yield row(c, "", "nodes", "Node", "", f"node-{n:03d}", f"node-{c}-{n}", "", {"spec": {}})
    for a in range(apps):
        c, app = a % len(CLUSTERS), a // len(CLUSTERS)
        ns, name = _ns(app), f"app-{app:07d}"
        labels = {"app": name, "tier": TIERS[app % len(TIERS)]}
        ref = {"controller": True}
        d, rs = _uid("d", c, app), _uid("rs", c, app)
        spec = {"replicas": PODS, "selector": {"matchLabels": {"app": name}}}
        yield row(
            c,
            "apps",
            "deployments",
            "Deployment",
            ns,
            name,
            d,
            "",
            {"metadata": {"labels": labels}, "spec": spec},
        )
        meta = {"labels": labels, "ownerReferences": [{**ref, "kind": "Deployment", "name": name, "uid": d}]}
        yield row(
            c, "apps", "replicasets", "ReplicaSet", ns, f"{name}-rs", rs, d, {"metadata": meta, "spec": spec}
        )
        for p in range(PODS):
            pod_meta = {
                "labels": {**labels, "pod-template-hash": f"h{app % 97}"},
                "ownerReferences": [{**ref, "kind": "ReplicaSet", "name": f"{name}-rs", "uid": rs}],
            }
            pod_spec = {"nodeName": f"node-{(app * PODS + p) % NODES:03d}", "containers": [{"name": "c"}]}
            pod = {"metadata": pod_meta, "spec": pod_spec, "status": {"phase": "Running"}}
            yield row(c, "", "pods", "Pod", ns, f"{name}-{p}", _uid("p", c, app, p), rs, pod)
        svc = {"spec": {"selector": {"app": name}, "ports": [{"port": 80}]}}
        yield row(c, "", "services", "Service", ns, name, _uid("s", c, app), "", svc)
        for e in range(2):
            about = {"kind": "ReplicaSet", "name": f"{name}-rs", "namespace": ns, "uid": rs}
            ev = {"involvedObject": about, "reason": "SuccessfulCreate", "message": f"created pod {e}"}
            yield row(c, "", "events", "Event", ns, f"{name}-rs.{e}", _uid("e", c, app, e), rs, ev)


def _fill(store: Store, rows: int) -> tuple[float, int]:
    store.reset()
    engine = store.engine(pool_size=1)
    stmt = upsert_resources(engine.dialect.name)
    apps = max(1, (rows - NODES * len(CLUSTERS)) // ROWS_PER_APP)
    written, batch = 0, []
    start = time.perf_counter()
    for r in _rows(apps):
        batch.append(r)
        if len(batch) == INSERT_BATCH:
            with engine.begin() as conn:
                conn.execute(stmt, batch)
            written, batch = written + len(batch), []
    if batch:
        with engine.begin() as conn:
            conn.execute(stmt, batch)
        written += len(batch)
    seconds = time.perf_counter() - start
    with engine.begin() as conn:
        if engine.dialect.name == "mysql":
            conn.execute(text("ANALYZE TABLE resources, resource_labels"))
        else:
            conn.execute(text("ANALYZE"))
    engine.dispose()
    return seconds, apps


def _search(gr: GroupResource, **kw: Any) -> Search:
    return Search(group=gr.group, resource=gr.resource, version="v1", limit=500, **kw)


DEPLOYMENTS, REPLICASETS = GroupResource("apps", "deployments"), GroupResource("apps", "replicasets")
PODS_GR, NODES_GR, EVENTS_GR = (
    GroupResource("", "pods"),
    GroupResource("", "nodes"),
    GroupResource("", "events"),
)


def _queries(apps: int) -> list[tuple[str, Callable[[int], Search]]]:
    """(what, subject index -> search), in pairs: each relation, then the plain search it becomes."""

    def pick(i: int) -> tuple[int, int, str, str]:
        a = (i * 7919 + 13) % apps
        c, app = a % len(CLUSTERS), a // len(CLUSTERS)
        return c, app, CLUSTERS[c], _ns(app)

    def rel(kind: RelationKind, **subject: Any) -> Relation:
        return Relation(kind, Subject(**subject))

    def owners_of_pod(gr: GroupResource, kind: RelationKind) -> Callable[[int], Search]:
        return lambda i: _search(gr, relation=rel(kind, uid=_uid("p", pick(i)[0], pick(i)[1], 2)))

    def uid_in(gr: GroupResource, kind: str) -> Callable[[int], Search]:
        def make(i: int) -> Search:
            c, app, _, _ = pick(i)
            uid = FieldRequirement(("metadata", "uid"), Operator.IN, (_uid(kind, c, app),))
            return _search(gr, clusters=SetFilter((CLUSTERS[c],)), fields=(uid,))

        return make

    def owners_by_name(i: int) -> Search:
        _, app, cluster, ns = pick(i)
        subject = {
            "name": f"app-{app:07d}-1",
            "group": "",
            "resource": "pods",
            "namespace": ns,
            "cluster": cluster,
        }
        return _search(
            REPLICASETS, single_cluster=cluster, namespace=ns, relation=rel(RelationKind.OWNERS, **subject)
        )

    def selected(i: int) -> Search:
        _, app, cluster, ns = pick(i)
        subject = {
            "name": f"app-{app:07d}",
            "group": "",
            "resource": "services",
            "namespace": ns,
            "cluster": cluster,
        }
        return _search(
            PODS_GR, single_cluster=cluster, namespace=ns, relation=rel(RelationKind.SELECTED, **subject)
        )

    def by_label(i: int) -> Search:
        _, app, cluster, ns = pick(i)
        app_label = LabelRequirement("app", Operator.EQUALS, (f"app-{app:07d}",))
        return _search(PODS_GR, single_cluster=cluster, namespaces=SetFilter((ns,)), labels=(app_label,))

    def node(i: int) -> Search:
        c, app, _, _ = pick(i)
        return _search(NODES_GR, relation=rel(RelationKind.NODE, uid=_uid("p", c, app, 3)))

    def node_by_name(i: int) -> Search:
        _, app, cluster, _ = pick(i)
        name = f"node-{(app * PODS + 3) % NODES:03d}"
        return _search(NODES_GR, clusters=SetFilter((cluster,)), names=SetFilter((name,)))

    def events(i: int) -> Search:
        c, app, _, ns = pick(i)
        return _search(EVENTS_GR, namespace=ns, relation=rel(RelationKind.EVENTS, uid=_uid("rs", c, app)))

    def events_by_field(i: int) -> Search:
        c, app, cluster, ns = pick(i)
        about = FieldRequirement(("involvedObject", "uid"), Operator.IN, (_uid("rs", c, app),))
        return _search(EVENTS_GR, namespace=ns, clusters=SetFilter((cluster,)), fields=(about,))

    def forward(i: int) -> Search:
        c, app, _, _ = pick(i)
        return _search(PODS_GR, owner_uid=_uid("d", c, app), owner_seniority=1)

    rs_uid, d_uid = uid_in(REPLICASETS, "rs"), uid_in(DEPLOYMENTS, "d")
    return [
        ("owners of a pod (ofUID), listing replicasets", owners_of_pod(REPLICASETS, RelationKind.OWNERS)),
        ("  plain: replicasets with that uid (1 cluster)", rs_uid),
        ("owners of a pod (ofUID), listing deployments", owners_of_pod(DEPLOYMENTS, RelationKind.OWNERS)),
        ("  plain: deployments with that uid (1 cluster)", d_uid),
        (
            "top-owner of a pod (ofUID), listing deployments",
            owners_of_pod(DEPLOYMENTS, RelationKind.TOP_OWNER),
        ),
        ("  plain: deployments with that uid (1 cluster)", d_uid),
        ("owners of a pod (ofName, cluster + namespace), replicasets", owners_by_name),
        ("  plain: replicasets with that uid (1 cluster)", rs_uid),
        ("pods selected by a Service (ofName, cluster + namespace)", selected),
        ("  plain: pods with its selector app=X (cluster + namespace)", by_label),
        ("node of a pod (ofUID)", node),
        ("  plain: the node by name (1 cluster)", node_by_name),
        ("events of a ReplicaSet (ofUID, namespace)", events),
        ("  plain: field selector involvedObject.uid (1 cluster, namespace)", events_by_field),
        ("today's owner query, forward: pods of a deployment (ownerUID, seniority 1)", forward),
        ("  the same again (reference)", forward),
    ]


def run(
    bench_store: Store, rows: int, repeat: int, say: Callable[[str], None], *, explain: bool = False
) -> None:
    seconds, apps = _fill(bench_store, rows)
    store = open_store(bench_store.url)
    assert isinstance(store, SqlStore)
    try:
        kinds = [("apps", "deployments", "Deployment"), ("apps", "replicasets", "ReplicaSet")]
        kinds += [
            ("", r, k)
            for r, k in (("pods", "Pod"), ("services", "Service"), ("nodes", "Node"), ("events", "Event"))
        ]
        store.apply(
            [],
            [],
            [
                ResourceType(c, g, "v1", r, k, r != "nodes", [], ["list"], "v1")
                for c in CLUSTERS
                for g, r, k in kinds
            ],
        )
        total = apps * ROWS_PER_APP + NODES * len(CLUSTERS)
        rate = total / seconds
        say(f"{bench_store.kind}: {total:,} rows ({apps:,} apps) in {seconds:.0f} s ({rate:,.0f} rows/s)")
        say(f"\n| query ({bench_store.kind}, {total:,} rows; p50 / max ms of {repeat}) | items | ms |")
        say("|---|---|---|")
        queries = _queries(apps)
        # each relation and its plain search in pairs, alternating which goes first on each
        # subject: the second of two reads of the same subject finds its pages cached
        for (what, make), (plain_what, plain) in zip(queries[::2], queries[1::2], strict=True):
            samples: dict[str, list[float]] = {what: [], plain_what: []}
            found: dict[str, set[int]] = {what: set(), plain_what: set()}
            for i in range(repeat):
                pair = [(what, make), (plain_what, plain)]
                for name, build in pair if i % 2 == 0 else pair[::-1]:
                    search = build(i)
                    t0 = time.perf_counter()
                    page = asyncio.run(store.list_objects(search))
                    samples[name].append(time.perf_counter() - t0)
                    found[name].add(len(page.items))
            for name in (what, plain_what):
                items = ",".join(map(str, sorted(found[name])))
                p50, worst = 1000 * statistics.median(samples[name]), 1000 * max(samples[name])
                say(f"| {name} | {items} | {p50:,.2f} / {worst:,.2f} |")
        if explain:
            _explain(store, _queries(apps), say)
    finally:
        store.close()


class _Explain(Executable, ClauseElement):
    """``EXPLAIN <statement>`` with the statement's parameters bound as the store binds them (a
    label containment is JSONB, which has no literal form)."""

    inherit_cache = False

    def __init__(self, stmt: Any, prefix: str) -> None:
        self.stmt, self.prefix = stmt, prefix


@compiles(_Explain)
def _compile_explain(element: _Explain, compiler: Any, **kw: Any) -> str:
    return element.prefix + str(compiler.process(element.stmt, **kw))


def _explain(
    store: SqlStore, queries: list[tuple[str, Callable[[int], Search]]], say: Callable[[str], None]
) -> None:
    """The database's plan of each relation's final statement (after ``relations.resolve``)."""
    engine = store.engine
    dialect = engine.dialect.name
    prefix = {"sqlite": "EXPLAIN QUERY PLAN ", "postgresql": "EXPLAIN ", "mysql": "EXPLAIN "}[dialect]
    reader = SqlReader(engine)
    with engine.connect() as conn:
        for what, make in queries:
            search = make(1)
            if search.relation is None:
                continue
            resolved = relations.resolve(search, SqlLookups(conn))
            labels = reader.label_plan(conn, resolved)  # as the store plans label requirements
            stmt = list_statement(resolved, dialect, limit=501, label_index=labels)
            say(f"\nplan of {what}:")
            for row in conn.execute(_Explain(stmt, prefix)).all():
                say("    " + " | ".join(str(c) for c in row if c is not None))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--store", choices=("sqlite", "postgresql", "mysql"), default="sqlite")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=21)
    parser.add_argument("--explain", action="store_true", help="print the plan of each relation's statement")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="bench-relations-") as scratch,
        Services(Path(scratch)) as services,
    ):
        say = lambda line: print(line, flush=True)  # noqa: E731
        run(services.store(args.store), args.rows, args.repeat, say, explain=args.explain)


if __name__ == "__main__":
    main()
