"""The served process: TLS with a generated certificate, client certificates reaching the app, request
heads bounded and refused with a Status."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from cryptography import x509

from apiserver.server import self_signed_cert
from harness.cluster import free_port


def test_self_signed_certificate_names(tmp_path: Path) -> None:
    cert = self_signed_cert(
        tmp_path, ["localhost", "127.0.0.1", "clusterpedia-apiserver.clusterpedia-system.svc"]
    )
    parsed = x509.load_pem_x509_certificate(cert.cert_pem)
    sans = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == [
        "localhost",
        "clusterpedia-apiserver.clusterpedia-system.svc",
    ]
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert (tmp_path / "apiserver.key").stat().st_mode & 0o777 == 0o600
    # usable as its own CA bundle (what an APIService caBundle would hold)
    ctx = ssl.create_default_context(cadata=cert.cert_pem.decode())
    assert ctx.cert_store_stats()["x509_ca"] == 1


@contextlib.contextmanager
def serving(tmp_path: Path, *args: str) -> Iterator[tuple[int, ssl.SSLContext]]:
    """``clusterpedia apiserver`` on a free port, until /healthz answers; the port and a client
    TLS context that accepts its self-signed certificate."""
    port = free_port()
    log = (tmp_path / "log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cli",
            "apiserver",
            f"--storage=sqlite:///{tmp_path / 'store.db'}",
            "--bind-host=127.0.0.1",
            f"--port={port}",
            *args,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        deadline = time.monotonic() + 30
        body = b""
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"https://127.0.0.1:{port}/healthz", context=ctx, timeout=2) as r:
                    body = r.read()
                    break
            except OSError:
                assert proc.poll() is None, (tmp_path / "log").read_text()
                time.sleep(0.2)
        assert body == b"ok"
        yield port, ctx
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


def test_serves_https_with_a_generated_certificate(tmp_path: Path) -> None:
    with serving(tmp_path) as (port, ctx):
        with socket.create_connection(("127.0.0.1", port)) as raw, ctx.wrap_socket(raw) as tls:
            der = tls.getpeercert(binary_form=True)
        assert der is not None
        peer = x509.load_der_x509_certificate(der)
        names = peer.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert "localhost" in names.get_values_for_type(x509.DNSName)
        with urllib.request.urlopen(
            f"https://127.0.0.1:{port}/apis/clusterpedia.io/v1beta1/resources/api", context=ctx, timeout=5
        ) as r:
            assert r.headers["content-type"] == "application/json"


def _exchange(port: int, ctx: ssl.SSLContext, head: bytes, more: int = 0) -> tuple[int, dict[str, object]]:
    """Send ``head`` (and ``more`` bytes after it, as a client still writing would), read the
    answer to the end; (status code, decoded JSON body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, ctx.wrap_socket(raw) as tls:
        tls.sendall(head)
        if more:
            tls.sendall(b"x" * more)  # a reset connection would fail this write
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
    status_line, _, rest = data.partition(b"\r\n")
    headers, _, body = rest.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in headers.lower(), data[:300]
    return int(status_line.split()[1]), json.loads(body)


def test_oversized_and_malformed_requests_get_a_status(tmp_path: Path) -> None:
    """Whatever the size, a JSON Status 4xx, and the connection is not reset under a client that
    is still writing (the host's aggregator reported that as a 503)."""
    with serving(tmp_path, "--set", "apiserver.max_request_header_bytes=65536") as (port, ctx):
        path = "/apis/clusterpedia.io/v1beta1/resources/apis/apps/v1/deployments?clusters="
        code, status = _exchange(port, ctx, f"GET {path}{'a' * 70_000} HTTP/1.1\r\n".encode(), more=200_000)
        assert (code, status["kind"], status["code"], status["reason"]) == (
            414,
            "Status",
            414,
            "RequestEntityTooLarge",
        )
        assert "apiserver.max_request_header_bytes" in str(status["message"])
        headers = "".join(f"X-Filler-{i}: {'b' * 1000}\r\n" for i in range(100))
        code, status = _exchange(port, ctx, f"GET / HTTP/1.1\r\nHost: h\r\n{headers}\r\n".encode())
        assert (code, status["code"]) == (431, 431)
        code, status = _exchange(port, ctx, b"NOT HTTP AT ALL\r\n\r\n")
        assert (code, status["code"], status["reason"]) == (400, 400, "BadRequest")
        # under the limit, a long query reaches the app, which validates it (no such cluster)
        code, status = _exchange(
            port, ctx, f"GET {path}{'a' * 60_000} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n".encode()
        )
        assert (code, status["code"], status["reason"]) == (404, 404, "NotFound")
