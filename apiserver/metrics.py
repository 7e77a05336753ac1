"""Prometheus metrics of the API tier: requests by verb/code and their latency (``/metrics``)."""

from __future__ import annotations

import time

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from apiserver.routing import parse_path
from common.errors import NotFound

RESOURCES_PREFIX = "/apis/clusterpedia.io/v1beta1/resources"

REQUESTS = Counter(
    "clusterpedia_apiserver_requests_total",
    "HTTP requests served by the API tier.",
    ["method", "code", "kind"],
)
LATENCY = Histogram(
    "clusterpedia_apiserver_request_duration_seconds",
    "Time to serve one request, by kind (list, get, discovery, subresource, other).",
    ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


def request_kind(path: str) -> str:
    """A small fixed label set (never the raw path: unbounded cardinality)."""
    if path in ("/healthz", "/readyz", "/livez", "/metrics"):
        return "probe"
    if path.startswith(RESOURCES_PREFIX + "/"):
        try:
            route = parse_path(path[len(RESOURCES_PREFIX) :])
        except NotFound:
            return "other"
        if route.subresource:
            return "subresource"
        return route.action if route.action in ("list", "get") else "discovery"
    if "/collectionresources" in path:
        return "collection"
    return "other"


TUNNELED_STATE_KEY = "tunneled"
"""Set in the scope state by a handler that answered 101 on a taken-over connection."""


class MetricsMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        code = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal code
            if message["type"] == "http.response.start":
                code = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            if (scope.get("state") or {}).get(TUNNELED_STATE_KEY):
                code = 101  # an upgrade, answered by the member through the taken-over connection
            kind = request_kind(scope["path"])
            REQUESTS.labels(scope["method"], str(code), kind).inc()
            LATENCY.labels(kind).observe(time.perf_counter() - start)


async def metrics_endpoint(request: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
