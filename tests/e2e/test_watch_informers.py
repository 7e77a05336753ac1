"""Issue 10's acceptance: real informers over three clusters through churn and kill -9.

The whole pipeline runs for real: the host and two member clusters, with the host also synced as a
third member; the synchro (a thread) publishes to Redis; the writer is a process (``python -m
writer``) writing to PostgreSQL; two API tier processes serve the same store, replica A registered
into the host as the APIService. Two kinds of client watch the pods and configmaps of all clusters:

- a client-go program (tests/e2e/informer/, built with the Go toolchain from its Go modules) with
  two SharedIndexInformers (real reflectors: watch-list, then watches resumed from the last
  resourceVersion) through the host's aggregator, which dumps its caches on SIGUSR1;
- a kubernetes-python list+watch loop per resource, straight to the replicas: it resumes from the
  last event's (or bookmark's) resourceVersion after each watch ends, moves to the other replica
  when one fails, and relists on 410. It records every event.

Then thousands of changes hit the members (kubernetes-python clients) while replica A, the writer
and then replica B are killed with SIGKILL and restarted, and a fourth PediaCluster (a second view
of cluster-2) is removed: its rows are purged, every watch ends with 410 and the clients relist.
At the end both clients' caches must equal the union of the members' own objects
(cluster/namespace/name and the member's resourceVersion in the annotation), and the recorded
streams must show that no resume lost or repeated an event: resourceVersions strictly increase
along each list-then-watch chain (so the first event after a resume from R is above R) and no
(object, resourceVersion) pair arrives twice. Last, the informers' watches through the host
outlive the host's 60 s request timeout without a failure (the API tier ends them first:
``apiserver.watch_proxied_timeout_seconds``), so they resume instead of relisting.

A watcher reads each changed row's latest state (apiserver/watching.py), so intermediate states
may never be shown; only the final caches are compared, and they must be exact.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import os
import random
import signal
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3
import yaml
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from common.storage import open_store
from harness.cluster import Cluster
from harness.paths import REPO_ROOT, go_program
from harness.processes import Process
from tests.e2e.kubectl_support import READER_ROLE, RESOURCES_PATH, ApiTier
from tests.e2e.sync_support import (
    GR,
    Key,
    cluster_rows,
    install_crd,
    make_settings,
    pediacluster,
    start_synchro,
    unique,
    wait_for,
    wait_store_matches,
)
from tests.e2e.test_kubectl_aggregation import serve_through_host

pytestmark = pytest.mark.e2e

SEED = 1006
GRS: list[GR] = [("", "v1", "pods"), ("", "v1", "configmaps")]
SPEC = {"": ["pods", "configmaps"]}
NAMESPACE = "churn"
LEAVING = "leaving"
"""A PediaCluster removed during the churn: its rows are purged without DELETED events, so every
watch ends with 410 Expired and the clients must relist to drop its objects."""
SEED_CONFIGMAPS = 20
OPS_PER_CLUSTER = 1000  # configmap creates/updates/deletes; pods come on top
CHURN_SECONDS = 60.0
CONVERGE_SECONDS = 120.0
CLUSTER_ANNOTATION = "shadow.clusterpedia.io/cluster-name"
MEMBER_RV_ANNOTATION = "clusterpedia.io/member-resource-version"

Cache = dict[Key, int]  # (cluster, group, resource, namespace, name) -> the member's resourceVersion


# ---------------------------------------------------------------- the pipeline


def writer_process(store_url: str, queue_url: str, log_dir: Path) -> Process:
    """``python -m writer`` under a fresh consumer name (a restarted writer reclaims the dead one's
    pending entries after ``reclaim_idle_seconds``)."""
    name = unique("writer")
    argv = [
        sys.executable,
        "-m",
        "writer",
        f"--storage={store_url}",
        f"--queue={queue_url}",
        f"--consumer-name={name}",
        "--reclaim-idle-seconds=2",
    ]
    env = {"CLUSTERPEDIA_WRITER__BATCH_MAX_WAIT_SECONDS": "0.02", "CLUSTERPEDIA_LOG_FORMAT": "text"}
    proc = Process(name, argv, log_dir / "writer.log", env)
    proc.start()
    return proc


def kill_9(proc: Process) -> None:
    assert proc.popen is not None and proc.running(), f"{proc.name} is not running:\n{proc.log_tail()}"
    os.kill(proc.popen.pid, signal.SIGKILL)
    proc.popen.wait(10)
    proc.stop()  # reaps and closes the log


@dataclasses.dataclass
class Pipeline:
    host: Cluster
    clusters: dict[str, Cluster]  # the three clusters, the host included
    members: dict[str, Cluster]  # every synced cluster by its PediaCluster name (LEAVING until removed)
    store_url: str
    queue_url: str
    workdir: Path
    api_a: ApiTier
    api_b: ApiTier
    writers: list[Process]  # the running one last

    @property
    def writer(self) -> Process:
        return self.writers[-1]

    def members_union(self) -> Cache:
        out: Cache = {}
        for name, member in self.members.items():
            out.update(cluster_rows(name, member, GRS))
        return out


@pytest.fixture(scope="module")
def pipeline(
    host_cluster: Cluster,
    two_member_clusters: tuple[Cluster, Cluster],
    postgres_url: str,
    redis_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Pipeline]:
    workdir = tmp_path_factory.mktemp("watch-informers")
    store = open_store(postgres_url)
    store.migrate()
    store.close()
    clusters = {c.name: c for c in two_member_clusters}
    clusters["host"] = host_cluster
    members = {**clusters, LEAVING: two_member_clusters[1]}  # cluster-2 synced twice, once to remove
    seed = [f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {NAMESPACE}}}"]
    seed += [
        f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: seed-{i}, namespace: {NAMESPACE}}}"
        for i in range(SEED_CONFIGMAPS)
    ]
    for cluster in clusters.values():
        cluster.apply("\n---\n".join(seed))
        # pods need it, and the host has no controller manager to make it
        cluster.kubectl("create", "serviceaccount", "default", "-n", NAMESPACE, check=False)
    install_crd(host_cluster)
    for name, member in members.items():
        host_cluster.apply(pediacluster(name, member, SPEC))
    tier_args = ["--watch-bookmark-seconds=2"]
    with contextlib.ExitStack() as stack:
        writers = [writer_process(postgres_url, redis_url, workdir)]  # the test restarts it

        @stack.callback
        def stop_writers() -> None:
            for w in writers:
                w.stop()

        synchro = start_synchro(make_settings(host_cluster, postgres_url, redis_url), unique("w"))
        stack.callback(synchro.stop)
        # replica A is the host's APIService; B serves the same store beside it
        (workdir / "api-a").mkdir()
        served = serve_through_host(
            host_cluster, workdir / "api-a", postgres_url, READER_ROLE, *tier_args, mode="host-only"
        )
        stack.callback(served.api.stop)
        auth = ["--authenticate", "--authorize", f"--kubeconfig={host_cluster.kubeconfig}"]
        api_b = ApiTier(workdir / "api-b", postgres_url, extra_args=[*auth, *tier_args])
        stack.callback(api_b.stop)
        api_b.start()
        p = Pipeline(
            host_cluster, clusters, members, postgres_url, redis_url, workdir, served.api, api_b, writers
        )
        wait_store_matches(postgres_url, p.members_union, members, timeout=90)
        yield p


# ---------------------------------------------------------------- the client-go informer


class Informer:
    """The Go program of tests/e2e/informer through the host's aggregator."""

    def __init__(self, host: Cluster, workdir: Path) -> None:
        config = yaml.safe_load(host.kubeconfig.read_text())
        for entry in config["clusters"]:
            entry["cluster"]["server"] = host.server + RESOURCES_PATH
        kubeconfig = workdir / "informer.kubeconfig"
        kubeconfig.write_text(yaml.safe_dump(config))
        self.dump_path = workdir / "informer-dump.json"
        binary = go_program(REPO_ROOT / "tests/e2e/informer")
        argv = [str(binary), f"--kubeconfig={kubeconfig}", f"--dump={self.dump_path}", "-v=2"]
        self.process = Process("informer", argv, workdir / "informer.log", {"GOMAXPROCS": "1"})
        self.seq = 0

    def dump(self) -> dict[str, Any]:
        """The caches as the program lists them now (it writes them when signalled)."""
        assert self.process.popen is not None and self.process.running(), self.process.log_tail()
        self.process.popen.send_signal(signal.SIGUSR1)

        def fresh() -> dict[str, Any] | None:
            try:
                data: dict[str, Any] = json.loads(self.dump_path.read_text())
            except (OSError, ValueError):
                return None
            return data if data["seq"] > self.seq else None

        data: dict[str, Any] = wait_for(fresh, "the informer's dump", timeout=10, interval=0.05)
        self.seq = data["seq"]
        return data

    def cache(self) -> Cache | None:
        """Its caches, or None before they have synced."""
        data = self.dump()
        if not data["synced"]:
            return None
        return {
            (e["cluster"], "", resource, e["namespace"], e["name"]): int(e["memberResourceVersion"])
            for resource, entries in data["caches"].items()
            for e in entries
        }


