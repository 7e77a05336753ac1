"""member-rbac's cost: the same lists for an administrator and for a user bound in many namespaces.

    .venv/bin/python -m bench.permissions --store postgresql --rows 1000000
    .venv/bin/python -m bench.permissions --store sqlite --rows 200000

Fills an empty store with the generator's pods (``bench.limits.synthetic_rows``, 3-8 KB objects)
spread over 10 clusters and 500 namespaces per cluster, plus each cluster's RBAC as a member holds
it: the ``view`` ClusterRole, ``cluster-admin`` bound to ``system:masters``, and one RoleBinding to
``view`` for the user ``dev`` in each of 100 namespaces per cluster (a fifth of the rows). Then,
through the store's reader and the API tier's own :class:`apiserver.visibility.MemberRBAC` (and
``narrowed``, as the API tier calls them), times
each query for ``host-only`` (no condition), the administrator (``system:masters``: every cluster
"everywhere") and ``dev`` (100 namespaces in each cluster), alternating, same process. The
figures include computing the grants (cached after the first request, as in the API tier).
Prints a table; the figures go into docs/performance.md by hand. Bounded: one fill, ``--repeat``
timings per query and identity.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
from sqlalchemy import text

from apiserver.permissions import User
from apiserver.visibility import MemberRBAC, narrowed
from bench.limits import row_batches, synthetic_rows
from bench.services import Services, Store
from common.events import ResourceType
from common.storage import Store as OpenStore
from common.storage import open_store
from common.storage.query import GroupResource, Search, SetFilter
from common.storage.sql.upserts import upsert_resources
from common.types import RBAC_GROUP

CLUSTERS = 10
NAMESPACES = 500
BOUND = 100
ADMIN = User("admin", frozenset({"system:masters", "system:authenticated"}))
DEV = User("dev", frozenset({"system:authenticated"}))
_enc = msgspec.json.Encoder()


def _rbac_rows(cluster: str, rv: int) -> Iterator[dict[str, Any]]:
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)

    def row(resource: str, kind: str, ns: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        nonlocal rv
        rv += 1
        obj = {
            "apiVersion": f"{RBAC_GROUP}/v1",
            "kind": kind,
            "metadata": {"name": name, "namespace": ns},
            **body,
        }
        return {
            "cluster": cluster,
            "api_group": RBAC_GROUP,
            "version": "v1",
            "resource": resource,
            "kind": kind,
            "namespace": ns,
            "name": name,
            "uid": f"{cluster}-{resource}-{ns}-{name}",
            "owner_uid": "",
            "resource_version": rv,
            "epoch": 1,
            "created_at": None,
            "synced_at": now,
            "deleted": False,
            "object": _enc.encode(obj).decode(),
        }

    ref = {"apiGroup": RBAC_GROUP, "kind": "ClusterRole"}
    yield row(
        "clusterroles",
        "ClusterRole",
        "",
        "view",
        {"rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]},
    )
    yield row(
        "clusterroles",
        "ClusterRole",
        "",
        "cluster-admin",
        {"rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]},
    )
    yield row(
        "clusterrolebindings",
        "ClusterRoleBinding",
        "",
        "cluster-admin",
        {
            "roleRef": {**ref, "name": "cluster-admin"},
            "subjects": [{"kind": "Group", "name": "system:masters"}],
        },
    )
    for n in range(BOUND):
        ns = f"ns-{n * (NAMESPACES // BOUND):03d}"
        yield row(
            "rolebindings",
            "RoleBinding",
            ns,
            "dev-view",
            {"roleRef": {**ref, "name": "view"}, "subjects": [{"kind": "User", "name": "dev"}]},
        )


def _rows(count: int) -> Iterator[dict[str, Any]]:
    for i, row in enumerate(synthetic_rows(count)):
        yield {
            **row,
            "cluster": f"cluster-{i % CLUSTERS}",
            "namespace": f"ns-{(i // CLUSTERS) % NAMESPACES:03d}",
        }
    for c in range(CLUSTERS):
        yield from _rbac_rows(f"cluster-{c}", 10_000_000 * (c + 1))


def _fill(store: Store, rows: int) -> float:
    store.reset()
    engine = store.engine(pool_size=2)
    try:
        stmt = upsert_resources(engine.dialect.name)
        batches = row_batches(_rows(rows))
        start = time.perf_counter()
        for b in batches:
            with engine.begin() as conn:
                conn.execute(stmt, b)
        seconds = time.perf_counter() - start
        with engine.begin() as conn:
            conn.execute(
                text(
                    "ANALYZE"
                    if engine.dialect.name in ("sqlite", "postgresql")
                    else "ANALYZE TABLE resources"
                )
            )
        return seconds
    finally:
        engine.dispose()


def register_pods(store: OpenStore) -> None:
    """The filled clusters' pods resource type: the store knows a cluster by what it serves."""
    types = [
        ResourceType(f"cluster-{c}", "", "v1", "pods", "Pod", True, [], ["get", "list"], "v1")
        for c in range(CLUSTERS)
    ]
    store.apply([], [], types)


