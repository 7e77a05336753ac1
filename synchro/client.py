"""The synchro's only HTTP client to kube-apiservers (member clusters and the host).

Raw requests over one ``httpx.AsyncClient`` per cluster, decoded with msgspec: list pages keep
their items as ``msgspec.Raw`` (each object's bytes are sliced out, not parsed), and watch streams
are read line by line. Hundreds of watches share one event loop; each holds one HTTP/1.1
connection, so the pool is unbounded.

Bodies are streamed into a ``bytearray`` of our own instead of ``Response.content``: an httpx
``Response`` and its stream reference each other, so a response is freed only by the cyclic
garbage collector, and under the synchro's allocation pattern it reaches the oldest generation
first -- every multi-megabyte list page then stayed in memory until a rare full collection
(measured: 650 MiB kept after listing 140,000 objects, i.e. memory grew with the object count).
A streamed response never holds its body, so the cycle keeps only a few hundred bytes alive.
While one page is handed out, the next one can already be on its way (``list_pages``, within a
budget of read-ahead pages), so the member's time to serve a page overlaps the synchro's time to
transform the previous one.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import httpx
import msgspec

from common.credentials import ClusterCredentials, InvalidConfig
from common.http import CancelSafeBackend, IPNetwork, client_kwargs, proxies_configured


class ApiError(Exception):
    """A non-2xx answer (or an ERROR watch event) from a kube-apiserver."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(f"{code} {reason}: {message}")
        self.code = code
        self.reason = reason
        self.message = message


class MemberGone(ApiError):
    """410: the resourceVersion is older than etcd's compaction; a relist is needed."""


class UnexpectedAnswer(ApiError):
    """A 2xx answer that is not the document asked for (not JSON, or fields of the wrong type).
    What a member returns is data: a hostile or broken answer is an error of that cluster, the
    same as an error status, never a TypeError somewhere in the sync."""

    def __init__(self, path: str, problem: str) -> None:
        Exception.__init__(self, f"unexpected answer to GET {path}: {problem}")
        self.code = 200
        self.reason = "UnexpectedAnswer"
        self.message = f"unexpected answer to GET {path}: {problem}"


class _Status(msgspec.Struct):
    code: int = 0
    reason: str = ""
    message: str = ""


class ListMeta(msgspec.Struct):
    resourceVersion: str = ""
    continue_: str = msgspec.field(name="continue", default="")
    remainingItemCount: int | None = None


class MemberPage(msgspec.Struct):
    metadata: ListMeta = msgspec.field(default_factory=ListMeta)
    items: list[msgspec.Raw] | None = None


class WatchEvent(msgspec.Struct):
    type: str
    object: msgspec.Raw


_status_decoder = msgspec.json.Decoder(_Status)
_page_decoder = msgspec.json.Decoder(MemberPage)
_event_decoder = msgspec.json.Decoder(WatchEvent)
_any_decoder = msgspec.json.Decoder()
_typed_decoders: dict[Any, msgspec.json.Decoder[Any]] = {}
T = TypeVar("T")


def decode_answer(path: str, body: bytes, type_: type[T]) -> T:
    """A member's answer to GET ``path`` as ``type_`` (a msgspec Struct: unknown fields ignored);
    :class:`UnexpectedAnswer` when it is not JSON or a field has the wrong type."""
    decoder = _typed_decoders.get(type_)
    if decoder is None:
        decoder = _typed_decoders.setdefault(type_, msgspec.json.Decoder(type_))
    try:
        return decoder.decode(body)  # type: ignore[no-any-return]
    except msgspec.DecodeError as exc:  # ValidationError included
        raise UnexpectedAnswer(path, str(exc)) from None


_encoder = msgspec.json.Encoder()


def error_from_status(code: int, body: bytes) -> ApiError:
    try:
        status = _status_decoder.decode(body)
    except msgspec.DecodeError:
        status = _Status(code, "", body[:200].decode("utf-8", "replace"))
    reason, message = status.reason, status.message
    if code == 0:
        code = status.code
    cls = MemberGone if code == 410 else ApiError
    return cls(code, reason or httpx.codes.get_reason_phrase(code) or "Error", message)


def _discard(task: asyncio.Task[Any]) -> None:
    """Retrieve an abandoned prefetch's outcome (asyncio logs an exception nobody retrieved)."""
    if not task.cancelled():
        task.exception()


