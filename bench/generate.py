"""Reproducible, realistic objects created straight in a member kube-apiserver.

No controller manager is needed: the generator itself writes what controllers would have made,
Deployments -> ReplicaSets -> Pods, each child with a controller ``ownerReference`` carrying its
parent's real uid, spread over several namespaces, with labels the query mix selects on and
container specs (env vars, probes, resources, mounts, annotations) that put each object at
3-8 KB of JSON, the size real workloads have. A seeded RNG makes a run reproducible.

Objects are POSTed concurrently (httpx, bounded), stage by stage, because a child needs the uid
its parent got from the server.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import msgspec

from bench.members import Member

PODS_PER_REPLICASET = 5
"""One Deployment yields 1 ReplicaSet and this many Pods: 7 objects."""
OBJECTS_PER_DEPLOYMENT = 2 + PODS_PER_REPLICASET
TIERS = ("frontend", "backend", "cache", "batch")
ENVS = ("prod", "staging", "dev")
TEAMS = 8
BENCH_ANNOTATION = "bench.clusterpedia.io/stamp"
"""Annotation the freshness load patches with the client's wall-clock time (ns)."""

_json = msgspec.json.Encoder()


class _Meta(msgspec.Struct):
    uid: str = ""
    name: str = ""
    namespace: str = ""


class _Created(msgspec.Struct):
    metadata: _Meta


_created = msgspec.json.Decoder(_Created)


