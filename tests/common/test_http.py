"""The cancel-safe transport closes a socket whose TLS handshake was interrupted by cancellation."""

from __future__ import annotations

import asyncio
import gc
import ssl

import httpx
import pytest

from common.http import cancel_safe_transport, client_kwargs


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
