"""Helpers for the synchro end-to-end tests: PediaClusters for harness clusters, the sync pipeline
(synchro + writer) in threads or the synchro as subprocesses, and comparing the store with the
member clusters' own lists."""

from __future__ import annotations

import base64
import json
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import sqlalchemy.exc
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError

from common.settings import Settings, SynchroSettings, WriterSettings
from common.storage.sql.engine import make_engine
from common.storage.sql.schema import resources
from common.types import RBAC_GROUP
from harness.cluster import Cluster
from harness.processes import Process

ROOT = Path(__file__).resolve().parents[2]
CRD_FILE = ROOT / "charts/clusterpedia/crds/clusters.clusterpedia.io_pediaclusters.yaml"

Key = tuple[str, str, str, str, str]  # cluster, group, resource, namespace, name
GR = tuple[str, str, str]  # group, version, resource


def b64(data: bytes | str) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def install_crd(host: Cluster) -> None:
    host.kubectl("apply", "-f", str(CRD_FILE))
    host.wait_crd("pediaclusters.clusters.clusterpedia.io")


def pediacluster(name: str, member: Cluster, groups: dict[str, list[str]], **spec: Any) -> str:
    """YAML of a PediaCluster reaching ``member`` with its admin token and CA (the seed's fields)."""
    body: dict[str, Any] = {
        "apiVersion": "clusters.clusterpedia.io/v1alpha1",
        "kind": "PediaCluster",
        "metadata": {"name": name},
        "spec": {
            "apiserverURL": member.server,
            "caData": b64(member.ca_pem),
            "tokenData": b64(member.token),
            "resources": [{"group": g, "resources": r} for g, r in groups.items()],
            **spec,
        },
    }
    return json.dumps(body)


def make_settings(host: Cluster, store_url: str, queue_url: str, **synchro: Any) -> Settings:
    return Settings(
        storage=store_url,
        queue=queue_url,
        kubeconfig=str(host.kubeconfig),
        log_format="text",
        synchro=SynchroSettings(
            **{
                "lease_duration_seconds": 4.0,
                "health_probe_interval_seconds": 1.0,
                "status_update_interval_seconds": 0.5,
                "list_page_size": 50,
                **synchro,
            }
        ),
        writer=WriterSettings(batch_max_wait_seconds=0.02, reclaim_idle_seconds=2.0),
    )


class Tier:
    """A blocking tier entry point (run_synchro / run_writer) in a thread, with its stop event."""

    def __init__(self, name: str, target: Callable[[Settings, threading.Event], None], settings: Settings):
        self.name = name
        self.stop_event = threading.Event()
        self.error: BaseException | None = None
        self.traceback = ""

        def run() -> None:
            try:
                target(settings, self.stop_event)
            except BaseException as exc:  # reported by stop(), with its traceback
                self.error = exc
                self.traceback = traceback.format_exc()

        self.thread = threading.Thread(target=run, name=name, daemon=True)
        self.thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self.stop_event.set()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"{self.name} did not stop within {timeout}s"
        assert self.error is None, f"{self.name} failed: {self.error!r}\n{self.traceback}"


def start_synchro(settings: Settings, worker_id: str = "") -> Tier:
    from synchro.manager import run_synchro

    conf = settings.synchro
    named = Settings(
        **{
            **_fields(settings),
            "synchro": SynchroSettings(**{**_fields(conf), "worker_id": worker_id or conf.worker_id}),
        }
    )
    return Tier("synchro", run_synchro, named)


def start_writer(settings: Settings) -> Tier:
    from writer.worker import run_writer

    return Tier("writer", run_writer, settings)


def _fields(obj: Any) -> dict[str, Any]:
    return {f: getattr(obj, f) for f in obj.__struct_fields__}


def synchro_process(settings: Settings, worker_id: str, log_dir: Path) -> Process:
    """``python -m synchro`` configured through CLUSTERPEDIA_* variables."""
    env = {
        "CLUSTERPEDIA_KUBECONFIG": settings.kubeconfig,
        "CLUSTERPEDIA_QUEUE": settings.queue,
        "CLUSTERPEDIA_STORAGE": settings.storage,
        "CLUSTERPEDIA_LOG_FORMAT": "text",
        "CLUSTERPEDIA_SYNCHRO__WORKER_ID": worker_id,
    }
    for f in settings.synchro.__struct_fields__:
        if f != "worker_id":
            env[f"CLUSTERPEDIA_SYNCHRO__{f.upper()}"] = str(getattr(settings.synchro, f))
    proc = Process(
        f"synchro-{worker_id}", [sys.executable, "-m", "synchro"], log_dir / f"synchro-{worker_id}.log", env
    )
    proc.start()
    return proc


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


