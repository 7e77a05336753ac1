"""The API tier's HTTP/1.1 protocol: uvicorn's h11 protocol with two changes.

1. The verified TLS client certificate is made visible to the app. uvicorn verifies client
   certificates when asked (``ssl_cert_reqs``/``ssl_ca_certs``) but does not pass them to the ASGI
   app; :class:`ApiH11Protocol` reads it from the TLS transport once per connection (the handshake
   is complete when ``connection_made`` runs) and puts it in that connection's copy of the scope
   state, where :mod:`apiserver.auth` looks for it.
2. A request head h11 refuses (longer than ``apiserver.max_request_header_bytes``, or malformed)
   gets a Kubernetes ``Status`` in JSON (414 when the request line alone is too long, 431 for too
   many header bytes, 400 for a malformed head) instead of uvicorn's plain-text "Invalid HTTP
   request received.", which kubectl cannot decode. And the connection is not closed at once:
   the host's aggregator is often still writing the rest of a long request when the answer goes
   out, and a socket closed with unread data is reset, so the aggregator saw "broken pipe" and
   answered 503 instead of our 4xx. What the client still sends is read and dropped until it
   closes the connection (the answer says ``Connection: close``; the closing EOF ends the
   transport), or until it has been quiet for
   :data:`DRAIN_IDLE_SECONDS` or has sent :data:`DRAIN_MAX_BYTES` more.

3. Upgrades (SPDY for ``kubectl exec``/``attach``/``port-forward``, websocket) can be taken over
   by the app: ASGI has no way to answer 101 on an HTTP request and then exchange raw bytes, so
   the scope state carries :data:`UPGRADE_STATE_KEY`, a function the app calls with the 101
   answer's head once the member accepted the upgrade. From then on this protocol writes that head
   and hands every byte of the connection to the returned :class:`Tunnel` instead of h11
   (:mod:`apiserver.forwarding` pipes it to the member's upgraded connection).

h11 applies its limit only to a head still incomplete when a read ends; a longer head that
arrives whole in one read passes it. :class:`HeadLimit` (ASGI middleware) measures every complete
head against the same limit, so the answer does not depend on how the bytes were chunked.
"""

from __future__ import annotations

import asyncio

import msgspec
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.h11_impl import H11Protocol

from apiserver.auth import PEER_CERT_STATE_KEY
from common.errors import BadRequest, StatusError

UPGRADE_STATE_KEY = "take_over_connection"
"""Scope-state key of ``take_over(head: bytes) -> Tunnel`` (see the module docstring, item 3)."""
TUNNEL_HIGH_WATER = 64
"""Chunks from the client queued for the member before reading from the client pauses."""


class Tunnel:
    """The client's side of an upgraded connection."""

    def __init__(self, transport: asyncio.Transport, flow: FlowControl) -> None:
        self._transport = transport
        self._flow = flow
        self._incoming: asyncio.Queue[bytes] = asyncio.Queue()
        self._paused = False

    def feed(self, data: bytes) -> None:
        """Bytes from the client (b"": it closed)."""
        self._incoming.put_nowait(data)
        if self._incoming.qsize() > TUNNEL_HIGH_WATER and not self._paused:
            self._paused = True
            self._transport.pause_reading()

    async def read(self) -> bytes:
        """The client's next bytes; b"" once it closed."""
        data = await self._incoming.get()
        if self._paused and self._incoming.qsize() < TUNNEL_HIGH_WATER // 4:
            self._paused = False
            self._transport.resume_reading()
        return data

    async def write(self, data: bytes) -> None:
        """To the client, waiting while its side of the connection is full."""
        if self._transport.is_closing():
            raise ConnectionResetError("the client closed the connection")
        self._transport.write(data)
        if self._flow.write_paused:
            await self._flow.drain()

    def close(self) -> None:
        self._transport.close()


DRAIN_IDLE_SECONDS = 5.0
DRAIN_MAX_BYTES = 64 * 1024 * 1024
_encoder = msgspec.json.Encoder()


