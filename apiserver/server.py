"""Runs the API tier: uvicorn over TLS with the project's HTTP protocol (:mod:`apiserver.protocol`:
the peer certificate made visible to the app, request heads bounded and refused with a Status).

Client certificates are optional (``CERT_OPTIONAL``): kubectl may connect directly without one,
while the aggregator's proxy certificate is verified against the requestheader CA by the TLS stack
itself.
"""

from __future__ import annotations

import asyncio.sslproto
import datetime as dt
import ipaddress
import logging
import socket
import ssl
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from starlette.applications import Starlette
from starlette.middleware import Middleware

from apiserver.app import build_app
from apiserver.auth import (
    AccessReviewer,
    AuthConfig,
    AuthMiddleware,
    RequestHeaderConfig,
    TokenReviewer,
    load_request_header_config,
)
from apiserver.collections import DEFINITIONS as COLLECTION_DEFINITIONS
from apiserver.collections import Collections
from apiserver.freshness import Freshness
from apiserver.host import HostClient
from apiserver.identities import PediaClusterIdentities
from apiserver.members import Members
from apiserver.pediaclusters import PediaClusterDirectory
from apiserver.protocol import ApiH11Protocol, HeadLimit
from apiserver.workers import Supervisor
from common.hostcluster import load_host_credentials
from common.settings import Settings
from common.storage import open_store

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ServingCert:
    cert_file: str
    key_file: str
    cert_pem: bytes


def self_signed_cert(directory: Path, hosts: Sequence[str]) -> ServingCert:
    """A self-signed serving certificate for ``hosts`` (DNS names or IPs), valid one year."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "clusterpedia-apiserver")])
    sans: list[x509.GeneralName] = []
    for h in dict.fromkeys(hosts):
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            sans.append(x509.DNSName(h))
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    cert_file, key_file = directory / "apiserver.crt", directory / "apiserver.key"
    cert_file.write_bytes(cert_pem)
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    key_file.chmod(0o600)
    return ServingCert(str(cert_file), str(key_file), cert_pem)


def serving_cert(settings: Settings, workdir: Path) -> ServingCert:
    a = settings.apiserver
    if a.tls_cert_file and a.tls_key_file:
        return ServingCert(a.tls_cert_file, a.tls_key_file, Path(a.tls_cert_file).read_bytes())
    hosts = [
        "localhost",
        "127.0.0.1",
        "clusterpedia-apiserver",
        "clusterpedia-apiserver.clusterpedia-system.svc",
        "clusterpedia-apiserver.clusterpedia-system.svc.cluster.local",
        a.bind_host,
    ]
    return self_signed_cert(workdir, [h for h in hosts if h not in ("0.0.0.0", "::", "")])


def auth_setup(settings: Settings) -> tuple[AuthConfig | None, str | None]:
    """The auth middleware's config and the client CA (PEM) the TLS stack verifies peers with."""
    a = settings.apiserver
    if not a.authenticate and not a.authorize:
        return None, None
    host = HostClient(load_host_credentials(settings))
    request_header: RequestHeaderConfig | None = None
    if a.authenticate:
        if a.requestheader_client_ca_file:
            request_header = RequestHeaderConfig(Path(a.requestheader_client_ca_file).read_text())
        else:
            request_header = load_request_header_config(host)
            if request_header is None:
                log.warning("the host publishes no requestheader client CA: only bearer tokens are accepted")
    config = AuthConfig(
        request_header=request_header,
        tokens=TokenReviewer(host) if a.authenticate else None,
        access=AccessReviewer(host) if a.authorize else None,
        authenticate=a.authenticate,
    )
    return config, request_header.client_ca_pem if request_header is not None else None


def create_app(settings: Settings, auth: AuthConfig | None = None) -> Starlette:
    store = open_store(settings.storage)
    store.migrate()
    middleware = [Middleware(HeadLimit, limit=settings.apiserver.max_request_header_bytes)]
    if auth is not None:
        middleware.append(Middleware(AuthMiddleware, config=auth))
    directory = None
    try:
        # One reader of the host's PediaClusters for the identity mappings and the freshness warnings.
        directory = PediaClusterDirectory(HostClient(load_host_credentials(settings)))
    except Exception as exc:  # no host kubeconfig: no mappings, no warnings
        log.warning("no host cluster to read PediaClusters from (%s): no freshness warnings", exc)
    collections = Collections(
        settings.apiserver,
        # The operators' CollectionResourceDefinitions, read like the PediaClusters (no host: none).
        PediaClusterDirectory(directory.host, path=COLLECTION_DEFINITIONS, missing_is_empty=True)
        if directory is not None
        else None,
    )
    identities = None
    if settings.apiserver.authorization_mode == "member-rbac":
        if auth is not None:  # without a host this raises, as authentication itself did
            identities = PediaClusterIdentities(
                directory or PediaClusterDirectory(HostClient(load_host_credentials(settings)))
            )
        else:
            log.warning(
                "member-rbac without --authenticate: every caller is system:anonymous and sees what"
                " the members let anonymous users read (use --authorization-mode=host-only to serve"
                " everything without authentication)"
            )
    members = None
    try:
        members = Members(HostClient(load_host_credentials(settings)), settings)
    except Exception as exc:  # no host kubeconfig: reads are served, writes refused (405)
        log.warning("no host cluster to read PediaClusters from (%s): writes are not forwarded", exc)
    return build_app(
        settings,
        store,
        middleware=middleware,
        identities=identities,
        members=members,
        writer=store,
        freshness=(
            Freshness(directory, lag_seconds=settings.apiserver.stale_lag_seconds)
            if directory is not None
            else None
        ),
        collections=collections,
    )