# ---------------------------------------------------------------- the kubernetes-python watcher


def json_lines(resp: urllib3.HTTPResponse) -> Iterator[bytes]:
    """The lines of a watch response as they arrive."""
    rest = b""
    for chunk in resp.stream(None):
        *lines, rest = (rest + chunk).split(b"\n")
        yield from (line for line in lines if line.strip())


@dataclasses.dataclass
class Stream:
    """One watch request: where it started and the resourceVersions of its events."""

    chain: int  # the list it follows
    replica: str
    start: int
    after_failure: bool
    position: int = 0  # where to resume: the last event's or bookmark's resourceVersion
    rvs: list[int] = dataclasses.field(default_factory=list)


class PythonWatcher:
    """List, then watch from the list's resourceVersion and resume from the last one seen; on a
    failure move to the other replica, on 410 list again. Every event is recorded."""

    def __init__(self, resource: str, replicas: dict[str, ApiTier], token: str, workdir: Path) -> None:
        self.resource = resource
        self.rng = random.Random(SEED)
        self.replicas = list(replicas)
        self.apis = {}
        for name, tier in replicas.items():
            ca_file = workdir / f"{name}-ca.pem"
            ca_file.write_bytes(tier.ca_pem)
            conf = k8s.Configuration()
            conf.host = tier.url + RESOURCES_PATH
            conf.ssl_ca_cert = str(ca_file)
            conf.api_key = {"authorization": token}
            conf.api_key_prefix = {"authorization": "Bearer"}
            conf.retries = False
            self.apis[name] = k8s.CoreV1Api(k8s.ApiClient(conf))
        self.lock = threading.Lock()
        self.cache: Cache = {}
        self.synced = False
        self.streams: list[Stream] = []
        self.delivered: Counter[tuple[Key, int]] = Counter()
        self.lists = 0
        self.relists_410 = 0
        self.failovers = 0
        self.errors: list[str] = []
        self.crashed = ""
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._guarded, name=f"watch-{resource}", daemon=True)

    def start(self) -> PythonWatcher:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(30)
        assert not self.thread.is_alive(), f"the {self.resource} watcher did not stop"

    def _call(self, replica: str, **kwargs: Any) -> urllib3.HTTPResponse:
        api = self.apis[replica]
        method: Callable[..., urllib3.HTTPResponse] = getattr(
            api, f"list_{'pod' if self.resource == 'pods' else 'config_map'}_for_all_namespaces"
        )
        return method(_preload_content=False, _request_timeout=(5, 30), **kwargs)

    def _key(self, obj: dict[str, Any]) -> Key:
        meta = obj["metadata"]
        return (meta["annotations"][CLUSTER_ANNOTATION], "", self.resource, meta["namespace"], meta["name"])

    def _list(self, replica: str) -> int:
        resp = self._call(replica)
        body = json.loads(resp.data)
        assert not body["metadata"].get("continue"), "an unpaged list came back paged"
        with self.lock:
            self.cache = {
                self._key(o): int(o["metadata"]["annotations"][MEMBER_RV_ANNOTATION]) for o in body["items"]
            }
            self.synced = True
            self.lists += 1
        return int(body["metadata"]["resourceVersion"])

    def _watch(self, stream: Stream) -> bool:
        """Follow one watch (``stream.position`` moves with it); False when it ended with 410."""
        stream.position = stream.start
        resp = self._call(
            stream.replica,
            watch=True,
            resource_version=str(stream.start),
            allow_watch_bookmarks=True,
            timeout_seconds=self.rng.randint(1, 3),  # many clean ends, each resumed
        )
        try:
            for line in json_lines(resp):
                event = json.loads(line)
                obj = event["object"]
                if event["type"] == "ERROR":
                    if obj.get("code") == 410:
                        return False
                    raise RuntimeError(f"watch error event: {obj}")
                rv = int(obj["metadata"]["resourceVersion"])
                if event["type"] == "BOOKMARK":
                    stream.position = max(stream.position, rv)
                    continue
                key = self._key(obj)
                with self.lock:
                    stream.rvs.append(rv)
                    self.delivered[(key, rv)] += 1
                    if event["type"] == "DELETED":
                        self.cache.pop(key, None)
                    else:
                        self.cache[key] = int(obj["metadata"]["annotations"][MEMBER_RV_ANNOTATION])
                    stream.position = rv
        finally:
            resp.release_conn()
        return True

    def _guarded(self) -> None:
        try:
            self._run()
        except BaseException:  # a bug of this client: the test fails with it (snapshot)
            self.crashed = traceback.format_exc()

    def _run(self) -> None:
        replica = self.replicas[0]
        position: int | None = None
        failed = False
        chain = 0
        stream: Stream | None = None
        while not self.stop_event.is_set():
            try:
                if position is None:
                    stream = None
                    position = self._list(replica)
                    chain += 1
                stream = Stream(chain, replica, position, failed)
                with self.lock:
                    self.streams.append(stream)
                failed = False
                position = stream.position if self._watch(stream) else None
                if position is None:
                    self.relists_410 += 1
            except ApiException as e:
                if stream is not None:
                    position = stream.position
                if e.status == 410:
                    position, self.relists_410 = None, self.relists_410 + 1
                    continue
                self._fail_over(f"{replica}: {e.status} {e.reason}")
                replica, failed = self._other(replica), True
            except (urllib3.exceptions.HTTPError, OSError, RuntimeError, ValueError) as e:
                if stream is not None:
                    position = stream.position
                self._fail_over(f"{replica}: {e!r}")
                replica, failed = self._other(replica), True

    def _other(self, replica: str) -> str:
        return self.replicas[1 - self.replicas.index(replica)]

    def _fail_over(self, error: str) -> None:
        with self.lock:
            self.failovers += 1
            self.errors.append(error)
        self.stop_event.wait(0.2)

    def snapshot(self) -> Cache | None:
        assert not self.crashed, f"the {self.resource} watcher failed:\n{self.crashed}"
        with self.lock:
            return dict(self.cache) if self.synced else None