# ---------------------------------------------------------------- comparing store and clusters


def store_rows(
    store_url: str, clusters: Iterable[str] | None = None, *, member_rbac: bool = False
) -> dict[Key, int]:
    """Live rows of the store; the members' RBAC objects, synced for the API tier's use whatever
    the spec says (synchro.sync_member_rbac), only with ``member_rbac``."""
    engine = make_engine(store_url)
    try:
        query = select(
            resources.c.cluster,
            resources.c.api_group,
            resources.c.resource,
            resources.c.namespace,
            resources.c.name,
            resources.c.resource_version,
        ).where(resources.c.deleted.is_(False))
        if clusters is not None:
            query = query.where(resources.c.cluster.in_(list(clusters)))
        if not member_rbac:
            query = query.where(resources.c.api_group != RBAC_GROUP)
        with engine.connect() as conn:
            return {(r[0], r[1], r[2], r[3], r[4]): int(r[5]) for r in conn.execute(query)}
    except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.ProgrammingError) as exc:
        # The writer creates the tables when it starts; until then the store is simply empty.
        if "resources" in str(exc) and (
            "no such table" in str(exc) or "does not exist" in str(exc) or "doesn't exist" in str(exc)
        ):
            return {}
        raise
    finally:
        engine.dispose()


def cluster_rows(name: str, member: Cluster, grs: Iterable[GR]) -> dict[Key, int]:
    """What the member itself lists now (read as admin through its API)."""
    out: dict[Key, int] = {}
    for group, version, resource in grs:
        path = f"/api/{version}/{resource}" if not group else f"/apis/{group}/{version}/{resource}"
        status, body = member.get(path)
        assert status == 200, f"GET {path} on {member.name}: {status} {body[:200]!r}"
        for item in json.loads(body)["items"]:
            meta = item["metadata"]
            out[(name, group, resource, meta.get("namespace", ""), meta["name"])] = int(
                meta["resourceVersion"]
            )
    return out


def wait_store_matches(
    store_url: str, expected: Callable[[], dict[Key, int]], clusters: Iterable[str], timeout: float = 60.0
) -> float:
    """Poll until the store's live rows of ``clusters`` equal ``expected()``; seconds it took. The
    members' RBAC (always synced) counts only when ``expected()`` names some of it."""
    names = list(clusters)
    start = time.monotonic()
    want: dict[Key, int] = {}
    have: dict[Key, int] = {}
    while time.monotonic() - start < timeout:
        want = expected()
        try:
            have = store_rows(store_url, names, member_rbac=any(k[1] == RBAC_GROUP for k in want))
        except DBAPIError:  # the writer thread has not created the schema yet
            have = {}
        if want == have:
            return time.monotonic() - start
        time.sleep(0.2)
    missing = sorted(set(want) - set(have))[:10]
    extra = sorted(set(have) - set(want))[:10]
    stale = sorted(k for k in set(want) & set(have) if want[k] != have[k])[:10]
    raise AssertionError(
        f"store != clusters after {timeout}s: {len(want)} expected, {len(have)} stored; "
        f"missing {missing}, extra {extra}, stale {stale}"
    )


def pediacluster_status(host: Cluster, name: str) -> dict[str, Any]:
    status: dict[str, Any] = (
        host.get_json(f"pediaclusters.clusters.clusterpedia.io/{name}").get("status") or {}
    )
    return status


def ready_condition(status: dict[str, Any]) -> dict[str, Any]:
    for cond in status.get("conditions") or ():
        if cond.get("type") == "Ready":
            return dict(cond)
    return {}


def wait_for(check: Callable[[], Any], what: str, timeout: float = 60.0, interval: float = 0.5) -> Any:
    """Poll ``check`` until it returns something truthy; fail with ``what`` and the last value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except AssertionError as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")