class KubeClient:
    """A kube-apiserver reached with one set of credentials."""

    def __init__(
        self,
        creds: ClusterCredentials,
        *,
        request_timeout_seconds: float = 30.0,
        accept_gzip: bool = False,
        denied: tuple[IPNetwork, ...] = (),
    ) -> None:
        """``denied``: networks never connected to, whatever the host name resolves to."""
        self.url = creds.url
        ctx: ssl.SSLContext = creds.ssl_context()
        if creds.tls_server_name and proxies_configured():
            raise InvalidConfig(
                "tls-server-name cannot be honoured through the proxy of HTTPS_PROXY: remove it, or "
                "exempt this member with NO_PROXY"
            )
        self.request_timeout_seconds = request_timeout_seconds
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=20)
        self._http = httpx.AsyncClient(
            base_url=creds.url,
            **client_kwargs(ctx, limits, CancelSafeBackend(denied, creds.tls_server_name)),
            headers={
                **creds.headers(),
                "Accept": "application/json",
                "Accept-Encoding": "gzip" if accept_gzip else "identity",
            },
            timeout=httpx.Timeout(request_timeout_seconds, connect=10.0),
        )

    async def close(self) -> None:
        await self._http.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> bytes:
        return bytes(await self._read(method, path, params=params, body=body, content_type=content_type))

    async def _read(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> bytearray:
        """The body of a 2xx answer (ApiError otherwise), read into a buffer only we reference."""
        content = _encoder.encode(body) if body is not None else None
        headers = {"Content-Type": content_type} if content is not None else None
        async with self._http.stream(method, path, params=params, content=content, headers=headers) as resp:
            data = bytearray()
            async for chunk in resp.aiter_bytes():
                data += chunk
        if resp.status_code >= 300:
            raise error_from_status(resp.status_code, bytes(data))
        return data

    async def get_json(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return _any_decoder.decode(await self.request("GET", path, params=params))

    async def get_typed(self, path: str, type_: type[T]) -> T:
        """GET ``path`` decoded as ``type_`` (see :func:`decode_answer`)."""
        return decode_answer(path, await self.request("GET", path), type_)

    async def list_pages(
        self,
        path: str,
        *,
        page_size: int,
        params: dict[str, Any] | None = None,
        prefetch: asyncio.Semaphore | None = None,
    ) -> AsyncIterator[MemberPage]:
        """Pages of a paged list (one consistent snapshot: every page shares the first page's
        resourceVersion). Raises MemberGone when the continue token expired.

        When ``prefetch`` has a free slot, the request for page n+1 is sent before page n is
        handed out (the member serves it while the caller transforms page n); the slot is held
        while that extra page exists. Memory is then one page per list plus one per slot, and the
        slots go to whichever lists ask first: with few lists each one reads ahead, with many
        the concurrency already keeps the members busy."""
        query: dict[str, Any] = {"limit": page_size, **(params or {})}
        nxt: asyncio.Task[MemberPage] | None = asyncio.ensure_future(self._page(path, query))
        held = False
        try:
            while nxt is not None:
                page = await nxt
                nxt = None
                if held:
                    held = False
                    assert prefetch is not None
                    prefetch.release()
                cont = page.metadata.continue_
                if cont and prefetch is not None and not prefetch.locked():
                    await prefetch.acquire()  # free: returns at once
                    held = True
                    nxt = asyncio.ensure_future(self._page(path, {**query, "continue": cont}))
                yield page
                del page
                if cont and nxt is None:
                    nxt = asyncio.ensure_future(self._page(path, {**query, "continue": cont}))
        finally:
            if held:
                assert prefetch is not None
                prefetch.release()
            if nxt is not None:  # the consumer stopped early: the prefetched page is not wanted
                nxt.cancel()
                nxt.add_done_callback(_discard)

    async def _page(self, path: str, query: dict[str, Any]) -> MemberPage:
        # Decoded from the bytearray in place: the items are slices of it, kept alive by the page.
        return _page_decoder.decode(await self._read("GET", path, params=query))

    async def watch(
        self, path: str, *, resource_version: str, timeout_seconds: int, params: dict[str, Any] | None = None
    ) -> AsyncIterator[WatchEvent]:
        """Events of one watch request, until the server ends it (``timeoutSeconds``).

        ERROR events are raised as ApiError (MemberGone for 410)."""
        query: dict[str, Any] = {
            "watch": "true",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": timeout_seconds,
            **(params or {}),
        }
        # The server closes the stream after timeoutSeconds; the read timeout only catches a
        # silently dead connection (bookmarks and the timeout keep a healthy one talking).
        timeout = httpx.Timeout(10.0, read=timeout_seconds + 30.0)
        async with self._http.stream("GET", path, params=query, timeout=timeout) as resp:
            if resp.status_code >= 300:
                raise error_from_status(resp.status_code, await resp.aread())
            buffer = b""
            async for chunk in resp.aiter_bytes():
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if not line.strip():
                        continue
                    event = _event_decoder.decode(line)
                    if event.type == "ERROR":
                        raise error_from_status(0, bytes(event.object))
                    yield event
