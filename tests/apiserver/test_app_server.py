"""The served process: TLS with a generated certificate, client certificates reaching the app."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from cryptography import x509

from apiserver.server import self_signed_cert
from tests.harness.cluster import free_port


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


def test_serves_https_with_a_generated_certificate(tmp_path: Path) -> None:
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
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()