@dataclass
class Plan:
    """What to create: ``deployments`` groups of (Deployment, ReplicaSet, Pods) over ``namespaces``."""

    deployments: int
    namespaces: int
    seed: int = 42
    concurrency: int = 32

    @classmethod
    def for_objects(cls, objects: int, *, namespaces: int, seed: int = 42, concurrency: int = 32) -> Plan:
        return cls(max(1, objects // OBJECTS_PER_DEPLOYMENT), namespaces, seed, concurrency)

    @property
    def objects(self) -> int:
        return self.deployments * OBJECTS_PER_DEPLOYMENT

    def namespace_names(self) -> list[str]:
        return [f"bench-{i:02d}" for i in range(self.namespaces)]


@dataclass
class Generated:
    """What was created, with handles the other scenarios need (names, uids, labels)."""

    deployments: int = 0
    replicasets: int = 0
    pods: int = 0
    bytes_total: int = 0
    """JSON bytes as sent; the stored object adds ~0.3 KB of server metadata (managedFields stripped)."""
    seconds: float = 0.0
    namespaces: list[str] = field(default_factory=list)
    pod_keys: list[tuple[str, str]] = field(default_factory=list)
    """(namespace, name) of every pod, for the update load."""
    replicaset_uids: list[tuple[str, str, str]] = field(default_factory=list)
    """(namespace, name, uid) of every ReplicaSet, for owner queries."""
    deployment_names: list[tuple[str, str]] = field(default_factory=list)

    @property
    def objects(self) -> int:
        return self.deployments + self.replicasets + self.pods

    @property
    def mean_object_bytes(self) -> float:
        return self.bytes_total / self.objects if self.objects else 0.0

    @property
    def objects_per_second(self) -> float:
        return self.objects / self.seconds if self.seconds else 0.0


def _hash(text: str, n: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def _labels(rng: random.Random, app: str) -> dict[str, str]:
    return {
        "app": app,
        "tier": rng.choice(TIERS),
        "env": rng.choice(ENVS),
        "team": f"team-{rng.randrange(TEAMS)}",
        "app.kubernetes.io/part-of": f"suite-{rng.randrange(20):02d}",
    }


def _env_vars(rng: random.Random, app: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(rng.randint(14, 48)):
        kind = rng.random()
        name = f"{app.upper().replace('-', '_')}_SETTING_{i:02d}"
        if kind < 0.7:
            out.append({"name": name, "value": _hash(f"{app}{i}", rng.randint(16, 64))})
        elif kind < 0.85:
            out.append(
                {"name": name, "valueFrom": {"configMapKeyRef": {"name": f"{app}-config", "key": f"k{i}"}}}
            )
        else:
            out.append(
                {"name": name, "valueFrom": {"secretKeyRef": {"name": f"{app}-secret", "key": f"s{i}"}}}
            )
    return out


def _pod_spec(rng: random.Random, app: str, team: str) -> dict[str, Any]:
    probe = {
        "httpGet": {"path": "/healthz", "port": 8080, "scheme": "HTTP"},
        "initialDelaySeconds": 5,
        "periodSeconds": 10,
        "timeoutSeconds": 1,
        "successThreshold": 1,
        "failureThreshold": 3,
    }
    main = {
        "name": "app",
        "image": f"registry.example.com/{team}/{app}:1.{rng.randrange(30)}.{rng.randrange(10)}",
        "imagePullPolicy": "IfNotPresent",
        "args": ["--config=/etc/app/config.yaml", "--log-level=info", f"--shard={rng.randrange(64)}"],
        "ports": [
            {"name": "http", "containerPort": 8080, "protocol": "TCP"},
            {"name": "metrics", "containerPort": 9090, "protocol": "TCP"},
        ],
        "env": _env_vars(rng, app),
        "resources": {
            "requests": {
                "cpu": f"{rng.choice((50, 100, 250, 500))}m",
                "memory": f"{rng.choice((64, 128, 256))}Mi",
            },
            "limits": {"cpu": "1", "memory": f"{rng.choice((256, 512, 1024))}Mi"},
        },
        "livenessProbe": probe,
        "readinessProbe": {**probe, "httpGet": {"path": "/readyz", "port": 8080, "scheme": "HTTP"}},
        "volumeMounts": [
            {"name": "config", "mountPath": "/etc/app", "readOnly": True},
            {"name": "secrets", "mountPath": "/var/run/secrets/app", "readOnly": True},
            {"name": "cache", "mountPath": "/var/cache/app"},
        ],
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
    }
    sidecar = {
        "name": "proxy",
        "image": "registry.example.com/platform/envoy:1.31.2",
        "args": ["--config-path", "/etc/envoy/envoy.yaml", "--service-cluster", app],
        "ports": [{"name": "proxy", "containerPort": 15001, "protocol": "TCP"}],
        "resources": {
            "requests": {"cpu": "50m", "memory": "64Mi"},
            "limits": {"cpu": "500m", "memory": "256Mi"},
        },
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "imagePullPolicy": "IfNotPresent",
    }
    return {
        "containers": [main, sidecar],
        "volumes": [
            {"name": "config", "configMap": {"name": f"{app}-config", "defaultMode": 420}},
            {"name": "secrets", "secret": {"secretName": f"{app}-secret", "defaultMode": 420}},
            {"name": "cache", "emptyDir": {}},
        ],
        "restartPolicy": "Always",
        "terminationGracePeriodSeconds": 30,
        "dnsPolicy": "ClusterFirst",
        "schedulerName": "default-scheduler",
        "securityContext": {"runAsNonRoot": True, "runAsUser": 10000 + rng.randrange(1000)},
        "automountServiceAccountToken": False,
    }


def _annotations(rng: random.Random, app: str) -> dict[str, str]:
    return {
        "bench.clusterpedia.io/owner": f"{app}@example.com",
        "bench.clusterpedia.io/description": f"{app} serves shard traffic for the suite; " + _hash(app, 40),
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "9090",
        "bench.clusterpedia.io/revision": str(rng.randrange(1, 50)),
    }


def _owner(kind: str, api_version: str, name: str, uid: str) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": api_version,
            "kind": kind,
            "name": name,
            "uid": uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]


@dataclass
class _Group:
    """One Deployment's family while it is being created."""

    namespace: str
    app: str
    rng_seed: int
    labels: dict[str, str] = field(default_factory=dict)
    deployment_uid: str = ""
    rs_name: str = ""
    rs_uid: str = ""


def _deployment(g: _Group, rng: random.Random) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": g.app,
            "namespace": g.namespace,
            "labels": g.labels,
            "annotations": _annotations(rng, g.app),
        },
        "spec": {
            "replicas": PODS_PER_REPLICASET,
            "selector": {"matchLabels": {"app": g.app}},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
            },
            "template": {"metadata": {"labels": g.labels}, "spec": _pod_spec(rng, g.app, g.labels["team"])},
        },
    }


def _replicaset(g: _Group, rng: random.Random) -> dict[str, Any]:
    labels = {**g.labels, "pod-template-hash": g.rs_name.rsplit("-", 1)[1]}
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": g.rs_name,
            "namespace": g.namespace,
            "labels": labels,
            "annotations": {**_annotations(rng, g.app), "deployment.kubernetes.io/revision": "1"},
            "ownerReferences": _owner("Deployment", "apps/v1", g.app, g.deployment_uid),
        },
        "spec": {
            "replicas": PODS_PER_REPLICASET,
            "selector": {"matchLabels": {"app": g.app, "pod-template-hash": labels["pod-template-hash"]}},
            "template": {"metadata": {"labels": labels}, "spec": _pod_spec(rng, g.app, g.labels["team"])},
        },
    }


