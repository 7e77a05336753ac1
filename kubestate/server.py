"""The kube-state-metrics tier: an HTTP endpoint for Prometheus, fed from the store.

``clusterpedia kube-state-metrics`` serves ``/metrics`` on a port of its own, apart from the search
API: the series name every object of every cluster (namespaces, pod names, node names), which the
search API only shows a caller whose member RBAC allows it, so this port has its own access rule:
it binds to loopback unless told otherwise, and with ``bearer_token_file`` set it answers only a
request carrying that token (Prometheus' ``authorization.credentials_file``), 401 otherwise.
``/healthz`` and ``/livez`` answer 200 while the process runs, ``/readyz`` once a collection has
finished.

One background task collects every ``refresh_interval_seconds`` (after the previous collection
finished); scrapes stream the last finished file plus a few series about the collection itself,
so a scrape costs a file read, whatever the store holds and however many Prometheus replicas ask.
A collection that fails (the store is down) keeps the previous file served and counts in
``clusterpedia_kube_state_metrics_collection_failures_total``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from common.settings import KubeStateMetricsSettings, Settings
from common.storage import StoreReader, open_store
from kubestate.collector import Collection, collect
from kubestate.families import ResourceMetrics, select

log = logging.getLogger("clusterpedia.kubestate")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
READ_CHUNK_BYTES = 256 * 1024


class Collector:
    """The refresh loop and the last finished collection."""

    def __init__(
        self,
        reader: StoreReader,
        resources: tuple[ResourceMetrics, ...],
        settings: KubeStateMetricsSettings,
        directory: Path,
    ) -> None:
        self.reader = reader
        self.resources = resources
        self.settings = settings
        self.directory = directory
        self.current: Collection | None = None
        self.failures = 0
        self.collected = asyncio.Event()
        """Set after each collection (success or failure); tests and the first scrape wait on it."""

    async def collect_once(self) -> None:
        try:
            done = await collect(
                self.reader,
                self.resources,
                self.directory,
                page_rows=self.settings.page_rows,
                max_series=self.settings.max_series,
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.failures += 1
            log.error(
                "kube-state collection failed; serving the previous one",
                extra={"error": f"{type(exc).__name__}: {exc}", "failures": self.failures},
            )
        else:
            previous, self.current = self.current, done
            if previous is not None:
                # A scrape still streaming it holds it open: unlinking only drops the name.
                previous.path.unlink(missing_ok=True)
            log.info(
                "kube-state collection finished",
                extra={
                    "series": done.series,
                    "objects": done.objects,
                    "seconds": round(done.seconds, 3),
                    "truncated": done.truncated,
                },
            )
        self.collected.set()

    async def run(self) -> None:
        while True:
            await self.collect_once()
            await asyncio.sleep(self.settings.refresh_interval_seconds)

    def own_series(self) -> str:
        """The tier's series about its last collection (appended to every scrape)."""
        c = self.current
        assert c is not None
        rows = (
            ("series", "gauge", "Series in the last finished collection (these excluded).", c.series),
            ("objects", "gauge", "Objects read by the last finished collection.", c.objects),
            (
                "skipped_objects",
                "gauge",
                "Objects the last collection left out because their JSON did not fit.",
                c.skipped,
            ),
            (
                "truncated",
                "gauge",
                "1 when the last collection stopped at kube_state_metrics.max_series.",
                int(c.truncated),
            ),
            (
                "collection_duration_seconds",
                "gauge",
                "How long the last finished collection took.",
                round(c.seconds, 6),
            ),
            (
                "last_collection_timestamp_seconds",
                "gauge",
                "When the last finished collection ended (Unix time).",
                round(c.finished_at, 3),
            ),
            (
                "collection_failures_total",
                "counter",
                "Collections that failed (the previous one stayed served).",
                self.failures,
            ),
        )
        out = []
        for name, kind, help_text, value in rows:
            full = f"clusterpedia_kube_state_metrics_{name}"
            out.append(f"# HELP {full} {help_text}\n# TYPE {full} {kind}\n{full} {value}\n")
        return "".join(out)


def _stream(path: Path, trailer: bytes) -> Iterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(READ_CHUNK_BYTES):
            yield chunk
    yield trailer


def load_token(settings: KubeStateMetricsSettings) -> bytes:
    """The bearer token a scrape must carry ("" : none), read once at start."""
    if not settings.bearer_token_file:
        return b""
    token = Path(settings.bearer_token_file).read_bytes().strip()
    if not token:
        raise ValueError(f"kube_state_metrics.bearer_token_file {settings.bearer_token_file} is empty")
    return token


def create_app(collector: Collector, token: bytes, *, own_lifecycle: bool = True) -> Starlette:
    """The tier's app; with ``own_lifecycle`` its lifespan runs the refresh loop."""

    def authorized(request: Request) -> bool:
        if not token:
            return True
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token)

    async def metrics(request: Request) -> Response:
        if not authorized(request):
            return PlainTextResponse(
                "Unauthorized: this endpoint needs the bearer token of"
                " kube_state_metrics.bearer_token_file\n",
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer realm="clusterpedia-kube-state-metrics"'},
            )
        current = collector.current
        if current is None:
            return PlainTextResponse(
                "Service Unavailable: the first collection has not finished yet\n", status_code=503
            )
        # Opened here, so a collection that replaces the file meanwhile does not cut this scrape.
        return StreamingResponse(
            _stream(current.path, collector.own_series().encode()), media_type=CONTENT_TYPE
        )

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok\n")

    async def readyz(request: Request) -> Response:
        if collector.current is None:
            return PlainTextResponse("the first collection has not finished yet\n", status_code=503)
        return PlainTextResponse("ok\n")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        task = asyncio.create_task(collector.run(), name="kube-state-collector")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return Starlette(
        routes=[
            Route("/metrics", metrics),
            Route("/healthz", healthz),
            Route("/livez", healthz),
            Route("/readyz", readyz),
        ],
        lifespan=lifespan if own_lifecycle else None,
    )


def run_kube_state_metrics(settings: Settings) -> int:
    """Serve until SIGTERM/SIGINT (uvicorn's handlers); 0 on a clean stop."""
    ksm = settings.kube_state_metrics
    resources = select(ksm.resources)
    token = load_token(ksm)
    store = open_store(settings.storage)
    store.migrate()
    directory = Path(tempfile.mkdtemp(prefix="clusterpedia-kube-state-"))
    try:
        collector = Collector(store, resources, ksm, directory)
        config = uvicorn.Config(
            create_app(collector, token),
            host=ksm.bind_host,
            port=ksm.port,
            log_config=None,
            access_log=False,
            lifespan="on",
        )
        log.info(
            "serving kube-state metrics",
            extra={
                "address": f"http://{ksm.bind_host}:{ksm.port}/metrics",
                "resources": ",".join(r.key for r in resources),
                "token": bool(token),
            },
        )
        uvicorn.Server(config).run()
        return 0
    finally:
        store.close()
        shutil.rmtree(directory, ignore_errors=True)
