"""Authentication of the aggregator's proxied requests and authorisation against the host cluster.

The host's kube-aggregator authenticates the user, then proxies the request to us over TLS with its
proxy client certificate and the user in ``X-Remote-User`` / ``X-Remote-Group`` /
``X-Remote-Extra-*`` headers. Those headers are trusted only when the TLS stack verified the peer's
certificate against the requestheader client CA (uvicorn does not expose the peer certificate to the
app: :mod:`apiserver.server` puts it in the connection's state) and its CN is one of the allowed
names; the CA, names and header names come from the host's
``kube-system/extension-apiserver-authentication`` ConfigMap, as for any aggregated apiserver.
Without such a certificate a bearer token is checked with a TokenReview against the host; anything
else is a 401 Status.

Authorisation is a SubjectAccessReview against the host, cached for a few seconds per decision:
reads of the Kubernetes-shaped API are ``get``/``list``/``watch`` on ``resources.clusterpedia.io`` (with
the request's namespace when the path names one), writes forwarded to a member ``create``/``update``/
``patch``/``delete``/``deletecollection`` on it, collection reads ``get``/``list``/``watch`` on
``collectionresources``,
and the group documents (``/apis``, ``/version``, ``/openapi``) non-resource ``get`` on their path.
Probes (``/healthz``, ``/readyz``, ``/livez``) and ``/metrics`` are open. See docs/api.md.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote

import httpx
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from apiserver.host import HostClient
from apiserver.responses import status_response
from apiserver.routing import parse_path
from common.errors import Forbidden, NotFound, ServiceUnavailable, StatusError, Unauthorized

log = logging.getLogger(__name__)

PEER_CERT_STATE_KEY = "tls_peer_cert"
"""Key of the verified TLS peer certificate (``ssl.getpeercert()`` dict) in the ASGI scope state."""
PROXIED_STATE_KEY = "proxied"
"""Set (True) in the ASGI scope state of a request the host's aggregator proxied for its user."""

RESOURCES_PREFIX = "/apis/clusterpedia.io/v1beta1/resources"
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/livez", "/metrics"})
CONFIGMAP_PATH = "/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication"


@dataclass(frozen=True, slots=True)
class RequestHeaderConfig:
    client_ca_pem: str
    allowed_names: tuple[str, ...] = ()
    username_headers: tuple[str, ...] = ("X-Remote-User",)
    group_headers: tuple[str, ...] = ("X-Remote-Group",)
    extra_headers_prefixes: tuple[str, ...] = ("X-Remote-Extra-",)


def _json_list(value: str | None, default: tuple[str, ...]) -> tuple[str, ...]:
    if not value:
        return default
    try:
        parsed = json.loads(value)
    except ValueError:
        return default
    return tuple(str(v) for v in parsed) if isinstance(parsed, list) else default


def request_header_config_from_configmap(data: Mapping[str, str]) -> RequestHeaderConfig | None:
    """The ``extension-apiserver-authentication`` ConfigMap's data -> config (None without a CA)."""
    ca = data.get("requestheader-client-ca-file", "")
    if not ca.strip():
        return None
    return RequestHeaderConfig(
        client_ca_pem=ca,
        allowed_names=_json_list(data.get("requestheader-allowed-names"), ()),
        username_headers=_json_list(data.get("requestheader-username-headers"), ("X-Remote-User",)),
        group_headers=_json_list(data.get("requestheader-group-headers"), ("X-Remote-Group",)),
        extra_headers_prefixes=_json_list(
            data.get("requestheader-extra-headers-prefix"), ("X-Remote-Extra-",)
        ),
    )


def load_request_header_config(host: HostClient) -> RequestHeaderConfig | None:
    cm = host.get_json_sync(CONFIGMAP_PATH)
    return request_header_config_from_configmap(cm.get("data") or {})


@dataclass(frozen=True, slots=True)
class UserInfo:
    name: str
    groups: tuple[str, ...] = ()
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    uid: str = ""


ANONYMOUS = UserInfo("system:anonymous", ("system:unauthenticated",))


def _common_name(peer_cert: Mapping[str, Any]) -> str:
    for rdn in peer_cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return ""


