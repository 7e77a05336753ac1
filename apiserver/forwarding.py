"""Writes and subresources forwarded to one member as the caller, answered as the member answers.

The request path below ``.../resources/clusters/{name}`` is the member's own path; the query string
(``dryRun``, ``fieldManager``, ``force``, ``propagationPolicy``, ``follow``...) is passed as it is.
A write without a cluster in the path is a 400 naming the clusters to choose from: the same name
may exist in several, and Clusterpedia does not pick one (as for gets of an ambiguous name).

The member's answer goes back with its status code (a 403 of the member's authorizer or of its
impersonation check, a 404, a 409, a 422...) and content type. A JSON object answer gets the
cluster annotation reads carry and, when it succeeded, goes into the store first
(:func:`apiserver.control.store_events`; a ``scale`` answer is a Scale, so the object itself is
read back from the member as the caller and stored; a delete is judged from the member's list of
the deleted names right after, :func:`apiserver.control.events_after_delete`). Streamed
subresources (``log``, ``exec``, ``attach``, ``portforward``, ``proxy``) are relayed as bytes.
Upgrades (SPDY, websocket) are forwarded as upgrades: when the member switches protocols, the
client's connection is taken over (:data:`apiserver.protocol.UPGRADE_STATE_KEY`) and piped to
the member's upgraded one; when it refuses, its answer is relayed like any other.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio.to_thread
import httpx
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from apiserver import control, discovery, openapi
from apiserver.auth import UserInfo, write_verb
from apiserver.catalog import Catalog
from apiserver.members import STREAM_TIMEOUT, Member, Members
from apiserver.metrics import TUNNELED_STATE_KEY
from apiserver.permissions import User
from apiserver.protocol import UPGRADE_STATE_KEY, Tunnel
from apiserver.routing import Route
from common.errors import BadRequest, Forbidden, MethodNotAllowed, NotFound, ServiceUnavailable
from common.settings import Settings
from common.storage import StorageError, StoreReader, StoreWriter
from common.transform import ObjectTransformer
from common.types import GVR

log = logging.getLogger(__name__)

RESOURCES_PREFIX = "/apis/clusterpedia.io/v1beta1/resources"


class Forwarding:
    def __init__(
        self,
        settings: Settings,
        store: StoreReader,
        catalog: Catalog,
        members: Members | None,
        writer: StoreWriter | None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.catalog = catalog
        self.members = members
        self.writer = writer

    async def _all_clusters_refusal(self, request: Request, route: Route) -> BadRequest:
        rows = await self.catalog.rows("")
        serving = sorted({r.cluster for r in rows if (r.group, r.resource) == (route.group, route.resource)})
        clusters = serving or sorted({r.cluster for r in rows})
        verb = write_verb(request.method, route.action == "list") if request.method != "GET" else "get"
        what = f"{route.subresource} of " if route.subresource else ""
        example = f"kubectl --cluster {clusters[0]} ..." if clusters else "kubectl --cluster <name> ..."
        return BadRequest(
            f"{verb} {what}{route.resource or 'this path'} needs a cluster: the all-clusters view cannot"
            f" choose one. Name the cluster ({RESOURCES_PREFIX}/clusters/<name>/...), one of:"
            f" {', '.join(clusters) or 'none synced yet'}; e.g. {example}"
        )

    async def forward(self, request: Request, route: Route, caller: UserInfo) -> Response:
        if route.action == "openapi-v2" and request.method != "GET":
            raise MethodNotAllowed(f"{request.method} is not supported on this path", details={})
        if route.action not in ("get", "list", "openapi-v2") or (
            route.action == "list" and request.method in ("PUT", "PATCH")
        ):
            raise MethodNotAllowed(f"{request.method} is not supported on this path", details={})
        if not route.cluster:
            if route.action == "openapi-v2":
                return openapi.empty_v2(request.headers.get("accept", ""))
            raise await self._all_clusters_refusal(request, route)
        if self.members is None:
            if request.method == "GET":
                raise NotFound("the server could not find the requested resource", details={})
            raise MethodNotAllowed(
                f"{request.method} is not supported: this API tier does not reach the host cluster "
                "(--kubeconfig), so it cannot forward writes to members",
                details={},
            )
        if any(k.lower().startswith("impersonate-") for k in request.headers):
            # only the host impersonates (kubectl --as through it arrives as X-Remote-User): a write
            # must not silently go out as the authenticated caller instead of the one asked for
            raise Forbidden(
                "impersonation headers are not accepted by Clusterpedia's API tier: send the request"
                " through the host kube-apiserver, which impersonates (kubectl --as) before it proxies",
                details={},
            )
        member = await self.members.member(route.cluster)
        user = member.identity(User(caller.name, frozenset(caller.groups)))
        headers = control.impersonation_headers(user, caller.extra)
        stream = route.subresource in control.STREAMED_SUBRESOURCES or route.action == "openapi-v2"
        take_over = request.scope.get("state", {}).get(UPGRADE_STATE_KEY)
        client_headers = request.headers.items()
        if take_over is None:  # not served by our protocol: no way to tunnel, ask for no upgrade
            client_headers = [(k, v) for k, v in client_headers if k.lower() not in ("connection", "upgrade")]
        headers += control.forwarded_headers(client_headers, stream=stream)
        body = b""
        if request.method != "GET":
            limit = self.settings.apiserver.max_request_body_bytes
            body = await control.read_body(request.stream(), request.headers.get("content-length"), limit)
        if request.method in ("PUT", "PATCH") and body:
            stored = await self.store.get_objects(
                route.cluster, route.group, route.resource, route.namespace, route.name
            )
            body = control.translate_body(
                body,
                stored[0].object if stored else None,
                group=route.group,
                resource=route.resource,
                name=route.name,
            )
        path = member_path(request, route.cluster)
        query = request.scope.get("query_string") or b""
        outgoing = member.client.build_request(
            request.method,
            path + ("?" + query.decode("latin-1") if query else ""),
            headers=headers,
            content=body if body else None,
            timeout=STREAM_TIMEOUT if stream else httpx.USE_CLIENT_DEFAULT,
        )
        try:
            answer = await member.client.send(outgoing, stream=True)
        except httpx.HTTPError as exc:
            log.warning("forwarding to cluster %s failed: %s", route.cluster, type(exc).__name__)
            raise ServiceUnavailable(
                f'cluster "{route.cluster}" does not answer: {type(exc).__name__}'
            ) from None
        if answer.status_code == 101:
            network = answer.extensions.get("network_stream")
            if network is None or take_over is None:
                await answer.aclose()
                raise ServiceUnavailable(
                    f'cluster "{route.cluster}" switched protocols, which cannot be tunneled'
                )
            return _Tunneled(answer, network, take_over)
        relayed = control.relayed_headers(answer.headers.multi_items())
        if stream:
            return _with_headers(
                StreamingResponse(
                    _relay(answer),
                    status_code=answer.status_code,
                    background=BackgroundTask(answer.aclose),
                ),
                relayed,
            )
        try:
            content = await answer.aread()
        except httpx.HTTPError:
            raise ServiceUnavailable(f'cluster "{route.cluster}" closed its answer early') from None
        finally:
            await answer.aclose()
        revision = None
        if 200 <= answer.status_code < 300:
            revision = await self._double_write(request, route, member, headers, answer.status_code, content)
        body = control.annotate_answer(content, route.cluster)
        if revision is not None:
            body = control.with_revision(body, revision)
        return _with_headers(Response(body, answer.status_code), relayed)

    async def _double_write(
        self,
        request: Request,
        route: Route,
        member: Member,
        headers: list[tuple[str, str]],
        code: int,
        content: bytes,
    ) -> int | None:
        """Store what the member answered, if this resource is synced in this version; the store's
        revision of the written object when the answer is that object as now stored (the answer is
        then served with it, as reads serve objects)."""
        if self.writer is None or request.query_params.get("dryRun"):
            return None
        found = discovery.find_resource(
            await self.catalog.rows(route.cluster), route.group, route.version, route.resource
        )
        if found is None:
            return None
        rtype = found[0]
        transformer = ObjectTransformer(
            route.cluster,
            GVR(route.group, route.version, route.resource),
            rtype.kind,
            strip_last_applied=self.settings.synchro.strip_last_applied,
            namespaces=member.namespaces,
            redact_values=self.settings.synchro.redact_secret_values
            and (route.group, route.resource) == ("", "secrets"),
        )
        as_caller = [h for h in headers if h[0].startswith("Impersonate-")] + [("Accept", "application/json")]
        path = member_path(request, route.cluster)
        events: control.StoreEvents | None
        if request.method == "DELETE" and not route.subresource:
            # the member's list of what was deleted, right after: gone or still there, and as of when
            deleted = control.deleted_keys(content, route.namespace, route.name)
            if route.name:
                listing = path.rsplit("/", 1)[0], {"fieldSelector": f"metadata.name={route.name}"}
            else:
                keep = ("labelSelector", "fieldSelector")
                listing = path, {k: v for k, v in request.query_params.multi_items() if k in keep}
            got = await _get(member, listing[0], listing[1], as_caller)
            events = control.events_after_delete(deleted, got, transformer)
        else:
            events = control.store_events(request.method, code, content, transformer, rtype.kind)
        if events is None and route.subresource and route.name:
            # a Scale (or another subresource's own kind): the object itself, as the caller reads it
            got = await _get(member, path.split(f"/{route.name}/", 1)[0] + f"/{route.name}", {}, as_caller)
            events = control.store_events("GET", 200, got, transformer, rtype.kind) if got else None
        if events is None or not (events.upserts or events.deletes):
            return None
        try:
            await anyio.to_thread.run_sync(self.writer.apply, events.upserts, events.deletes, [])
        except StorageError as exc:
            # the member has it; the synchro's watch event will bring it to the store
            log.warning("storing the answer of a write to cluster %s failed: %s", route.cluster, exc)
            return None
        if route.subresource or len(events.upserts) != 1 or events.deletes:
            return None
        written = events.upserts[0]
        try:
            stored = await self.store.get_objects(
                route.cluster, route.group, route.resource, written.namespace, written.name
            )
        except StorageError:
            return None
        same = [o for o in stored if o.resource_version == written.resource_version and o.revision]
        return same[0].revision if same else None


class _Tunneled(Response):
    """A 101: the member's upgraded connection piped to the client's, both ways, until one ends."""

    def __init__(self, answer: httpx.Response, network: Any, take_over: Callable[[bytes], Tunnel]) -> None:
        super().__init__(status_code=101)
        self.answer, self.network, self.take_over = answer, network, take_over

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope.setdefault("state", {})[TUNNELED_STATE_KEY] = True
        tunnel = self.take_over(control.switching_head(self.answer.headers.raw))
        try:
            async with anyio.create_task_group() as tg:

                async def upstream() -> None:
                    with contextlib.suppress(Exception):
                        while data := await tunnel.read():
                            await self.network.write(data)
                    tg.cancel_scope.cancel()

                async def downstream() -> None:
                    with contextlib.suppress(Exception):
                        while data := await self.network.read(65536):
                            await tunnel.write(data)
                    tg.cancel_scope.cancel()

                tg.start_soon(upstream)
                tg.start_soon(downstream)
        finally:
            tunnel.close()
            with anyio.CancelScope(shield=True):
                with contextlib.suppress(Exception):
                    await self.network.aclose()
                await self.answer.aclose()


async def _get(
    member: Member, path: str, params: dict[str, str], headers: list[tuple[str, str]]
) -> bytes | None:
    """A JSON GET on the member as the caller: the body of a 200, else None."""
    try:
        got = await member.client.get(path, params=params, headers=headers)
    except httpx.HTTPError:
        return None
    return got.content if got.status_code == 200 else None


def _with_headers(response: Response, headers: list[tuple[str, str]]) -> Response:
    """``response`` with the member's headers (several Warning headers may repeat)."""
    response.raw_headers = [h for h in response.raw_headers if h[0] != b"content-type"] + [
        (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers
    ]
    return response


async def _relay(answer: httpx.Response) -> AsyncIterator[bytes]:
    try:
        async for chunk in answer.aiter_bytes():
            yield chunk
    except httpx.HTTPError:
        return  # the member ended the stream; the client sees the end of it


def member_path(request: Request, cluster: str) -> str:
    """The member's path: what follows ``.../resources/clusters/{cluster}``, as the client sent it
    (percent-encoding kept)."""
    raw = request.scope.get("raw_path")
    path = raw.decode("latin-1") if isinstance(raw, bytes) else request.url.path
    prefix = f"{RESOURCES_PREFIX}/clusters/{cluster}"
    return path[len(prefix) :] if path.startswith(prefix) else request.url.path[len(prefix) :]
