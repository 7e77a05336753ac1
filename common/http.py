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

The same backend enforces the synchro's denied networks for member clusters: it resolves the
host itself, drops the addresses inside a denied network and connects to an address it checked
(never to the name, which a second lookup could resolve elsewhere); when nothing is left, the
connection fails with :class:`DeniedDestination` naming the rule. It also applies a kubeconfig's
``tls-server-name`` (the name the certificate is checked against, and sent as SNI).
"""

# The ``timeout`` parameters are httpcore's network-backend interface, not ours to change.
# ruff: noqa: ASYNC109

from __future__ import annotations

import ipaddress
import os
import socket
import ssl
import tempfile
import typing
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import anyio
import httpcore
import httpx

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class DeniedDestination(httpcore.ConnectError):
    """Every address of the host is in a denied network; no connection was made."""


def denied_rule(ip: IPAddress, denied: Sequence[IPNetwork]) -> IPNetwork | None:
    """The first denied network holding ``ip`` (an IPv4-mapped IPv6 address counts as IPv4)."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for net in denied:
        if ip.version == net.version and ip in net:
            return net
    return None


class _Stream(httpcore.AsyncNetworkStream):
    __slots__ = ("_inner", "_server_name")

    def __init__(self, inner: httpcore.AsyncNetworkStream, server_name: str = "") -> None:
        self._inner = inner
        self._server_name = server_name

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
            return await self._inner.start_tls(ssl_context, self._server_name or server_hostname, timeout)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._inner.aclose()
            raise

    def get_extra_info(self, info: str) -> typing.Any:
        return self._inner.get_extra_info(info)


class CancelSafeBackend(httpcore.AsyncNetworkBackend):
    """httpcore's anyio backend whose streams are closed when a TLS handshake is interrupted;
    ``denied`` networks are never connected to, ``tls_server_name`` replaces the URL's host in
    the TLS handshake."""

    def __init__(self, denied: Sequence[IPNetwork] = (), tls_server_name: str = "") -> None:
        self._inner = httpcore.AnyIOBackend()
        self._denied = tuple(denied)
        self._server_name = tls_server_name

    async def _allowed_addresses(self, host: str, port: int) -> list[str]:
        try:
            infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host!r}: {exc}") from exc
        allowed: list[str] = []
        refused: tuple[str, IPNetwork] | None = None
        for _family, _type, _proto, _name, sockaddr in infos:
            address = str(sockaddr[0]).partition("%")[0]
            rule = denied_rule(ipaddress.ip_address(address), self._denied)
            if rule is None:
                if address not in allowed:
                    allowed.append(address)
            elif refused is None:
                refused = (address, rule)
        if not allowed and refused is not None:
            raise DeniedDestination(
                f"{host} resolves to {refused[0]}, in the denied network {refused[1]} "
                "(synchro.denied_networks): not connecting"
            )
        return allowed

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        if not self._denied:
            stream = await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
            return _Stream(stream, self._server_name)
        error: Exception | None = None
        for address in await self._allowed_addresses(host, port):
            try:
                stream = await self._inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
                continue
            return _Stream(stream, self._server_name)
        raise error or httpcore.ConnectError(f"{host!r} has no address")

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return _Stream(await self._inner.connect_unix_socket(path, timeout, socket_options))

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def cancel_safe_transport(
    verify: ssl.SSLContext | bool, limits: httpx.Limits, backend: CancelSafeBackend | None = None
) -> httpx.AsyncHTTPTransport:
    """An ``httpx.AsyncHTTPTransport`` (HTTP/1.1, no retries) over :class:`CancelSafeBackend`."""
    transport = httpx.AsyncHTTPTransport(verify=verify, limits=limits)
    # httpx does not take a network backend; its connection pool does. Same settings as the
    # transport's own pool (the SSL context httpx built from ``verify``), only the backend differs.
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=transport._pool._ssl_context,
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=backend or CancelSafeBackend(),
    )
    return transport


def proxies_configured() -> bool:
    """True when proxy environment variables (``HTTPS_PROXY``, ``ALL_PROXY``...) are set."""
    return any(scheme != "no" for scheme in urllib.request.getproxies_environment())


def client_kwargs(
    verify: ssl.SSLContext | bool, limits: httpx.Limits, backend: CancelSafeBackend | None = None
) -> dict[str, typing.Any]:
    """Keyword arguments for an ``httpx.AsyncClient``: the cancel-safe transport, unless proxy
    environment variables are set. httpx applies ``HTTPS_PROXY``/``ALL_PROXY``/``NO_PROXY`` only
    when it builds its own transports, and reaching members through a proxy matters more than a
    socket the garbage collector closes a little late. Through a proxy, host names are resolved
    by the proxy: ``backend``'s denied networks then apply only to IP literals (checked earlier,
    when the URL is validated)."""
    if proxies_configured():
        return {"verify": verify, "limits": limits}
    return {"transport": cancel_safe_transport(verify, limits, backend)}


def load_cert_chain(ctx: ssl.SSLContext, cert_pem: bytes, key_pem: bytes) -> None:
    """``ctx.load_cert_chain`` from bytes: ssl only loads client certificates from files, so they
    are written to a private directory for the call."""
    with tempfile.TemporaryDirectory(prefix="clusterpedia-tls-") as tmp:
        cert_file, key_file = Path(tmp, "tls.crt"), Path(tmp, "tls.key")
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key_pem)
        cert_file.write_bytes(cert_pem)
        ctx.load_cert_chain(str(cert_file), str(key_file))
