"""The benchmark run: one member cluster, one data set, every scenario on every chosen store.

Order (each scenario can be left out with ``--only``):

1. start a member kube-apiserver (harness/ ``Cluster``; it is also the host of the
   PediaClusters) and fill it with the generator;
2. limits: the member's raw paged list rate; each store's raw multi-row INSERT rate (and the
   writer's guarded upsert statement);
3. per store: initial sync of 1 cluster, then of N clusters pointing at the same member (tiers
   restarted on an empty store each time, RSS of each tier sampled); on the N-cluster system,
   while it runs: freshness under a paced update load, then query latency and throughput;
4. writer scaling: 1, 2, 4 writer processes on a pre-filled Redis stream;
5. profiles: py-spy on the synchro and the writer during a 1-cluster sync, and on the API tier
   during a throughput run.

Everything started is stopped on the way out, also on failure; a scenario that fails is recorded
in the results (and the report) with its error, and the run goes on with the next one.
"""

from __future__ import annotations

import asyncio
import shlex
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench import generate as gen
from bench import limits, machine, queries
from bench.freshness import run_freshness
from bench.initial_sync import run_initial_sync
from bench.members import Member, start_member
from bench.pediaclusters import install_crd, remove_pediaclusters
from bench.processes import tree_cpu_seconds
from bench.profiling import Recorder
from bench.services import Services, Store
from bench.stats import percentile
from bench.system import System
from bench.writer_scaling import make_events, run_scaling

SCENARIOS = ("limits", "sync", "freshness", "queries", "writers", "profile")
SYNC_STREAM = "cpbench:events"


@dataclass(frozen=True)
class Size:
    name: str
    objects: int
    namespaces: int
    clusters: tuple[int, ...]
    freshness_rates: tuple[int, ...]
    freshness_seconds: float
    latency_samples: int
    latency_budget_seconds: float
    throughput_seconds: float
    deep_pages: int
    writer_events: int
    sync_timeout_seconds: float
    freshness_every_system: bool = False
    """Freshness also on the N-cluster systems (PATCHes/s x N changes/s), not only on 1 cluster."""


SIZES = {
    "small": Size("small", 3_500, 5, (1, 4), (100, 500), 10, 20, 3, 3, 10, 3_500, 300),
    "medium": Size("medium", 14_000, 10, (1, 10), (100, 500), 25, 100, 8, 8, 50, 20_000, 900),
    "large": Size("large", 100_000, 20, (1, 3), (100, 500), 30, 100, 10, 10, 200, 50_000, 3600),
    # One million rows: the large data set behind ten PediaClusters (issue 6 allows several
    # PediaClusters on one kube-apiserver). 50 and 200 PATCH/s x 10 clusters = 500 and 2,000
    # changes/s entering the pipeline.
    "xl": Size("xl", 100_000, 20, (1, 10), (50, 200), 30, 100, 10, 10, 200, 50_000, 3600, True),
    # A hundred clusters: the small data set behind 100 PediaClusters (350,000 rows, 300 list/watch
    # streams in one synchro); 5 PATCH/s x 100 clusters = 500 changes/s.
    "fleet": Size("fleet", 3_500, 5, (100,), (5,), 30, 100, 10, 10, 50, 20_000, 1800, True),
}


@dataclass
class Options:
    size: Size
    stores: list[str]
    queue: str = ""
    """"memory", "redis" or "" (memory for SQLite, Redis for the servers)."""
    only: tuple[str, ...] = SCENARIOS
    out_dir: Path = Path("docs")
    write_doc: bool = True
    command: str = ""
    keep_scratch: bool = False
    freshness_poll_seconds: float = 0.05
    """How often the freshness scenario looks for the changes in the store."""


