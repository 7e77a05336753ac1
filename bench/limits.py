"""The physical references every sync figure is divided by.

* Upstream limit: how fast the member kube-apiserver can be listed at all, paged with
  ``limit=500`` as the synchro lists, by one client that only splits the page into raw items
  (msgspec, items kept as ``Raw``) and follows ``continue``. Nothing downstream can beat it.
* Downstream limit: how fast the store takes rows of the ``resources`` table as multi-row INSERTs
  through SQLAlchemy Core (``executemany``, which SQLAlchemy turns into multi-row VALUES on
  PostgreSQL and PyMySQL into one multi-row statement on MariaDB), batches of 1,000 rows committed
  one by one, on an empty table with all its indexes. When the writer's own guarded upsert
  statement is importable, its rate is measured the same way (the SQL cost a writer cannot avoid).
"""

from __future__ import annotations

import datetime as dt
import random
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import msgspec
from sqlalchemy import Engine, Insert, insert

from bench import generate as gen
from bench.members import Member
from bench.processes import cpu_seconds, server_pids
from bench.services import Store
from common.storage.sql.schema import resources

LIST_PAGE = 500
INSERT_BATCH = 1000


class _ListMeta(msgspec.Struct):
    cont: str = msgspec.field(default="", name="continue")


class _RawList(msgspec.Struct):
    items: list[msgspec.Raw]
    metadata: _ListMeta


_raw_list = msgspec.json.Decoder(_RawList)

LISTED_RESOURCES = ("/apis/apps/v1/deployments", "/apis/apps/v1/replicasets", "/api/v1/pods")


@dataclass
class ListRate:
    objects: int
    bytes: int
    seconds: float
    pages: int
    client_cpu_seconds: float = 0.0
    server_cpu_seconds: float = 0.0
    """kube-apiserver + etcd of the member."""

    @property
    def objects_per_second(self) -> float:
        return self.objects / self.seconds if self.seconds else 0.0


async def list_rate(
    member: Member, paths: tuple[str, ...] = LISTED_RESOURCES, repeat: int = 3, *, gzip: bool = False
) -> ListRate:
    """Best of ``repeat`` full paged lists of ``paths`` (sequential, one connection).

    ``gzip``: accept gzip (httpx's default); kube-apiserver then compresses every page above
    128 KiB, and both ends pay for it even on loopback."""
    best: ListRate | None = None
    async with member.client(concurrency=1, timeout_seconds=120) as client:
        client.headers["Accept-Encoding"] = "gzip" if gzip else "identity"
        for _ in range(repeat):
            objects = size = pages = 0
            server0 = sum(cpu_seconds(pid) for _, pid in member.pids)
            client0 = time.process_time()
            start = time.perf_counter()
            for path in paths:
                cont = ""
                while True:
                    params = {"limit": str(LIST_PAGE)}
                    if cont:
                        params["continue"] = cont
                    resp = await client.get(path, params=params)
                    resp.raise_for_status()
                    body = _raw_list.decode(resp.content)
                    objects += len(body.items)
                    size += len(resp.content)
                    pages += 1
                    cont = body.metadata.cont
                    if not cont:
                        break
            run = ListRate(
                objects,
                size,
                time.perf_counter() - start,
                pages,
                time.process_time() - client0,
                sum(cpu_seconds(pid) for _, pid in member.pids) - server0,
            )
            if best is None or run.objects_per_second > best.objects_per_second:
                best = run
    assert best is not None
    return best


def synthetic_pod(i: int, namespace: str, app: str, rng: random.Random) -> tuple[dict[str, Any], str]:
    """The generator's pod number ``i`` (same sizes as in the clusters) and its ReplicaSet's uid."""
    group = gen._Group(namespace=namespace, app=app, rng_seed=rng.randrange(2**32))
    group.labels = gen._labels(random.Random(group.rng_seed), group.app)
    group.rs_name = f"{group.app}-{gen._hash(group.app + 'rs', 10)}"
    group.deployment_uid = gen._hash(f"d{i}", 32)
    group.rs_uid = gen._hash(f"r{i}", 32)
    obj = gen._pod(group, random.Random(group.rng_seed), i % 7)
    obj["metadata"].update(
        uid=gen._hash(f"p{i}", 32), resourceVersion=str(1000 + i), creationTimestamp="2026-01-01T00:00:00Z"
    )
    return obj, group.rs_uid