# ---------------------------------------------------------------- churn


class Churn:
    """Creates, updates and deletes configmaps (and a few pods) in every member, one thread each."""

    def __init__(self, members: dict[str, Cluster], seed: int) -> None:
        self.members = members
        self.seed = seed
        self.done = 0
        self.lock = threading.Lock()
        self.errors: list[str] = []
        self.deadline = time.monotonic() + CHURN_SECONDS
        self.threads = [
            threading.Thread(target=self._run, args=(i, name), name=f"churn-{name}", daemon=True)
            for i, name in enumerate(members)
        ]

    @property
    def total(self) -> int:
        return OPS_PER_CLUSTER * len(self.members)

    def start(self) -> Churn:
        for t in self.threads:
            t.start()
        return self

    def join(self) -> None:
        for t in self.threads:
            t.join(CHURN_SECONDS + 30)
            assert not t.is_alive(), f"{t.name} did not finish"
        assert not self.errors, self.errors

    def _run(self, index: int, name: str) -> None:
        try:
            self._churn(index, name)
        except Exception as e:  # reported by join()
            self.errors.append(f"{name}: {e!r}")

    def _churn(self, index: int, name: str) -> None:
        rng = random.Random(self.seed * 10 + index)
        api = k8s.CoreV1Api(self.members[name].api_client())
        live = [f"seed-{i}" for i in range(SEED_CONFIGMAPS)]
        pods: list[str] = []
        created = 0
        for op in range(OPS_PER_CLUSTER):
            if time.monotonic() > self.deadline:
                break
            r = rng.random()
            if op % 100 == 0 and len(pods) < 6:
                pod = f"pod-{op}"
                body = k8s.V1Pod(
                    metadata=k8s.V1ObjectMeta(name=pod, labels={"op": str(op)}),
                    spec=k8s.V1PodSpec(containers=[k8s.V1Container(name="c", image="busybox:1.36")]),
                )
                api.create_namespaced_pod(NAMESPACE, body)
                pods.append(pod)
            elif op % 100 == 50 and pods:
                if rng.random() < 0.5:
                    api.delete_namespaced_pod(
                        pods.pop(rng.randrange(len(pods))), NAMESPACE, grace_period_seconds=0
                    )
                else:
                    patch = {"metadata": {"labels": {"op": str(op)}}}
                    api.patch_namespaced_pod(rng.choice(pods), NAMESPACE, patch)
            elif r < 0.4 or len(live) < 10:
                cm = f"cm-{created}"
                created += 1
                cm_body = k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name=cm), data={"v": "0"})
                api.create_namespaced_config_map(NAMESPACE, cm_body)
                live.append(cm)
            elif r < 0.75:
                api.patch_namespaced_config_map(rng.choice(live), NAMESPACE, {"data": {"v": str(op)}})
            else:
                api.delete_namespaced_config_map(live.pop(rng.randrange(len(live))), NAMESPACE)
            with self.lock:
                self.done += 1

    def wait_done(self, fraction: float) -> None:
        wait_for(
            lambda: self.done >= fraction * self.total or not any(t.is_alive() for t in self.threads),
            f"{fraction:.0%} of the churn",
            timeout=CHURN_SECONDS + 30,
            interval=0.1,
        )