def _queries() -> list[tuple[str, Search]]:
    pods = Search(group="", version="v1", resource="pods")
    at = dataclasses.replace
    return [
        ("all clusters, first page (limit 100)", at(pods, limit=100)),
        ("all clusters, count", at(pods, limit=1, with_remaining_count=True)),
        ("one cluster, first page (limit 100)", at(pods, single_cluster="cluster-3", limit=100)),
        ("one cluster and namespace (selective)", at(pods, single_cluster="cluster-3", namespace="ns-200")),
        (
            "two namespaces in every cluster, limit 500",
            at(pods, namespaces=SetFilter(include=("ns-100", "ns-105")), limit=500),
        ),
    ]


async def _run(store_url: str, repeat: int, say: Callable[[str], None]) -> None:
    store = open_store(store_url)
    rbac = MemberRBAC(store)
    register_pods(store)
    try:
        say(
            f"\n| query (p50 ms of {repeat}) | host-only | admin (everywhere)"
            " | dev (100 namespaces/cluster) | dev / admin | rows admin / dev |"
        )
        say("|---|---|---|---|---|---|")
        grs = (GroupResource("", "pods"),)
        for what, search in _queries():
            times: dict[str, list[float]] = {"host-only": [], "admin": [], "dev": []}
            counts: dict[str, int] = {}
            for _ in range(repeat):
                for who, user in (("host-only", None), ("admin", ADMIN), ("dev", DEV)):
                    start = time.perf_counter()
                    s = search
                    if user is not None:
                        grants = await rbac.grants(user, grs)
                        s = dataclasses.replace(search, visibility=narrowed(grants, search))
                    page = await store.list_objects(s)
                    times[who].append(time.perf_counter() - start)
                    counts[who] = len(page.items) + (page.remaining_item_count or 0)
            p50 = {k: 1000 * statistics.median(v) for k, v in times.items()}
            say(
                f"| {what} | {p50['host-only']:,.1f} | {p50['admin']:,.1f} | {p50['dev']:,.1f}"
                f" | {p50['dev'] / p50['admin']:.2f}x | {counts['admin']} / {counts['dev']} |"
            )
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--store", choices=("sqlite", "postgresql", "mysql"), default="postgresql")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="bench-permissions-") as scratch,
        Services(Path(scratch)) as services,
    ):
        target = services.store(args.store)
        seconds = _fill(target, args.rows)
        print(
            f"{args.store}: {args.rows:,} pods over {CLUSTERS} clusters filled in {seconds:.0f} s", flush=True
        )
        asyncio.run(_run(target.url, args.repeat, lambda line: print(line, flush=True)))


if __name__ == "__main__":
    main()