def user_from_request_headers(
    config: RequestHeaderConfig, peer_cert: Mapping[str, Any] | None, headers: Headers
) -> UserInfo | None:
    """The user the aggregator vouches for, or None when the peer is not a trusted proxy or sent no
    user (the request then falls through to token authentication)."""
    if not peer_cert:
        return None
    if config.allowed_names and _common_name(peer_cert) not in config.allowed_names:
        return None
    name = next((headers[h] for h in config.username_headers if headers.get(h)), "")
    if not name:
        return None
    groups = tuple(g for h in config.group_headers for g in headers.getlist(h) if g)
    # As kube-apiserver's authenticator chain: every authenticated user is in system:authenticated
    # (the aggregator's own discovery/OpenAPI requests as system:aggregator carry no group).
    if "system:authenticated" not in groups:
        groups = (*groups, "system:authenticated")
    extra: dict[str, list[str]] = {}
    for key, value in headers.items():
        for prefix in config.extra_headers_prefixes:
            if key.lower().startswith(prefix.lower()):
                # the aggregator percent-escapes extra keys (client-go's headerKeyEscape)
                extra.setdefault(unquote(key[len(prefix) :].lower()), []).append(value)
    return UserInfo(name, groups, {k: tuple(v) for k, v in extra.items()})


@dataclass(frozen=True, slots=True)
class Attributes:
    """What a request does, in SubjectAccessReview terms."""

    verb: str
    group: str = ""
    version: str = ""
    resource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""  # set for non-resource requests

    def review_spec(self) -> dict[str, Any]:
        if self.path:
            return {"nonResourceAttributes": {"path": self.path, "verb": self.verb}}
        attrs = {"verb": self.verb, "group": self.group, "version": self.version, "resource": self.resource}
        if self.namespace:
            attrs["namespace"] = self.namespace
        if self.name:
            attrs["name"] = self.name
        return {"resourceAttributes": attrs}

    def describe(self) -> str:
        if self.path:
            return f'{self.verb} path "{self.path}"'
        where = f'in the namespace "{self.namespace}"' if self.namespace else "at the cluster scope"
        return f'{self.verb} resource "{self.resource}" in API group "{self.group}" {where}'


def is_watch(query_string: bytes | str) -> bool:
    """Whether a query asks for a watch (``watch=true`` or ``watch=1``, as kube-apiserver reads it)."""
    text = query_string.decode("latin-1") if isinstance(query_string, bytes) else query_string
    return any(v.lower() in ("true", "1") for k, v in parse_qsl(text, keep_blank_values=True) if k == "watch")


def request_attributes(path: str, method: str = "GET", *, watch: bool = False) -> Attributes:
    """SubjectAccessReview attributes of a request: reads are ``get``/``list`` (``watch`` for a list
    path asked to watch), writes under the resources prefix (forwarded to a member) ``create``/
    ``update``/``patch``/``delete``/``deletecollection``, as kube-apiserver names the verb of each
    method."""
    write = method not in ("GET", "HEAD")
    if path == RESOURCES_PREFIX or path.startswith(RESOURCES_PREFIX + "/"):
        try:
            route = parse_path(path[len(RESOURCES_PREFIX) :])
        except NotFound:
            return Attributes(
                write_verb(method, False) if write else "get", "clusterpedia.io", "v1beta1", "resources"
            )
        collection = route.action == "list" and not route.subresource
        read = ("watch" if watch else "list") if collection else "get"
        verb = write_verb(method, collection) if write else read
        return Attributes(verb, "clusterpedia.io", "v1beta1", "resources", route.namespace)
    parts = path.strip("/").split("/")
    if len(parts) in (4, 5) and parts[0] == "apis" and parts[3] == "collectionresources":
        verb = "get" if len(parts) == 5 else "list"
        verb = "watch" if watch else verb
        return Attributes(
            verb, parts[1], parts[2], "collectionresources", name=parts[4] if len(parts) == 5 else ""
        )
    return Attributes("get", path=path)


