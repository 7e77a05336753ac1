"""How the benchmark reaches a member kube-apiserver: URL, bearer token, CA, as raw HTTP.

The benchmark talks to member clusters with raw JSON bytes, never the ``kubernetes`` client models,
so that the load generator is not the bottleneck it measures. Its load loops use aiohttp (already
installed as a dependency of ``kubernetes``): measured here, one small GET costs ~0.3 ms of client
CPU with aiohttp at 32 requests in flight against ~4 ms with an httpx AsyncClient (1.1 ms
sequentially), and on two shared cores the client's CPU is taken from the servers it measures.
The single-connection list (the upstream limit) keeps httpx, the synchro's own client.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import httpx


@dataclass(frozen=True)
class Member:
    """One reachable member kube-apiserver with an admin identity."""

    name: str
    server: str
    """``https://127.0.0.1:PORT``"""
    token: str
    ca_file: str
    """PEM of the CA that signed the serving certificate ("" to skip verification: dev only)."""
    kubeconfig: str = ""
    """Path of an admin kubeconfig file for this cluster ("" when none was written)."""
    version: str = ""
    pids: tuple[tuple[str, int], ...] = ()
    """(component, pid) of the member's own processes (kube-apiserver, etcd), for CPU accounting."""

    def ssl_context(self) -> ssl.SSLContext | bool:
        return ssl.create_default_context(cafile=self.ca_file) if self.ca_file else False

    def session(self, *, concurrency: int = 32, timeout_seconds: float = 60.0) -> aiohttp.ClientSession:
        """An aiohttp session for load loops (``concurrency`` connections at most)."""
        connector = aiohttp.TCPConnector(limit=concurrency, ssl=self.ssl_context())
        return aiohttp.ClientSession(
            self.server,
            connector=connector,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=aiohttp.ClientTimeout(total=timeout_seconds),
        )

    def client(self, *, concurrency: int = 32, timeout_seconds: float = 60.0) -> httpx.AsyncClient:
        verify: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=self.ca_file) if self.ca_file else False
        )
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        return httpx.AsyncClient(
            base_url=self.server,
            headers={"Authorization": f"Bearer {self.token}"},
            verify=verify,
            limits=limits,
            timeout=httpx.Timeout(timeout_seconds),
        )

    def sync_client(self, *, timeout_seconds: float = 60.0) -> httpx.Client:
        verify: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=self.ca_file) if self.ca_file else False
        )
        return httpx.Client(
            base_url=self.server,
            headers={"Authorization": f"Bearer {self.token}"},
            verify=verify,
            timeout=httpx.Timeout(timeout_seconds),
        )


@contextmanager
def start_member(
    name: str, scratch: Path, *, version: str = "current", etcd_quota_bytes: int = 0
) -> Iterator[Member]:
    """A member kube-apiserver from the test harness (no controller manager: the generator writes
    what controllers would), stopped and removed on exit.

    ``etcd_quota_bytes`` raises etcd's backend quota (the harness sets 1 GiB, which ~80k objects of
    this generator fill, managedFields and history included)."""
    from harness.cluster import Cluster

    class BenchCluster(Cluster):
        def _etcd_argv(self) -> list[str]:
            argv = super()._etcd_argv()
            if etcd_quota_bytes:
                argv = [a for a in argv if not a.startswith("--quota-backend-bytes=")]
                argv.append(f"--quota-backend-bytes={etcd_quota_bytes}")
            return argv

    cluster = BenchCluster(name, version, workdir=scratch / name)
    cluster.start()
    try:
        yield Member(
            name=name,
            server=cluster.server,
            token=cluster.token,
            ca_file=str(cluster.ca_file),
            kubeconfig=str(cluster.kubeconfig),
            version=cluster.version,
            pids=tuple((p.name.split("/")[-1], p.pid) for p in cluster.processes if p.pid is not None),
        )
    finally:
        cluster.stop()
