"""The socket the API workers share (``apiserver.server.listening_socket``): a TCP socket whose
accepted connections asyncio sets to TCP_NODELAY, as uvicorn's own sockets are. With protocol 0
they were not, and each response waited ~40 ms for the client's delayed ACK."""

from __future__ import annotations

import asyncio
import socket

from apiserver.server import listening_socket


async def accepted_nodelay(sock: socket.socket) -> int:
    accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    class Probe(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            conn = transport.get_extra_info("socket")
            accepted.set_result(conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

    server = await asyncio.get_running_loop().create_server(Probe, sock=sock)
    try:
        _reader, writer = await asyncio.open_connection(*sock.getsockname()[:2])
        value = await asyncio.wait_for(accepted, 10)
        writer.close()
        return value
    finally:
        server.close()


def test_connections_of_the_shared_socket_do_not_wait_for_acks() -> None:
    sock = listening_socket("127.0.0.1", 0)
    assert sock.proto == socket.IPPROTO_TCP
    assert asyncio.run(accepted_nodelay(sock)) != 0


def test_a_taken_port_is_an_error_and_leaks_no_socket() -> None:
    taken = listening_socket("127.0.0.1", 0)
    try:
        port = taken.getsockname()[1]
        try:
            listening_socket("127.0.0.1", port)
        except OSError:
            pass
        else:
            raise AssertionError("bound a port that is in use")
    finally:
        taken.close()