class RequestTooLarge(StatusError):
    reason = "RequestEntityTooLarge"

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def too_large(limit: int, *, line: bool) -> StatusError:
    """414 when the request line alone exceeds ``limit`` bytes, else 431."""
    setting = "apiserver.max_request_header_bytes"
    if line:
        return RequestTooLarge(414, f"URI too long: the request line exceeds {limit} bytes ({setting})")
    return RequestTooLarge(431, f"request header fields too large: more than {limit} bytes ({setting})")


def refusal(buffered: bytes, limit: int) -> StatusError:
    """The Status for a request head h11 refused, from the bytes it had buffered (h11 refuses a
    head longer than ``limit`` before it is complete, so more than that means "too large")."""
    if len(buffered) <= limit:
        return BadRequest("malformed HTTP request")
    return too_large(limit, line=b"\r\n" not in buffered[: limit + 2])


def head_size(scope: Scope) -> tuple[int, int]:
    """(request line, whole head) in bytes, as the client sent them (approximately: h11 strips
    optional whitespace)."""
    target = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"") + 1
    line = len(scope["method"]) + target + len(" HTTP/1.1\r\n") + 1
    return line, line + sum(len(k) + len(v) + 4 for k, v in scope.get("headers") or ()) + 2


class HeadLimit:
    """A Status 414/431 for a complete request head longer than ``limit`` bytes."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            line, head = head_size(scope)
            if head > self.limit:
                error = too_large(self.limit, line=line > self.limit)
                body = _encoder.encode(error.status())
                await send(
                    {
                        "type": "http.response.start",
                        "status": error.code,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


class ApiH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with the peer certificate in the scope state and Status answers
    for refused request heads (see the module docstring)."""

    _draining = False
    _drained = 0
    _idle: asyncio.TimerHandle | None = None
    _tunnel: Tunnel | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.app_state = {**self.app_state, UPGRADE_STATE_KEY: self._take_over}
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            cert = ssl_object.getpeercert()
            if cert:
                self.app_state = {**self.app_state, PEER_CERT_STATE_KEY: cert}

    def _take_over(self, head: bytes) -> Tunnel:
        """Answer the current (upgrade) request with ``head`` and hand the connection's bytes to
        the returned tunnel; h11 and uvicorn's request cycle see nothing more of it."""
        cycle = self.cycle
        cycle.response_started = cycle.response_complete = True  # no 500 when the app returns
        self._tunnel = Tunnel(self.transport, self.flow)
        self.transport.write(head)
        early = self.conn.trailing_data[0]  # sent after the request, before our answer
        if early:
            self._tunnel.feed(bytes(early))
        self.flow.resume_reading()  # h11 paused on the upgrade request
        return self._tunnel

    def _unsupported_upgrade_warning(self) -> None:
        """Upgrades reach the app, which forwards them (see the module docstring)."""

    def data_received(self, data: bytes) -> None:
        if self._tunnel is not None:
            self._tunnel.feed(data)
            return
        if self._draining:
            self._drain(len(data))
            return
        super().data_received(data)

    def eof_received(self) -> None:
        if self._tunnel is not None:
            self._tunnel.feed(b"")
            return
        super().eof_received()

    def send_400_response(self, msg: str) -> None:
        """Called by uvicorn when h11 raised RemoteProtocolError on the request head."""
        limit = self.config.h11_max_incomplete_event_size or 16 * 1024  # h11's default
        buffered = self.conn.trailing_data[0]
        error = refusal(buffered, limit)
        body = _encoder.encode(error.status())
        head = (
            f"HTTP/1.1 {error.code} {_PHRASES.get(error.code, 'Bad Request')}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        ).encode("ascii")
        self.transport.write(head + body)
        self._draining = True
        self._drain(0)

    def _drain(self, received: int) -> None:
        self._drained += received
        if self._idle is not None:
            self._idle.cancel()
        if self._drained > DRAIN_MAX_BYTES:
            self.transport.close()
            return
        self._idle = self.loop.call_later(DRAIN_IDLE_SECONDS, self.transport.close)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._idle is not None:
            self._idle.cancel()
        if self._tunnel is not None:
            self._tunnel.feed(b"")
        super().connection_lost(exc)


_PHRASES = {400: "Bad Request", 414: "URI Too Long", 431: "Request Header Fields Too Large"}
