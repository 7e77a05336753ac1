"""The API workers' listening sockets (``apiserver.server.listening_sockets``): TCP sockets whose
accepted connections asyncio sets to TCP_NODELAY, as uvicorn's own sockets are (with protocol 0
they were not, and each response waited ~40 ms for the client's delayed ACK); one per worker on one
port, so that the kernel spreads a burst of connections over the workers."""

from __future__ import annotations

import asyncio
import socket

from apiserver.server import listening_socket, listening_sockets


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


def test_each_worker_has_a_socket_on_the_one_port_and_a_burst_is_spread_over_them() -> None:
    socks = listening_sockets("127.0.0.1", 0, 2)
    try:
        port = socks[0].getsockname()[1]
        assert [s.getsockname()[1] for s in socks] == [port, port]
        assert all(s.proto == socket.IPPROTO_TCP for s in socks)
        clients = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(32)]
        try:
            accepted = []
            for sock in socks:  # what each worker would accept (the handshakes are complete)
                sock.setblocking(False)
                n = 0
                while True:
                    try:
                        conn, _ = sock.accept()
                    except BlockingIOError:
                        break
                    conn.close()
                    n += 1
                accepted.append(n)
            # by a hash of the client ports: all 32 on one socket has a chance of 2**-31
            assert sum(accepted) == 32 and min(accepted) > 0, accepted
        finally:
            for client in clients:
                client.close()
    finally:
        for sock in socks:
            sock.close()


def test_a_port_another_process_listens_on_is_an_error_even_for_the_workers_sockets() -> None:
    """A second API server on the same port fails instead of sharing its connections."""
    first = listening_sockets("127.0.0.1", 0, 2)
    try:
        port = first[0].getsockname()[1]
        try:
            listening_sockets("127.0.0.1", port, 2)
        except OSError:
            pass
        else:
            raise AssertionError("joined the listeners of another server")
    finally:
        for sock in first:
            sock.close()
