"""OpenAPI endpoints.

The served objects come from many member clusters, each with its own schema per version, and the
store keeps only objects, not schemas; so no spec is served and both endpoints answer a clean 404
Status (kube-aggregator tolerates that for an aggregated server; ``kubectl explain`` reports that the
server has no schema).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from apiserver.responses import status_response
from common.errors import NotFound


def _missing(request: Request) -> Response:
    return status_response(
        NotFound(
            f"{request.url.path} is not served: Clusterpedia does not publish OpenAPI schemas", details={}
        )
    )


async def v2(request: Request) -> Response:
    return _missing(request)


async def v3_index(request: Request) -> Response:
    return _missing(request)


async def v3_group(request: Request) -> Response:
    return _missing(request)