# ---------------------------------------------------------------- the tests


def diff(want: Cache, have: Cache | None) -> str:
    if have is None:
        return "not synced"
    missing = sorted(set(want) - set(have))
    extra = sorted(set(have) - set(want))
    stale = sorted(k for k in set(want) & set(have) if want[k] != have[k])
    return (
        f"{len(want)} wanted, {len(have)} cached; missing {missing[:5]}, extra {extra[:5]}, stale {stale[:5]}"
    )


def wait_converged(p: Pipeline, clients: dict[str, Callable[[], Cache | None]]) -> None:
    """Poll until every client's cache equals the union of the members (read afresh each time)."""
    deadline = time.monotonic() + CONVERGE_SECONDS
    last = ""
    while time.monotonic() < deadline:
        want = p.members_union()
        pending = {name: get() for name, get in clients.items()}
        last = "; ".join(f"{name}: {diff(want, have)}" for name, have in pending.items() if have != want)
        if not last:
            return
        time.sleep(0.5)
    raise AssertionError(f"the clients did not converge within {CONVERGE_SECONDS}s: {last}")


@pytest.fixture(scope="module")
def clients(pipeline: Pipeline) -> Iterator[tuple[Informer, dict[str, PythonWatcher]]]:
    informer = Informer(pipeline.host, pipeline.workdir)
    replicas = {"a": pipeline.api_a, "b": pipeline.api_b}
    watchers = {
        r: PythonWatcher(r, replicas, pipeline.host.token, pipeline.workdir) for r in ("pods", "configmaps")
    }
    informer.process.start()
    for w in watchers.values():
        w.start()
    try:
        yield informer, watchers
    finally:
        for w in watchers.values():
            w.stop()
        informer.process.stop()