def _pod(g: _Group, rng: random.Random, i: int) -> dict[str, Any]:
    labels = {**g.labels, "pod-template-hash": g.rs_name.rsplit("-", 1)[1]}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{g.rs_name}-{_hash(f'{g.rs_name}{i}', 5)}",
            "namespace": g.namespace,
            "labels": labels,
            "annotations": _annotations(rng, g.app),
            "ownerReferences": _owner("ReplicaSet", "apps/v1", g.rs_name, g.rs_uid),
        },
        "spec": _pod_spec(rng, g.app, g.labels["team"]),
    }


async def _bounded(items: Iterable[Any], concurrency: int, fn: Callable[[Any], Awaitable[None]]) -> None:
    """Run ``fn`` over ``items`` with at most ``concurrency`` in flight; the first error cancels the rest."""
    it = iter(items)

    async def worker() -> None:
        for item in it:
            await fn(item)

    async with asyncio.TaskGroup() as tg:
        for _ in range(concurrency):
            tg.create_task(worker())


_JSON_HEADERS = {"Content-Type": "application/json"}


async def _post(client: aiohttp.ClientSession, path: str, body: dict[str, Any]) -> tuple[_Created, int]:
    data = _json.encode(body)
    for attempt in range(5):
        async with client.post(path, data=data, headers=_JSON_HEADERS) as resp:
            content = await resp.read()
            if resp.status in (200, 201):
                return _created.decode(content), len(data)
            if resp.status != 429 and resp.status < 500:
                raise RuntimeError(f"POST {path}: {resp.status} {content[:300]!r}")
        await asyncio.sleep(0.2 * (attempt + 1))
    raise RuntimeError(f"POST {path}: still failing after retries")


async def ensure_namespaces(client: aiohttp.ClientSession, names: Iterable[str]) -> None:
    """Namespaces plus their ``default`` ServiceAccount (the ServiceAccount admission plugin wants it
    before a Pod is admitted, and no controller manager runs to make it)."""
    for ns in names:
        for path, body in (
            ("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
            (
                f"/api/v1/namespaces/{ns}/serviceaccounts",
                {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}},
            ),
        ):
            async with client.post(path, data=_json.encode(body), headers=_JSON_HEADERS) as resp:
                content = await resp.read()
                if resp.status not in (200, 201, 409):
                    raise RuntimeError(f"POST {path}: {resp.status} {content[:300]!r}")


async def generate(member: Member, plan: Plan, *, app_prefix: str = "app") -> Generated:
    """Create ``plan`` in ``member``; returns counts, timing and handles for later scenarios."""
    out = Generated(namespaces=plan.namespace_names())
    rng = random.Random(plan.seed)
    groups = [
        _Group(
            namespace=out.namespaces[i % plan.namespaces],
            app=f"{app_prefix}-{i:05d}",
            rng_seed=rng.randrange(2**32),
        )
        for i in range(plan.deployments)
    ]
    for g in groups:
        g.labels = _labels(random.Random(g.rng_seed), g.app)
        g.rs_name = f"{g.app}-{_hash(g.app + 'rs', 10)}"

    start = time.perf_counter()
    async with member.session(concurrency=plan.concurrency) as client:
        await ensure_namespaces(client, out.namespaces)

        async def make_deployment(g: _Group) -> None:
            created, n = await _post(
                client,
                f"/apis/apps/v1/namespaces/{g.namespace}/deployments",
                _deployment(g, random.Random(g.rng_seed)),
            )
            g.deployment_uid = created.metadata.uid
            out.deployments += 1
            out.bytes_total += n

        async def make_replicaset(g: _Group) -> None:
            created, n = await _post(
                client,
                f"/apis/apps/v1/namespaces/{g.namespace}/replicasets",
                _replicaset(g, random.Random(g.rng_seed + 1)),
            )
            g.rs_uid = created.metadata.uid
            out.replicasets += 1
            out.bytes_total += n

        async def make_pod(item: tuple[_Group, int]) -> None:
            g, i = item
            created, n = await _post(
                client,
                f"/api/v1/namespaces/{g.namespace}/pods",
                _pod(g, random.Random(g.rng_seed + 2 + i), i),
            )
            out.pods += 1
            out.bytes_total += n
            out.pod_keys.append((g.namespace, created.metadata.name))

        await _bounded(groups, plan.concurrency, make_deployment)
        await _bounded(groups, plan.concurrency, make_replicaset)
        await _bounded(
            ((g, i) for g in groups for i in range(PODS_PER_REPLICASET)), plan.concurrency, make_pod
        )
    out.seconds = time.perf_counter() - start
    out.replicaset_uids = [(g.namespace, g.rs_name, g.rs_uid) for g in groups]
    out.deployment_names = [(g.namespace, g.app) for g in groups]
    out.pod_keys.sort()
    return out