LISTEN_BACKLOG = 2048
"""uvicorn's default backlog, for the socket the parent binds for its workers."""

TLS_READ_BUFFER_BYTES = 16 * 1024
"""What asyncio's TLS transport reads from a socket at once. Its default, 256 KiB, is a buffer of
every connection for its whole life: 256 KiB of every open watch (bench/watch.py: 307 KiB per idle
watcher before, see docs/performance.md). A request head or body arrives in reads of this size."""


def uvicorn_config(
    settings: Settings, workdir: Path, *, cert: ServingCert | None = None, worker: int = 0
) -> uvicorn.Config:
    """The API process's uvicorn config; ``cert`` made beforehand when several workers share it."""
    asyncio.sslproto.SSLProtocol.max_size = TLS_READ_BUFFER_BYTES
    auth, client_ca = auth_setup(settings)
    app = create_app(settings, auth)
    if cert is None:
        cert = serving_cert(settings, workdir)
    kwargs: dict[str, Any] = {}
    if client_ca:
        ca_path = workdir / f"requestheader-ca-{worker}.crt"
        ca_path.write_text(client_ca)
        kwargs.update(ssl_ca_certs=str(ca_path), ssl_cert_reqs=ssl.CERT_OPTIONAL)
    return uvicorn.Config(
        app,
        host=settings.apiserver.bind_host,
        port=settings.apiserver.port,
        http=ApiH11Protocol,
        h11_max_incomplete_event_size=settings.apiserver.max_request_header_bytes,
        ssl_certfile=cert.cert_file,
        ssl_keyfile=cert.key_file,
        log_config=None,
        access_log=False,
        lifespan="off",
        # Open watches do not end by themselves: on SIGTERM they get this long, then the
        # connections close and their clients resume from their last resourceVersion elsewhere.
        timeout_graceful_shutdown=5,
        **kwargs,
    )


def listening_socket(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A listening socket for the workers. Its protocol is IPPROTO_TCP, not 0: asyncio sets
    TCP_NODELAY only on connections whose socket says TCP, and without it every response waited
    ~40 ms for the client's delayed ACK (Nagle). ``reuse_port``: one of several on the port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(LISTEN_BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock


def listening_sockets(host: str, port: int, count: int) -> list[socket.socket]:
    """``count`` listening sockets on one port (``SO_REUSEPORT``), one per API worker: the kernel
    spreads new connections over them. The port is first bound alone, without ``SO_REUSEPORT``:
    a port another process listens on (another API server too) is then an error, not a silent
    share of its connections; that probe also picks the port when ``port`` is 0."""
    probe = listening_socket(host, port)
    port = probe.getsockname()[1]
    probe.close()
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            socks.append(listening_socket(host, port, reuse_port=True))
    except OSError:
        for sock in socks:
            sock.close()
        raise
    return socks


def run_apiserver(settings: Settings) -> int:
    """Serve until SIGTERM/SIGINT (the ``clusterpedia apiserver`` command): in this process, or
    in ``apiserver.workers`` worker processes on one port (:mod:`apiserver.workers`)."""
    workers = max(1, settings.apiserver.workers)
    address = f"https://{settings.apiserver.bind_host}:{settings.apiserver.port}"
    with tempfile.TemporaryDirectory(prefix="clusterpedia-apiserver-") as tmp:
        workdir = Path(tmp)
        if workers == 1:
            config = uvicorn_config(settings, workdir)
            log.info("serving the search API", extra={"address": address})
            uvicorn.Server(config).run()
            return 0
        # The schema once, before the workers race to create it; nothing stays open across fork.
        store = open_store(settings.storage)
        try:
            store.migrate()
        finally:
            store.close()
        cert = serving_cert(settings, workdir)
        a = settings.apiserver
        socks = listening_sockets(a.bind_host, a.port, workers)

        def serve(index: int, sock: socket.socket) -> None:
            config = uvicorn_config(settings, workdir, cert=cert, worker=index)
            uvicorn.Server(config).run(sockets=[sock])

        log.info("serving the search API", extra={"address": address, "workers": workers})
        try:
            return Supervisor(workers, socks, serve).run()
        finally:
            for sock in socks:
                sock.close()
