"""Shared pytest fixtures: real stores, real Redis, real Kubernetes control planes, real kubectl.

Store fixtures (module scope, a clean database per test module):
    sqlite_url, postgres_url, mysql_url, redis_url -> str
    store_url -> str, parametrized over sqlite / postgresql / mysql
    backend_url, backend -> Store: parametrized over every registered storage backend (examples/ too)
Cluster fixtures (harness/cluster.py):
    member_cluster(name="cluster-1", version="current", controller_manager=False) -> Cluster  (factory)
    two_member_clusters -> tuple[Cluster, Cluster]  (cluster-1 current, cluster-2 older; module scope)
    host_cluster -> Cluster  (aggregation layer configured; module scope)
    kubectl(version="1.32") -> path of that kubectl  (KUBECTL_VERSIONS lists them)

Missing services are started (hack/services.sh) and missing binaries built (hack/build-k8s.sh);
nothing is skipped. Every process a fixture starts is stopped by its finalizer, and a session-end
sweep stops anything a finalizer could not reach (harness/processes.py).
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

import pytest

from common.storage import Store, backend_names, open_store
from harness import processes
from harness.cluster import Cluster, start_clusters
from harness.paths import KUBECTL_VERSIONS, kubectl_binary
from harness.stores import (
    drop_stale_databases,
    ensure_services,
    mysql_database,
    postgres_database,
    redis_database,
)

__all__ = ["KUBECTL_VERSIONS"]

STORE_KINDS = ["sqlite", "postgresql", "mysql"]


# ---------------------------------------------------------------- session guard


def pytest_sessionstart(session: pytest.Session) -> None:
    # SIGTERM (CI timeout, `kill`) must unwind through the fixture finalizers like Ctrl-C does.
    def _term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, _term)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    processes.stop_all()


# ---------------------------------------------------------------- stores


@pytest.fixture(scope="session")
def service_urls() -> dict[str, str]:
    """Base URLs of the running services (started here if they are not running)."""
    try:
        urls = ensure_services()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    drop_stale_databases(urls)
    return urls


@pytest.fixture(scope="module")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("sqlite") / "store.db"
    return f"sqlite:///{path}"


@pytest.fixture(scope="module")
def postgres_url(service_urls: dict[str, str]) -> Iterator[str]:
    with postgres_database(service_urls["CLUSTERPEDIA_TEST_POSTGRES"]) as url:
        yield url


@pytest.fixture(scope="module")
def mysql_url(service_urls: dict[str, str]) -> Iterator[str]:
    with mysql_database(service_urls["CLUSTERPEDIA_TEST_MYSQL"]) as url:
        yield url


@pytest.fixture(scope="module")
def redis_url(service_urls: dict[str, str]) -> Iterator[str]:
    with redis_database(service_urls["CLUSTERPEDIA_TEST_REDIS"]) as url:
        yield url


@pytest.fixture(scope="module", params=STORE_KINDS)
def store_url(request: pytest.FixtureRequest) -> str:
    """The same suite on each store: ids sqlite / postgresql / mysql."""
    fixture = {"sqlite": "sqlite_url", "postgresql": "postgres_url", "mysql": "mysql_url"}[request.param]
    url: str = request.getfixturevalue(fixture)
    return url


EXAMPLE_STORE_URLS = {"jsonl": "jsonl://{tmp}/store.jsonl"}
"""Test URLs of the sample backends under examples/ that `make venv` installs (their README.md)."""


@pytest.fixture(scope="module", params=backend_names())
def backend_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A fresh store of every registered storage backend (ids: sqlite, postgresql, mysql, memory,
    jsonl): the shared storage suite (tests/common/storage/) runs on each. A backend this project
    does not ship is tested on the URL in $CLUSTERPEDIA_TEST_STORE_<SCHEME> (never skipped), where
    ``{tmp}`` stands for a fresh directory per test module."""
    name: str = request.param
    if name == "memory":
        return f"memory://test-{uuid.uuid4().hex}"
    fixture = {"sqlite": "sqlite_url", "postgresql": "postgres_url", "mysql": "mysql_url"}.get(name)
    if fixture is not None:
        url: str = request.getfixturevalue(fixture)
        return url
    env = f"CLUSTERPEDIA_TEST_STORE_{name.upper()}"
    template = os.environ.get(env) or EXAMPLE_STORE_URLS.get(name)
    if not template:
        pytest.fail(f"storage backend {name!r} is installed: set {env} to a store URL to test it")
    return template.replace("{tmp}", str(tmp_path_factory.mktemp(name)))


@pytest.fixture(scope="module")
def backend(backend_url: str) -> Iterator[Store]:
    """The store at ``backend_url``, migrated; closed after the module."""
    store = open_store(backend_url)
    store.migrate()
    yield store
    store.close()


# ---------------------------------------------------------------- clusters

MemberClusterFactory = Callable[..., Cluster]


@pytest.fixture
def member_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MemberClusterFactory]:
    """Factory: ``member_cluster(name="cluster-1", version="current", controller_manager=False)``.

    Each call starts a cluster (and waits until it is ready); all are stopped at teardown."""
    started: list[Cluster] = []

    def make(name: str = "cluster-1", version: str = "current", controller_manager: bool = False) -> Cluster:
        workdir = tmp_path_factory.mktemp(f"cluster-{name}")
        cluster = Cluster(name, version, controller_manager=controller_manager, workdir=workdir)
        started.append(cluster)
        cluster.start()
        return cluster

    try:
        yield make
    finally:
        for cluster in reversed(started):
            cluster.stop()


@pytest.fixture(scope="module")
def two_member_clusters(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, Cluster]]:
    """cluster-1 (current version) and cluster-2 (older version), both with a controller manager."""
    c1 = Cluster(
        "cluster-1", "current", controller_manager=True, workdir=tmp_path_factory.mktemp("cluster-1")
    )
    c2 = Cluster("cluster-2", "older", controller_manager=True, workdir=tmp_path_factory.mktemp("cluster-2"))
    try:
        start_clusters([c1, c2])
        yield c1, c2
    finally:
        c2.stop()
        c1.stop()


@pytest.fixture(scope="module")
def host_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The host: aggregation layer configured (front-proxy CA, requestheader flags, proxy client cert)."""
    cluster = Cluster("host", "current", aggregation=True, workdir=tmp_path_factory.mktemp("host"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def kubectl() -> Callable[..., Path]:
    """``kubectl(version="1.32")`` -> path of /usr/lib/google-cloud-sdk/bin/kubectl.<version>."""

    def pick(version: str = "1.32") -> Path:
        try:
            return kubectl_binary(version)
        except RuntimeError as exc:
            pytest.fail(str(exc), pytrace=False)

    return pick
