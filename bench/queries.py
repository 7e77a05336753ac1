"""Query latency through the API tier, as kubectl sends it, beside the member kube-apiserver.

Each query of the mix is sent over HTTPS with kubectl's two Accept headers: plain JSON (``-o
json``/``-o yaml``, client-go lists) and the Table form ``kubectl get`` asks for. Latency is the
wall time of one request on a kept-alive connection, response body read. Throughput runs the
whole mix round-robin with 1, 8 and 32 requests in flight for a bounded time.

The reference is the same list sent straight to the member kube-apiserver (it cannot order by
name, search several clusters or match a fuzzy name; it answers from its watch cache).
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlencode

import aiohttp
import msgspec

from bench.generate import Generated
from bench.members import Member
from bench.stats import percentile

JSON = "application/json"
TABLE = (
    "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,"
    "application/json"
)
RESOURCES = "/apis/clusterpedia.io/v1beta1/resources"
COLLECTIONS = "/apis/clusterpedia.io/v1beta1/collectionresources"
DEEP_PAGE_SIZE = 100


@dataclass(frozen=True)
class Query:
    name: str
    path: str
    """Path and query string on the API tier."""
    reference: str = ""
    """The closest request a member kube-apiserver answers ("" when it has none)."""
    in_mix: bool = True
    """Part of the throughput mix (False: latency only; the mix stays comparable across runs)."""


@dataclass
class Latency:
    query: str
    accept: str
    target: str
    """"api" (API tier) or "member" (straight to the member kube-apiserver)."""
    samples: list[float] = field(default_factory=list)
    errors: int = 0
    bytes: int = 0

    @property
    def p50(self) -> float:
        return percentile(self.samples, 50)

    @property
    def p99(self) -> float:
        return percentile(self.samples, 99)


@dataclass
class Throughput:
    concurrency: int
    requests: int
    seconds: float
    errors: int
    samples: list[float] = field(default_factory=list)

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def _q(path: str, **params: str) -> str:
    return f"{path}?{urlencode(params)}" if params else path


OFFSET = 5_000
"""Where the offset page starts (issue 16's figure), or half the pods when fewer are stored."""


def offset_for(pods: int) -> int:
    return OFFSET if pods >= OFFSET + DEEP_PAGE_SIZE else pods // 2 // 100 * 100


def query_mix(cluster: str, gen: Generated, deep_continue: str, clusters: int = 1) -> list[Query]:
    """The issue's query mix, on the generator's data (deterministic picks); ``clusters``:
    PediaClusters holding it (the all-cluster pods behind the offset page). Then the point read and
    the offset page of issue 16, timed for latency only."""
    ns = gen.namespaces[len(gen.namespaces) // 2]
    rs_ns, _rs_name, rs_uid = gen.replicaset_uids[len(gen.replicaset_uids) // 3]
    app_ns, app = gen.deployment_names[len(gen.deployment_names) // 2]
    offset = offset_for(gen.pods * clusters)
    fuzzy = app[: len(app) - 1]  # "app-0012" matches ten deployments' pods
    one = f"{RESOURCES}/clusters/{cluster}"
    return [
        Query(
            "selective: 1 cluster + ns + label + orderby name + limit 100",
            _q(
                f"{one}/api/v1/namespaces/{ns}/pods",
                labelSelector="tier=frontend",
                orderby="name",
                limit="100",
            ),
            _q(f"/api/v1/namespaces/{ns}/pods", labelSelector="tier=frontend", limit="100"),
        ),
        Query(
            "all clusters, label only",
            _q(f"{RESOURCES}/api/v1/pods", labelSelector=f"app={app}"),
            _q("/api/v1/pods", labelSelector=f"app={app}"),
        ),
        Query(
            f"deep page via continue (limit {DEEP_PAGE_SIZE})",
            _q(f"{RESOURCES}/api/v1/pods", limit=str(DEEP_PAGE_SIZE), **{"continue": deep_continue}),
            "",
        ),
        Query(
            "owner query (ownerUID, 1 cluster)",
            _q(f"{one}/api/v1/namespaces/{rs_ns}/pods", ownerUID=rs_uid),
            "",
        ),
        Query(
            "relation: owners of a ReplicaSet (ofUID), all clusters",
            _q(f"{RESOURCES}/apis/apps/v1/deployments", relation="owners", ofUID=rs_uid),
            "",
        ),
        Query("fuzzy name, all clusters", _q(f"{RESOURCES}/api/v1/pods", fuzzyName=fuzzy, limit="100"), ""),
        Query("collection workloads, limit 100", _q(f"{COLLECTIONS}/workloads", limit="100"), ""),
        Query(
            "count: limit 1 + withRemainingCount",
            _q(f"{RESOURCES}/api/v1/pods", limit="1", withRemainingCount="true"),
            _q("/api/v1/pods", limit="1"),
        ),
        Query(
            "get one deployment by name (1 cluster)",
            f"{one}/apis/apps/v1/namespaces/{app_ns}/deployments/{app}",
            f"/apis/apps/v1/namespaces/{app_ns}/deployments/{app}",
            in_mix=False,
        ),
        Query(
            f"offset page: size 100 at offset {offset:,}, all clusters",
            _q(f"{RESOURCES}/api/v1/pods", size="100", offset=str(offset)),
            "",
            in_mix=False,
        ),
    ]


def _insecure_session(base: str, concurrency: int) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=concurrency, ssl=False)
    return aiohttp.ClientSession(base, connector=connector, timeout=aiohttp.ClientTimeout(total=60))


class _ListMeta(msgspec.Struct):
    cont: str = msgspec.field(default="", name="continue")


class _List(msgspec.Struct):
    metadata: _ListMeta


_list = msgspec.json.Decoder(_List)


async def deep_continue_token(api_url: str, pages: int) -> str:
    """The continue token of page ``pages`` of all pods (walked once, page by page)."""
    token = ""
    async with _insecure_session(api_url, 1) as session:
        for _ in range(pages):
            params = {"limit": str(DEEP_PAGE_SIZE)}
            if token:
                params["continue"] = token
            async with session.get(f"{RESOURCES}/api/v1/pods", params=params) as resp:
                body = await resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"walking pages: {resp.status} {body[:200]!r}")
            nxt = _list.decode(body).metadata.cont
            if not nxt:
                break
            token = nxt
    return token


async def _time(session: aiohttp.ClientSession, path: str, accept: str, out: Latency) -> None:
    start = time.perf_counter()
    async with session.get(path, headers={"Accept": accept}) as resp:
        body = await resp.read()
    elapsed = time.perf_counter() - start
    if resp.status != 200:
        out.errors += 1
        if out.errors == 1:
            print(f"  ! {out.target} {out.query}: HTTP {resp.status} {body[:200]!r}")
        return
    out.samples.append(elapsed)
    out.bytes = len(body)


async def measure_latency(
    api_url: str, member: Member, queries: Sequence[Query], *, samples: int, budget_seconds: float
) -> list[Latency]:
    """``samples`` sequential requests per query x Accept (fewer if ``budget_seconds`` runs out)."""
    out: list[Latency] = []
    async with _insecure_session(api_url, 1) as api, member.session(concurrency=1) as ref:
        for q in queries:
            targets: list[tuple[str, aiohttp.ClientSession, str]] = [("api", api, q.path)]
            if q.reference:
                targets.append(("member", ref, q.reference))
            for target, session, path in targets:
                for accept in (JSON, TABLE):
                    lat = Latency(q.name, "table" if accept == TABLE else "json", target)
                    await _time(session, path, accept, lat)  # warm the connection and caches
                    lat.samples.clear()
                    deadline = time.perf_counter() + budget_seconds
                    for _ in range(samples):
                        await _time(session, path, accept, lat)
                        if time.perf_counter() > deadline:
                            break
                    out.append(lat)
    return out


async def measure_throughput(
    api_url: str, queries: Sequence[Query], concurrency: int, seconds: float
) -> Throughput:
    """The mix round-robin (JSON and Table alternating) with ``concurrency`` in flight."""
    result = Throughput(concurrency, 0, 0.0, 0)
    paths = [(q.path, accept) for q in queries for accept in (JSON, TABLE)]
    counter = 0
    async with _insecure_session(api_url, concurrency) as session:
        deadline = time.perf_counter() + seconds
        start = time.perf_counter()

        async def worker() -> None:
            nonlocal counter
            while time.perf_counter() < deadline:
                path, accept = paths[counter % len(paths)]
                counter += 1
                t0 = time.perf_counter()
                async with session.get(path, headers={"Accept": accept}) as resp:
                    await resp.read()
                if resp.status == 200:
                    result.requests += 1
                    result.samples.append(time.perf_counter() - t0)
                else:
                    result.errors += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        result.seconds = time.perf_counter() - start
    return result


def decode_continue(token: str) -> str:
    """For the report: what a continue token holds (they are opaque base64 to clients)."""
    try:
        return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode(errors="replace")[:120]
    except ValueError:
        return token[:60]