@dataclass
class Results:
    size: str
    command: str
    facts: dict[str, str] = field(default_factory=dict)
    generator: dict[str, Any] = field(default_factory=dict)
    upstream: dict[str, Any] = field(default_factory=dict)
    downstream: list[dict[str, Any]] = field(default_factory=list)
    sync: list[dict[str, Any]] = field(default_factory=list)
    freshness: list[dict[str, Any]] = field(default_factory=list)
    latency: list[dict[str, Any]] = field(default_factory=list)
    throughput: list[dict[str, Any]] = field(default_factory=list)
    writers: list[dict[str, Any]] = field(default_factory=list)
    profiles: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    stores: list[str] = field(default_factory=list)


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Run:
    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.results = Results(opts.size.name, opts.command, stores=list(opts.stores))
        self.scratch = Path(tempfile.mkdtemp(prefix="clusterpedia-bench-"))
        self.member: Member | None = None
        self.generated: gen.Generated | None = None
        self._prefix_n = 0
        self.services = Services(self.scratch)

    # ---------------------------------------------------------------- helpers
    def wants(self, scenario: str) -> bool:
        return scenario in self.opts.only

    @contextmanager
    def scenario(self, name: str, store: str = "") -> Iterator[None]:
        """Record a failure of one scenario and go on with the next."""
        try:
            yield
        except Exception as exc:
            log(f"FAILED {name} {store}: {type(exc).__name__}: {exc}")
            traceback.print_exc()
            self.results.errors.append(
                {"scenario": name, "store": store, "error": f"{type(exc).__name__}: {exc}"}
            )

    def queue_for(self, store: str) -> str:
        kind = self.opts.queue or ("memory" if store == "sqlite" else "redis")
        if kind == "memory":
            return "memory://"
        self.services.delete_stream(SYNC_STREAM)
        return f"{self.services.redis_url()}?stream={SYNC_STREAM}"

    def prefix(self) -> str:
        self._prefix_n += 1
        return f"b{self._prefix_n:02d}"

    def store(self, kind: str) -> Store:
        return self.services.store(kind)

    # ---------------------------------------------------------------- scenarios
    def run(self) -> Results:
        started = time.perf_counter()
        size = self.opts.size
        stores = ", ".join(self.opts.stores)
        log(f"size {size.name}: {size.objects} objects, stores {stores}, scratch {self.scratch}")
        try:
            quota = 8 * 2**30 if size.objects > 50_000 else 0
            with self.services, start_member("bench-member", self.scratch, etcd_quota_bytes=quota) as member:
                self.member = member
                self.results.facts = machine.facts(self.services.versions(), member.version)
                install_crd(member)
                plan = gen.Plan.for_objects(size.objects, namespaces=size.namespaces)
                log(f"generating {plan.objects} objects in {member.server} ...")
                g = asyncio.run(gen.generate(member, plan))
                self.generated = g
                self.results.generator = {
                    "objects": g.objects,
                    "deployments": g.deployments,
                    "replicasets": g.replicasets,
                    "pods": g.pods,
                    "namespaces": len(g.namespaces),
                    "mean_bytes": g.mean_object_bytes,
                    "seconds": g.seconds,
                    "rate": g.objects_per_second,
                }
                log(
                    f"generated {g.objects} objects ({g.mean_object_bytes:,.0f} B mean) "
                    f"at {g.objects_per_second:,.0f}/s"
                )
                if self.wants("limits"):
                    self.limits()
                for kind in self.opts.stores:
                    if self.wants("sync") or self.wants("freshness") or self.wants("queries"):
                        self.store_scenarios(kind)
                if self.wants("writers"):
                    self.writer_scaling()
                if self.wants("profile"):
                    self.profiles()
        finally:
            self.results.seconds = time.perf_counter() - started
            self.results.facts["load average at end (1/5/15 min)"] = machine.load_average()
            if not self.opts.keep_scratch:
                shutil.rmtree(self.scratch, ignore_errors=True)
        return self.results

    def limits(self) -> None:
        assert self.member is not None
        with self.scenario("upstream limit"):
            for gzip in (False, True):
                r = asyncio.run(limits.list_rate(self.member, gzip=gzip))
                entry = {
                    "objects": r.objects,
                    "seconds": r.seconds,
                    "rate": r.objects_per_second,
                    "bytes": r.bytes,
                    "pages": r.pages,
                    "client_cpu_seconds": r.client_cpu_seconds,
                    "server_cpu_seconds": r.server_cpu_seconds,
                }
                if gzip:
                    self.results.upstream["gzip"] = entry
                else:
                    self.results.upstream.update(entry)
                log(
                    f"upstream{' (gzip)' if gzip else ''}: {r.objects} objects listed at "
                    f"{r.objects_per_second:,.0f}/s ({r.bytes / max(1, r.objects):,.0f} B each)"
                )
        rows = max(self.opts.size.objects, 5000)
        for kind in self.opts.stores:
            for statement in ("insert", "upsert", "copy") if kind == "postgresql" else ("insert", "upsert"):
                with self.scenario(f"downstream limit ({statement})", kind):
                    ir = limits.insert_rate(self.store(kind), rows, statement=statement)
                    self.results.downstream.append(
                        {
                            "store": kind,
                            "statement": statement,
                            "rows": ir.rows,
                            "bytes": ir.bytes,
                            "seconds": ir.seconds,
                            "rate": ir.rows_per_second,
                            "client_cpu_seconds": ir.client_cpu_seconds,
                            "server_cpu_seconds": ir.server_cpu_seconds,
                        }
                    )
                    log(f"downstream {kind} {statement}: {ir.rows_per_second:,.0f} rows/s")

    def store_scenarios(self, kind: str) -> None:
        assert self.member is not None and self.generated is not None
        size = self.opts.size
        counts = size.clusters if self.wants("sync") else size.clusters[-1:]
        for i, clusters in enumerate(counts):
            last = i == len(counts) - 1
            with self.scenario(f"sync {clusters} cluster(s)", kind):
                store = self.store(kind)
                store.reset()
                queue_url = self.queue_for(kind)
                names: list[str] = []
                system = System(store, queue_url, self.member, self.scratch, name=f"{kind}-{clusters}")
                try:
                    system.start()
                    result, names = run_initial_sync(
                        system,
                        self.member,
                        [self.member],
                        self.generated.objects,
                        clusters,
                        prefix=self.prefix(),
                        timeout_seconds=size.sync_timeout_seconds,
                    )
                    self.results.sync.append(
                        {
                            "store": kind,
                            "queue": result.queue,
                            "clusters": clusters,
                            "objects": result.objects,
                            "seconds": result.seconds,
                            "rate": result.objects_per_second,
                            "memory": [asdict(m) for m in result.memory],
                            "other_cpu_seconds": result.other_cpu_seconds,
                            "synchro_bytes_per_object": result.synchro_bytes_per_object,
                        }
                    )
                    mem = result.memory
                    log(
                        f"sync {kind}/{result.queue} {clusters} cluster(s): {result.objects} objects in "
                        f"{result.seconds:.1f}s = {result.objects_per_second:,.0f}/s; "
                        + ", ".join(f"{m.name} {m.base_bytes >> 20}->{m.peak_bytes >> 20} MiB" for m in mem)
                    )
                    # Freshness on the 1-cluster system: changes/s are then PATCHes/s, which the one
                    # member kube-apiserver must also serve; queries on the biggest store.
                    if (i == 0 or size.freshness_every_system) and self.wants("freshness"):
                        self.freshness(system, kind, names[0], clusters)
                    if last and self.wants("queries"):
                        self.queries(system, kind, names[0], clusters)
                finally:
                    system.stop()
                    if names:
                        remove_pediaclusters(self.member, names)

    def freshness(self, system: System, kind: str, cluster: str, clusters: int) -> None:
        assert self.member is not None and self.generated is not None
        for rate in self.opts.size.freshness_rates:
            with self.scenario(f"freshness {rate}/s", kind):
                r = run_freshness(
                    system.engine(),
                    self.member,
                    cluster,
                    clusters,
                    self.generated.pod_keys,
                    rate,
                    self.opts.size.freshness_seconds,
                    self.opts.freshness_poll_seconds,
                )
                system.tiers.check()
                self.results.freshness.append(
                    {
                        "store": kind,
                        "queue": system.queue_url.split(":", 1)[0],
                        "rate": rate,
                        "clusters": clusters,
                        "poll_ms": self.opts.freshness_poll_seconds * 1000,
                        "changes_per_second": r.target_rate,
                        "achieved_changes_per_second": r.achieved_rate,
                        "patches": r.changes,
                        "seen": len(r.delays),
                        "lost": r.lost,
                        "p50": r.p50,
                        "p99": r.p99,
                        "max": r.max,
                        "watch_p50": r.watch_p50,
                        "watch_p99": r.watch_p99,
                        "watch_seen": len(r.watch_delays),
                        "pipeline_p50": r.pipeline_p50,
                        "pipeline_p99": r.pipeline_p99,
                    }
                )
                log(
                    f"freshness {kind} {rate} patches/s x {clusters} clusters: p50 {r.p50 * 1000:.0f} ms, "
                    f"p99 {r.p99 * 1000:.0f} ms, achieved {r.achieved_rate:,.0f} changes/s, lost {r.lost}; "
                    f"after the member's watch p50 {r.pipeline_p50 * 1000:.0f} ms, "
                    f"p99 {r.pipeline_p99 * 1000:.0f} ms"
                )

    def queries(self, system: System, kind: str, cluster: str, clusters: int) -> None:
        assert self.member is not None and self.generated is not None
        size = self.opts.size
        with self.scenario("query latency", kind):
            token = asyncio.run(queries.deep_continue_token(system.api_url, size.deep_pages))
            mix = queries.query_mix(cluster, self.generated, token, clusters)
            lats = asyncio.run(
                queries.measure_latency(
                    system.api_url,
                    self.member,
                    mix,
                    samples=size.latency_samples,
                    budget_seconds=size.latency_budget_seconds,
                )
            )
            for lat in lats:
                self.results.latency.append(
                    {
                        "store": kind,
                        "query": lat.query,
                        "accept": lat.accept,
                        "target": lat.target,
                        "n": len(lat.samples),
                        "errors": lat.errors,
                        "bytes": lat.bytes,
                        "p50": lat.p50,
                        "p99": lat.p99,
                    }
                )
            log(f"query latency {kind}: {len(lats)} series")
            api = system.apiserver  # None in all-in-one, where the process runs every tier
            for conc in (1, 8, 32):
                cpu0 = tree_cpu_seconds(api.pid) if api is not None else 0.0
                tp = asyncio.run(
                    queries.measure_throughput(
                        system.api_url, [q for q in mix if q.in_mix], conc, size.throughput_seconds
                    )
                )
                api_cpu = tree_cpu_seconds(api.pid) - cpu0 if api is not None else None
                self.results.throughput.append(
                    {
                        "store": kind,
                        "concurrency": conc,
                        "requests": tp.requests,
                        "errors": tp.errors,
                        "rps": tp.per_second,
                        "p50": percentile(tp.samples, 50),
                        "p99": percentile(tp.samples, 99),
                        "api_cpu_seconds": api_cpu,
                    }
                )
                per_request = f", API CPU {api_cpu / tp.requests * 1e6:,.0f} µs/request" if api_cpu else ""
                log(
                    f"query throughput {kind} c={conc}: {tp.per_second:,.1f} req/s, "
                    f"p99 {percentile(tp.samples, 99) * 1000:,.0f} ms ({tp.errors} errors){per_request}"
                )

    def writer_scaling(self) -> None:
        servers = [k for k in self.opts.stores if k != "sqlite"] or ["postgresql"]
        events = make_events(self.opts.size.writer_events)
        for kind in servers:
            for writers in (1, 2, 4):
                with self.scenario(f"writers x{writers}", kind):
                    r = run_scaling(self.store(kind), self.services, writers, events, self.scratch)
                    self.results.writers.append(
                        {
                            "store": kind,
                            "writers": writers,
                            "events": r.events,
                            "rate": r.rows_per_second,
                            "writer_cpu_seconds": r.writer_cpu_seconds,
                            "db_cpu_seconds": r.db_cpu_seconds,
                            "total_seconds": r.total_seconds,
                        }
                    )
                    log(f"writers {kind} x{writers}: {r.rows_per_second:,.0f} rows/s")

    def profiles(self) -> None:
        assert self.member is not None and self.generated is not None
        kind = next((k for k in self.opts.stores if k != "sqlite"), self.opts.stores[0])
        with self.scenario("profile", kind):
            store = self.store(kind)
            store.reset()
            self.services.delete_stream(SYNC_STREAM)
            queue_url = f"{self.services.redis_url()}?stream={SYNC_STREAM}"
            names: list[str] = []
            system = System(store, queue_url, self.member, self.scratch, name=f"profile-{kind}")
            recorders: list[Recorder] = []
            try:
                system.start()
                assert system.synchro is not None and system.apiserver is not None
                budget = int(self.opts.size.sync_timeout_seconds)
                recorders = [
                    Recorder("synchro", system.synchro.pid, self.scratch, budget),
                    Recorder("writer", system.writer_tiers[0].pid, self.scratch, budget),
                ]
                time.sleep(0.5)
                _, names = run_initial_sync(
                    system, self.member, [self.member], self.generated.objects, 1, prefix=self.prefix()
                )
                for rec in recorders:
                    rec.interrupt()  # py-spy writes what it sampled so far on SIGINT
                profiles = [rec.finish() for rec in recorders]
                seconds = max(3, int(self.opts.size.throughput_seconds))
                api = Recorder("apiserver", system.apiserver.pid, self.scratch, seconds + 1)
                token = asyncio.run(queries.deep_continue_token(system.api_url, 3))
                mix = [q for q in queries.query_mix(names[0], self.generated, token) if q.in_mix]
                asyncio.run(queries.measure_throughput(system.api_url, mix, 8, seconds))
                profiles.append(api.finish())
                for p in profiles:
                    self.results.profiles.append(asdict(p))
                    log(f"profile {p.tier}: {p.samples} samples {p.error}")
            finally:
                for rec in recorders:
                    rec.kill()
                system.stop()
                if names:
                    remove_pediaclusters(self.member, names)


def run(opts: Options, render: Callable[[Results, Options], None]) -> int:
    results = Run(opts).run()
    render(results, opts)
    return 1 if results.errors else 0


def command_line(argv: list[str]) -> str:
    return " ".join(shlex.quote(a) for a in [Path(sys.executable).name, "-m", "bench", *argv])