def pod_row(
    cluster: str, i: int, obj: dict[str, Any], owner_uid: str, now: dt.datetime, raw: bytes
) -> dict[str, Any]:
    """The ``resources`` row of pod ``obj`` (encoded as ``raw``), as the writer stores it."""
    return {
        "cluster": cluster,
        "api_group": "",
        "version": "v1",
        "resource": "pods",
        "kind": "Pod",
        "namespace": obj["metadata"]["namespace"],
        "name": f"{obj['metadata']['name']}-{i}",
        "uid": obj["metadata"]["uid"],
        "owner_uid": owner_uid,
        "resource_version": 1000 + i,
        "epoch": 1,
        "created_at": now,
        "synced_at": now,
        "deleted": False,
        "object": raw.decode(),
    }


def synthetic_rows(count: int, *, cluster: str = "bench", seed: int = 7) -> Iterator[dict[str, Any]]:
    """Rows of the ``resources`` table with the generator's objects (same sizes as in the clusters)."""
    rng = random.Random(seed)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    enc = msgspec.json.Encoder()
    for i in range(count):
        obj, rs_uid = synthetic_pod(i, f"bench-{i % 10:02d}", f"app-{i // 7:05d}", rng)
        yield pod_row(cluster, i, obj, rs_uid, now, enc.encode(obj))


def row_batches(rows: Iterable[dict[str, Any]], size: int = INSERT_BATCH) -> list[list[dict[str, Any]]]:
    """``rows`` in lists of ``size`` (the last one shorter), built before any timing starts."""
    out: list[list[dict[str, Any]]] = [[]]
    for row in rows:
        if len(out[-1]) == size:
            out.append([])
        out[-1].append(row)
    return [b for b in out if b]


@dataclass
class InsertRate:
    store: str
    statement: str
    rows: int
    bytes: int
    seconds: float
    client_cpu_seconds: float = 0.0
    """This process (SQLite does all its work here)."""
    server_cpu_seconds: float = 0.0
    """The database server's processes (PostgreSQL backends, mariadbd)."""

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


def _writer_upsert() -> Callable[[str], Insert] | None:
    try:
        from common.storage.sql.upserts import upsert_resources
    except ImportError:
        return None
    return upsert_resources


def insert_rate(store: Store, rows: int, *, statement: str = "insert") -> InsertRate:
    """Insert ``rows`` pod rows into an empty ``resources`` table; ``statement`` is ``insert`` (plain
    multi-row INSERT), ``upsert`` (the writer's guarded upsert statement from common.storage) or
    ``copy`` (PostgreSQL's COPY FROM STDIN through psycopg, the bulk path the writer could take)."""
    store.reset()
    engine = store.engine(pool_size=1)
    try:
        if statement == "copy" and engine.dialect.name != "postgresql":
            raise ValueError("COPY is PostgreSQL only")
        if statement == "upsert":
            builder = _writer_upsert()
            if builder is None:
                raise RuntimeError("common.storage.sql.upserts is not available")
            stmt: Insert = builder(engine.dialect.name)
        else:
            stmt = insert(resources)
        batches = row_batches(synthetic_rows(rows))
        size = sum(len(row["object"]) for b in batches for row in b)
        pids = server_pids(store.kind)
        server0 = sum(cpu_seconds(p) for p in pids)
        client0 = time.process_time()
        start = time.perf_counter()
        if statement == "copy":
            _copy_batches(engine, batches)
        else:
            for b in batches:
                with engine.begin() as conn:
                    conn.execute(stmt, b)
        seconds = time.perf_counter() - start
        client_cpu = time.process_time() - client0
        server_cpu = sum(cpu_seconds(p) for p in server_pids(store.kind)) - server0
    finally:
        engine.dispose()
    return InsertRate(store.kind, statement, rows, size, seconds, client_cpu, max(0.0, server_cpu))


def _copy_batches(engine: Engine, batches: list[list[dict[str, Any]]]) -> None:
    columns = list(batches[0][0]) if batches and batches[0] else []
    sql = f"COPY resources ({', '.join(columns)}) FROM STDIN"
    raw = engine.raw_connection()
    try:
        for b in batches:
            cur = raw.cursor()
            with cur.copy(sql) as copy:
                for row in b:
                    copy.write_row([row[c] for c in columns])
            raw.commit()
    finally:
        raw.close()
