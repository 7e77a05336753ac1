"""An httpx transport that does not leak a socket when a request is cancelled while connecting.

httpcore (1.0.x) closes the plain TCP stream when the TLS handshake fails with an ``Exception``,
but not when the task is cancelled during the handshake (``CancelledError`` is a
``BaseException``): the connected socket is then left to the garbage collector, which closes it
some time later with a ``ResourceWarning``. The synchro cancels requests routinely (a PediaCluster
deleted or changed, a health probe timing out, a worker stopping), so a long-running worker would
hold such sockets open for a while, and under ``-W error`` a test fails wherever the collector
happens to run. The backend here wraps httpcore's own and closes the stream on any exception of
the handshake, shielded from the cancellation that caused it. With proxy environment variables
set, the clients keep httpx's own transports (see ``client_kwargs``).
"""

# The ``timeout`` parameters are httpcore's network-backend interface, not ours to change.
# ruff: noqa: ASYNC109

from __future__ import annotations

import ssl
import typing
import urllib.request

import anyio
import httpcore
import httpx


class _Stream(httpcore.AsyncNetworkStream):
    __slots__ = ("_inner",)

    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.AsyncNetworkStream:
        try:
            return await self._inner.start_tls(ssl_context, server_hostname, timeout)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._inner.aclose()
            raise

    def get_extra_info(self, info: str) -> typing.Any:
        return self._inner.get_extra_info(info)


class CancelSafeBackend(httpcore.AsyncNetworkBackend):
    """httpcore's anyio backend whose streams are closed when a TLS handshake is interrupted."""

    def __init__(self) -> None:
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        return _Stream(stream)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return _Stream(await self._inner.connect_unix_socket(path, timeout, socket_options))

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def cancel_safe_transport(verify: ssl.SSLContext | bool, limits: httpx.Limits) -> httpx.AsyncHTTPTransport:
    """An ``httpx.AsyncHTTPTransport`` (HTTP/1.1, no retries) over :class:`CancelSafeBackend`."""
    transport = httpx.AsyncHTTPTransport(verify=verify, limits=limits)
    # httpx does not take a network backend; its connection pool does. Same settings as the
    # transport's own pool (the SSL context httpx built from ``verify``), only the backend differs.
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=transport._pool._ssl_context,
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=CancelSafeBackend(),
    )
    return transport


def client_kwargs(verify: ssl.SSLContext | bool, limits: httpx.Limits) -> dict[str, typing.Any]:
    """Keyword arguments for an ``httpx.AsyncClient``: the cancel-safe transport, unless proxy
    environment variables are set. httpx applies ``HTTPS_PROXY``/``ALL_PROXY``/``NO_PROXY`` only
    when it builds its own transports, and reaching members through a proxy matters more than a
    socket the garbage collector closes a little late."""
    if any(scheme != "no" for scheme in urllib.request.getproxies_environment()):
        return {"verify": verify, "limits": limits}
    return {"transport": cancel_safe_transport(verify, limits)}
