"""Authentication and authorisation decisions of the API tier (pure parts and the middleware).

The host's review APIs are the protocol edge: a stand-in host client answers TokenReviews and
SubjectAccessReviews like kube-apiserver does (real ones run in tests/e2e/test_kubectl_aggregation.py).
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from apiserver.auth import (
    PEER_CERT_STATE_KEY,
    PROXIED_STATE_KEY,
    AccessReviewer,
    Attributes,
    AuthConfig,
    AuthMiddleware,
    RequestHeaderConfig,
    TokenReviewer,
    request_attributes,
    request_header_config_from_configmap,
    user_from_request_headers,
)

P = "/apis/clusterpedia.io/v1beta1/resources"
PROXY_CERT = {"subject": ((("commonName", "front-proxy-client"),),)}


def test_configmap_settings() -> None:
    data = {
        "requestheader-client-ca-file": "-----BEGIN CERTIFICATE-----\n...",
        "requestheader-allowed-names": '["front-proxy-client"]',
        "requestheader-username-headers": '["X-Remote-User"]',
        "requestheader-group-headers": '["X-Remote-Group"]',
        "requestheader-extra-headers-prefix": '["X-Remote-Extra-"]',
    }
    config = request_header_config_from_configmap(data)
    assert config is not None and config.allowed_names == ("front-proxy-client",)
    assert request_header_config_from_configmap({"client-ca-file": "x"}) is None


def test_identity_headers_only_from_the_allowed_proxy() -> None:
    config = RequestHeaderConfig("ca", allowed_names=("front-proxy-client",))
    headers = Headers(
        raw=[
            (b"x-remote-user", b"carol"),
            (b"x-remote-group", b"dev"),
            (b"x-remote-group", b"system:authenticated"),
            (b"x-remote-extra-scopes", b"a"),
        ]
    )
    user = user_from_request_headers(config, PROXY_CERT, headers)
    assert user is not None
    assert (user.name, user.groups, dict(user.extra)) == (
        "carol",
        ("dev", "system:authenticated"),
        {"scopes": ("a",)},
    )
    other = {"subject": ((("commonName", "evil"),),)}
    assert user_from_request_headers(config, other, headers) is None
    assert user_from_request_headers(config, None, headers) is None
    assert user_from_request_headers(config, PROXY_CERT, Headers(raw=[])) is None
    anyone = RequestHeaderConfig("ca")  # no allowed names: any certificate of the CA
    assert user_from_request_headers(anyone, other, headers) is not None


def test_request_attributes() -> None:
    assert request_attributes(P + "/apis/apps/v1/deployments") == Attributes(
        "list", "clusterpedia.io", "v1beta1", "resources"
    )
    assert request_attributes(P + "/clusters/c1/api/v1/namespaces/ns1/pods") == Attributes(
        "list", "clusterpedia.io", "v1beta1", "resources", "ns1"
    )
    assert request_attributes(P + "/api/v1/namespaces/ns1/pods/p").verb == "get"
    assert request_attributes(P + "/apis").verb == "get"
    assert request_attributes("/apis/pedia.clusterpedia.io/v1alpha1/collectionresources") == Attributes(
        "list", "pedia.clusterpedia.io", "v1alpha1", "collectionresources"
    )
    coll = request_attributes("/apis/clusterpedia.io/v1beta1/collectionresources/workloads")
    assert (coll.verb, coll.name) == ("get", "workloads")
    assert request_attributes("/version").review_spec() == {
        "nonResourceAttributes": {"path": "/version", "verb": "get"}
    }


class FakeHost:
    """Answers the two review APIs like kube-apiserver; counts calls (to see the caches work)."""

    def __init__(self, allowed_users: set[str], tokens: dict[str, str], down: bool = False) -> None:
        self.allowed_users = allowed_users
        self.tokens = tokens
        self.down = down
        self.calls: list[str] = []

    async def post_json(self, path: str, body: dict[str, Any]) -> Any:
        self.calls.append(path)
        if self.down:
            raise httpx.ConnectError("connection refused")
        spec = body["spec"]
        if path.endswith("/tokenreviews"):
            user = self.tokens.get(spec["token"])
            if user is None:
                return {"status": {"authenticated": False}}
            return {
                "status": {
                    "authenticated": True,
                    "user": {"username": user, "groups": ["system:authenticated"]},
                }
            }
        return {"status": {"allowed": spec["user"] in self.allowed_users, "reason": "RBAC says so"}}


async def _ok(request: Request) -> Response:
    user = getattr(request.state, "user", None)
    proxied = " (proxied)" if request.scope["state"].get(PROXIED_STATE_KEY) else ""
    return PlainTextResponse((user.name if user is not None else "") + proxied)


def _app(host: FakeHost) -> Starlette:
    config = AuthConfig(
        request_header=RequestHeaderConfig("ca", allowed_names=("front-proxy-client",)),
        tokens=TokenReviewer(host),  # type: ignore[arg-type]
        access=AccessReviewer(host),  # type: ignore[arg-type]
    )
    routes = [Route("/{path:path}", _ok)]
    return Starlette(routes=routes, middleware=[Middleware(AuthMiddleware, config=config)])


def _get(
    app: Starlette, path: str, headers: dict[str, str], peer: dict[str, Any] | None = None
) -> httpx.Response:
    async def go() -> httpx.Response:
        async def with_peer(scope: Any, receive: Any, send: Any) -> None:
            if peer is not None:
                scope.setdefault("state", {})[PEER_CERT_STATE_KEY] = peer
            await app(scope, receive, send)

        transport = httpx.ASGITransport(app=with_peer)
        async with httpx.AsyncClient(transport=transport, base_url="https://t") as client:
            return await client.get(path, headers=headers)

    return asyncio.run(go())


def test_middleware_decisions() -> None:
    host = FakeHost({"carol", "admin"}, {"t-admin": "admin", "t-dave": "dave"})
    app = _app(host)
    path = P + "/apis/apps/v1/deployments"
    r = _get(app, path, {"X-Remote-User": "carol"}, PROXY_CERT)
    assert (r.status_code, r.text) == (200, "carol (proxied)")  # the aggregator's: its timeout applies
    r = _get(app, path, {"X-Remote-User": "carol"})
    assert r.status_code == 401 and r.json()["reason"] == "Unauthorized"
    r = _get(app, path, {"Authorization": "Bearer t-admin"})
    assert (r.status_code, r.text) == (200, "admin")
    r = _get(app, path, {"Authorization": "Bearer t-dave"})
    assert r.status_code == 403
    body = r.json()
    assert body["reason"] == "Forbidden"
    assert body["message"] == (
        'resources.clusterpedia.io is forbidden: User "dave" cannot list resource "resources" in API group '
        '"clusterpedia.io" at the cluster scope: RBAC says so'
    )
    assert _get(app, path, {"Authorization": "Bearer nope"}).status_code == 401
    assert _get(app, "/healthz", {}).status_code == 200  # probes are open
    calls = len(host.calls)
    _get(app, path, {"Authorization": "Bearer t-admin"})
    assert len(host.calls) == calls  # token and decision both cached


def test_unreachable_host_is_a_503_status() -> None:
    app = _app(FakeHost(set(), {}, down=True))
    r = _get(app, P + "/api", {"Authorization": "Bearer x"})
    assert r.status_code == 503 and r.json()["reason"] == "ServiceUnavailable"
    r = _get(app, P + "/api", {"X-Remote-User": "carol"}, PROXY_CERT)
    assert r.status_code == 503 and "authorize" in r.json()["message"]