def all_caches(
    informer: Informer, watchers: dict[str, PythonWatcher]
) -> dict[str, Callable[[], Cache | None]]:
    def python() -> Cache | None:
        parts = [w.snapshot() for w in watchers.values()]
        if any(part is None for part in parts):
            return None
        return {k: v for part in parts if part is not None for k, v in part.items()}

    return {"client-go informer": informer.cache, "kubernetes-python": python}


def test_clients_start_with_the_union_of_the_members(
    pipeline: Pipeline, clients: tuple[Informer, dict[str, PythonWatcher]]
) -> None:
    informer, watchers = clients
    wait_converged(pipeline, all_caches(informer, watchers))


@pytest.mark.timeout(600)
def test_churn_with_kill_9_converges_without_lost_or_repeated_events(
    pipeline: Pipeline, clients: tuple[Informer, dict[str, PythonWatcher]]
) -> None:
    informer, watchers = clients
    print(f"churn seed {SEED}")
    churn = Churn(pipeline.clusters, SEED).start()

    churn.wait_done(0.25)
    kill_9(pipeline.api_a.process)
    pipeline.api_a.start()
    wait_for(lambda: all(w.failovers >= 1 for w in watchers.values()), "the watchers to leave replica A")
    # the host's proxied watches to replica A broke: both informers saw it (and recover by themselves)
    wait_for(lambda: all(n >= 1 for n in informer.dump()["failures"].values()), "the informers to notice")

    churn.wait_done(0.5)
    kill_9(pipeline.writer)
    pipeline.writers.append(writer_process(pipeline.store_url, pipeline.queue_url, pipeline.workdir))

    churn.wait_done(0.6)
    pipeline.host.kubectl("delete", "pediaclusters.clusters.clusterpedia.io", LEAVING, "--wait=false")
    del pipeline.members[LEAVING]

    churn.wait_done(0.75)
    kill_9(pipeline.api_b.process)
    pipeline.api_b.start()
    churn.join()
    print(f"churn: {churn.done} changes")

    wait_converged(pipeline, all_caches(informer, watchers))
    stats = informer.dump()
    print(f"client-go: events {stats['events']}, watches {stats['watches']}, failures {stats['failures']}")

    for w in watchers.values():
        with w.lock:
            streams, delivered = list(w.streams), Counter(w.delivered)
        repeated = [pair for pair, n in delivered.items() if n > 1]
        assert not repeated, f"{w.resource}: events delivered twice: {repeated[:5]}"
        chains: dict[int, list[int]] = {}
        for s in streams:
            if s.rvs:
                assert s.rvs[0] > s.start, f"{w.resource}: watch from {s.start} began with {s.rvs[0]}"
            chain = chains.setdefault(s.chain, [])
            chain.extend(s.rvs)
        for number, rvs in chains.items():
            backwards = [(a, b) for a, b in itertools.pairwise(rvs) if b <= a]
            assert not backwards, f"{w.resource}: chain {number} went back: {backwards[:5]}"
        resumes = [s for s in streams if s.rvs and s.start > 0]
        after_failure = [s for s in streams if s.after_failure]
        print(
            f"{w.resource}: {sum(delivered.values())} events, {len(streams)} watches, {w.lists} lists,"
            f" {w.relists_410} relists on 410, {w.failovers} failovers ({w.errors[:3]})"
        )
        # the checks above had something to check: resumes, also on the other replica after a kill,
        # and new chains after the purge's 410
        assert len(resumes) >= 3 and after_failure and w.failovers >= 2, (len(resumes), w.failovers)
        assert w.relists_410 >= 1 and len(chains) >= 2, (w.relists_410, len(chains))


def test_informer_watches_through_the_host_end_cleanly_and_resume(
    pipeline: Pipeline, clients: tuple[Informer, dict[str, PythonWatcher]]
) -> None:
    # the host cuts what it takes for a get after 60 s; the API tier ends proxied watches first
    # (apiserver.watch_proxied_timeout_seconds), so the reflectors just watch again, no failure
    informer, watchers = clients
    before = informer.dump()
    wait_for(
        lambda: all(n > before["watches"][r] for r, n in informer.dump()["watches"].items()),
        "the informers' next watch",
        timeout=90,
        interval=1.0,
    )
    after = informer.dump()
    assert after["failures"] == before["failures"], (before, after)
    wait_converged(pipeline, all_caches(informer, watchers))
