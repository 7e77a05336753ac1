"""Logging setup and the small health/metrics HTTP server shared by every tier.

The API tier serves its own probes from its Starlette app; the synchro and the writer have no
HTTP server of their own, so the command line starts this one (a ``ThreadingHTTPServer`` in a
daemon thread) on ``metrics_port``. It answers:

- ``/livez`` and ``/healthz``: 200 while the process is alive and no component reported itself dead;
- ``/readyz``: 200 when every registered component reports ready (a component that is starting,
  or that lost its database or queue, reports not ready with a reason);
- ``/metrics``: the Prometheus text format of the default ``prometheus_client`` registry, where
  the tiers register their own counters and histograms.

Tiers report with ``HEALTH.set_ready("writer", False, "database unreachable")``; the command line
registers each component it starts as ready once it runs, so a tier that never reports is ready
while it is running.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import msgspec
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from common.settings import Settings

# Attributes every LogRecord has; anything else was passed with ``extra=`` and is logged as a field.
_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime", "taskName"}
)

_json = msgspec.json.Encoder()


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, tier, then ``extra=`` fields."""

    def __init__(self, tier: str) -> None:
        super().__init__()
        self.tier = tier

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if self.tier:
            out["tier"] = self.tier
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                out[key] = value if isinstance(value, str | int | float | bool | None) else str(value)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return _json.encode(out).decode()


class TextFormatter(logging.Formatter):
    """Human-readable lines with ``extra=`` fields appended as key=value."""

    def __init__(self, tier: str) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
        self.tier = tier

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = [
            f"{k}={v}" for k, v in vars(record).items() if k not in _STANDARD_ATTRS and not k.startswith("_")
        ]
        if self.tier:
            extras.insert(0, f"tier={self.tier}")
        return f"{line} {' '.join(extras)}" if extras else line


def setup_logging(settings: Settings, tier: str = "") -> None:
    """Configure the root logger from ``log_level`` and ``log_format`` (json or text), on stderr."""
    fmt = settings.log_format.lower()
    if fmt not in ("json", "text"):
        raise ValueError(f"log_format must be json or text, not {settings.log_format!r}")
    level = logging.getLevelName(settings.log_level.upper())
    if not isinstance(level, int):
        raise ValueError(f"unknown log_level {settings.log_level!r}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(tier) if fmt == "json" else TextFormatter(tier))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # Chatty client libraries stay at WARNING unless we debug.
    if level > logging.DEBUG:
        for name in ("httpx", "httpcore", "kubernetes", "urllib3"):
            logging.getLogger(name).setLevel(logging.WARNING)


class HealthState:
    """Readiness and liveness of the components running in this process (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ready: dict[str, tuple[bool, str]] = {}
        self._dead: dict[str, str] = {}

    def set_ready(self, component: str, ready: bool, reason: str = "") -> None:
        with self._lock:
            self._ready[component] = (ready, reason)

    def set_dead(self, component: str, reason: str) -> None:
        """The component stopped for good (e.g. its thread crashed): /livez turns 500."""
        with self._lock:
            self._dead[component] = reason

    def forget(self, component: str) -> None:
        with self._lock:
            self._ready.pop(component, None)
            self._dead.pop(component, None)

    def readiness(self) -> tuple[bool, list[str]]:
        """(all ready, one line per component) as kube-apiserver's ``/readyz?verbose`` prints."""
        with self._lock:
            items = sorted(self._ready.items())
        lines = [
            f"[+]{name} ok" if ok else f"[-]{name} failed: {why or 'not ready'}" for name, (ok, why) in items
        ]
        return all(ok for _, (ok, _) in items), lines

    def liveness(self) -> tuple[bool, list[str]]:
        with self._lock:
            dead = sorted(self._dead.items())
        return not dead, [f"[-]{name} failed: {why}" for name, why in dead]


HEALTH = HealthState()
"""The process-wide health state the tiers report to."""


class _Handler(BaseHTTPRequestHandler):
    health: ClassVar[HealthState] = HEALTH
    server_version = "clusterpedia"

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        if path == "/metrics":
            self._reply(200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST)
        elif path in ("/livez", "/healthz"):
            self._probe(*self.health.liveness())
        elif path == "/readyz":
            self._probe(*self.health.readiness())
        else:
            self._reply(404, b"404 page not found\n", "text/plain; charset=utf-8")

    def _probe(self, ok: bool, lines: list[str]) -> None:
        body = "\n".join([*lines, "ok" if ok else "check failed"]) + "\n"
        self._reply(200 if ok else 500, body.encode(), "text/plain; charset=utf-8")

    def _reply(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        # Probes hit this every few seconds; access logs would drown the tier's own logs.
        pass


class ObservabilityServer:
    """The health/metrics HTTP server running in a daemon thread."""

    def __init__(self, host: str, port: int, health: HealthState = HEALTH) -> None:
        handler = type("Handler", (_Handler,), {"health": health})
        self._httpd = ThreadingHTTPServer((host, port), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="observability-http", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def start(self) -> ObservabilityServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def start_observability_server(
    settings: Settings, health: HealthState = HEALTH
) -> ObservabilityServer | None:
    """Start the server on ``metrics_bind_host:metrics_port``; None when ``metrics_port`` is 0."""
    if settings.metrics_port <= 0:
        return None
    server = ObservabilityServer(settings.metrics_bind_host, settings.metrics_port, health).start()
    logging.getLogger(__name__).info(
        "serving /metrics /healthz /readyz /livez",
        extra={"address": f"{settings.metrics_bind_host}:{server.port}"},
    )
    return server