def write_verb(method: str, collection: bool) -> str:
    """The Kubernetes verb of a write method (``deletecollection``: a DELETE on a list)."""
    if method == "DELETE":
        return "deletecollection" if collection else "delete"
    return {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(method, method.lower())


class TokenReviewer:
    def __init__(self, host: HostClient, ttl_seconds: float = 10.0) -> None:
        self.host = host
        self.ttl = ttl_seconds
        self._cache: dict[str, tuple[float, UserInfo | None]] = {}

    async def review(self, token: str) -> UserInfo | None:
        now = time.monotonic()
        hit = self._cache.get(token)
        if hit is not None and hit[0] > now:
            return hit[1]
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}}
        try:
            result = await self.host.post_json("/apis/authentication.k8s.io/v1/tokenreviews", body)
        except httpx.HTTPError as e:
            raise ServiceUnavailable(f"cannot review the token with the host cluster: {e}") from e
        status = result.get("status") or {}
        user: UserInfo | None = None
        if status.get("authenticated"):
            u = status.get("user") or {}
            extra = {k: tuple(v) for k, v in (u.get("extra") or {}).items()}
            user = UserInfo(u.get("username", ""), tuple(u.get("groups") or ()), extra, u.get("uid", ""))
        if len(self._cache) > 10000:
            self._cache.clear()
        self._cache[token] = (now + self.ttl, user)
        return user


class AccessReviewer:
    def __init__(self, host: HostClient, ttl_seconds: float = 5.0) -> None:
        self.host = host
        self.ttl = ttl_seconds
        self._cache: dict[tuple[Any, ...], tuple[float, bool, str]] = {}

    async def allowed(self, user: UserInfo, attrs: Attributes) -> tuple[bool, str]:
        key = (user.name, user.groups, tuple(sorted(user.extra.items())), attrs)
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1], hit[2]
        spec: dict[str, Any] = {"user": user.name, "groups": list(user.groups), **attrs.review_spec()}
        if user.extra:
            spec["extra"] = {k: list(v) for k, v in user.extra.items()}
        if user.uid:
            spec["uid"] = user.uid
        body = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec}
        try:
            result = await self.host.post_json("/apis/authorization.k8s.io/v1/subjectaccessreviews", body)
        except httpx.HTTPError as e:
            raise ServiceUnavailable(f"cannot authorize the request with the host cluster: {e}") from e
        status = result.get("status") or {}
        allowed = bool(status.get("allowed")) and not status.get("denied")
        reason = str(status.get("reason") or "")
        if len(self._cache) > 10000:
            self._cache.clear()
        self._cache[key] = (now + self.ttl, allowed, reason)
        return allowed, reason


@dataclass
class AuthConfig:
    request_header: RequestHeaderConfig | None = None
    tokens: TokenReviewer | None = None
    access: AccessReviewer | None = None
    authenticate: bool = True


def _bearer(headers: Headers) -> str:
    value = headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else ""


class AuthMiddleware:
    """Pure ASGI middleware: authenticate, then authorise, every request but the open paths."""

    def __init__(self, app: ASGIApp, config: AuthConfig) -> None:
        self.app = app
        self.config = config

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        try:
            user = await self._authenticate(scope)
            if self.config.access is not None:
                watch = is_watch(scope.get("query_string", b""))
                attrs = request_attributes(scope["path"], scope["method"], watch=watch)
                allowed, reason = await self.config.access.allowed(user, attrs)
                if not allowed:
                    target = f"{attrs.resource}.{attrs.group}" if attrs.resource else "the requested resource"
                    message = f'{target} is forbidden: User "{user.name}" cannot {attrs.describe()}'
                    if reason:
                        message += f": {reason}"
                    raise Forbidden(message, details={"group": attrs.group, "kind": attrs.resource})
        except StatusError as e:
            await status_response(e)(scope, receive, send)
            return
        scope.setdefault("state", {})["user"] = user
        await self.app(scope, receive, send)

    async def _authenticate(self, scope: Scope) -> UserInfo:
        if not self.config.authenticate:
            return ANONYMOUS
        headers = Headers(scope=scope)
        if self.config.request_header is not None:
            peer = (scope.get("state") or {}).get(PEER_CERT_STATE_KEY)
            user = user_from_request_headers(self.config.request_header, peer, headers)
            if user is not None:
                scope.setdefault("state", {})[PROXIED_STATE_KEY] = True
                return user
        token = _bearer(headers)
        if token and self.config.tokens is not None:
            user = await self.config.tokens.review(token)
            if user is not None:
                return user
        raise Unauthorized("Unauthorized", details={})
