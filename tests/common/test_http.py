"""The cancel-safe transport closes a socket whose TLS handshake was interrupted by cancellation, and
never connects into a denied network, whatever a name resolves to."""

from __future__ import annotations

import asyncio
import gc
import ipaddress
import ssl

import httpx
import pytest

from common.destinations import parse_networks
from common.http import (
    CancelSafeBackend,
    DeniedDestination,
    cancel_safe_transport,
    client_kwargs,
    denied_rule,
)


async def _handshake_never_answered(transport: httpx.AsyncBaseTransport) -> bool:
    """Cancel a request while the server sits on its TLS handshake; True when the client then
    closed the TCP connection (the server reads EOF)."""
    accepted = asyncio.Event()
    closed = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.set()
        while await reader.read(65536):  # the ClientHello, then nothing until EOF
            pass
        closed.set()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server, httpx.AsyncClient(transport=transport, timeout=30.0) as client:
        request = asyncio.create_task(client.get(f"https://127.0.0.1:{port}/"))
        await asyncio.wait_for(accepted.wait(), 10)
        await asyncio.sleep(0.2)  # the ClientHello is out; the handshake waits for the server
        request.cancel()
        with pytest.raises(asyncio.CancelledError):
            await request
        try:
            await asyncio.wait_for(closed.wait(), 3)
        except TimeoutError:
            return False
        return True


def test_cancelled_handshake_closes_the_socket() -> None:
    gc.disable()  # the collector would close a leaked socket sooner or later; we want "now"
    try:
        ctx = ssl.create_default_context()
        assert asyncio.run(_handshake_never_answered(cancel_safe_transport(ctx, httpx.Limits())))
    finally:
        gc.enable()


async def _first_line_through_proxy(monkeypatch: pytest.MonkeyPatch) -> bytes:
    """What a proxy named by HTTPS_PROXY receives when a client made with ``client_kwargs``
    requests an https URL."""
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.readline())
        writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{port}")
    async with server:
        kwargs = client_kwargs(ssl.create_default_context(), httpx.Limits())
        async with httpx.AsyncClient(timeout=10.0, **kwargs) as client:
            with pytest.raises(httpx.ProxyError):
                await client.get("https://member.invalid:6443/version")
    return seen[0] if seen else b""


def test_proxy_environment_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert asyncio.run(_first_line_through_proxy(monkeypatch)).startswith(b"CONNECT member.invalid:6443 ")


async def _connections_to_denied_name(denied: tuple[str, ...]) -> tuple[int, BaseException | None]:
    """Connections a listener on 127.0.0.1 receives when a client whose backend denies
    ``denied`` requests ``http://localhost:PORT`` (the name is resolved by the system resolver)."""
    accepted = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    backend = CancelSafeBackend(parse_networks(denied))
    error: BaseException | None = None
    async with (
        server,
        httpx.AsyncClient(transport=cancel_safe_transport(False, httpx.Limits(), backend)) as c,
    ):
        try:
            await c.get(f"http://localhost:{port}/")
        except httpx.ConnectError as exc:
            error = exc
    return accepted, error


def test_denied_networks_apply_after_name_resolution() -> None:
    accepted, error = asyncio.run(_connections_to_denied_name(("127.0.0.0/8", "::1/128")))
    assert accepted == 0 and error is not None
    assert isinstance(error.__cause__, DeniedDestination)
    assert "localhost resolves to" in str(error) and "denied network" in str(error)
    # an unrelated deny list leaves the connection alone: it goes to an address that was checked
    assert asyncio.run(_connections_to_denied_name(("10.0.0.0/8",))) == (1, None)


def test_denied_rule_sees_through_ipv4_mapped_addresses() -> None:
    nets = parse_networks(["169.254.0.0/16"])
    assert denied_rule(ipaddress.ip_address("::ffff:169.254.169.254"), nets) == nets[0]
    assert denied_rule(ipaddress.ip_address("169.254.1.1"), nets) == nets[0]
    assert denied_rule(ipaddress.ip_address("10.1.1.1"), nets) is None
