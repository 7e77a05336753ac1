"""The product under test: its tiers running on one store and one queue, watched from outside.

Two shapes, as operators run them:

* ``memory://`` queue (the embedded default, used with SQLite): one ``clusterpedia all-in-one``
  process holds the synchro, the writer and the API tier; its RSS is theirs together.
* ``redis://`` queue (the fleet shape, used with PostgreSQL and MariaDB): one ``clusterpedia
  synchro``, N ``clusterpedia writer`` and one ``clusterpedia apiserver`` process, each measured
  on its own.

Progress is observed in the store itself (a count of live rows of the benchmark's clusters), which
is what the stateless API tier reads on the next request.
"""

from __future__ import annotations

import socket
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import Engine, and_, false, func, select

from bench.members import Member
from bench.processes import Tier, Tiers
from bench.services import Store
from common.storage.sql.schema import resources
from common.types import RBAC_GROUP


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(url: str, *, ok_only: bool) -> bool:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=2, context=ctx) as resp:
            return bool(resp.status == 200)
    except urllib.error.HTTPError:
        return not ok_only
    except OSError:
        return False


class System:
    """Tiers of one shape; :meth:`start` then :meth:`stop` (or use it as a context manager)."""

    def __init__(
        self, store: Store, queue_url: str, host: Member, scratch: Path, *, writers: int = 1, name: str = ""
    ) -> None:
        self.store = store
        self.queue_url = queue_url
        self.host = host
        self.writers = writers
        self.log_dir = scratch / "logs" / (name or f"{store.kind}-{queue_url.split(':')[0]}")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.api_port = free_port()
        self.tiers = Tiers(
            self.log_dir,
            {
                "CLUSTERPEDIA_STORAGE": store.url,
                "CLUSTERPEDIA_QUEUE": queue_url,
                "CLUSTERPEDIA_KUBECONFIG": host.kubeconfig,
                "CLUSTERPEDIA_LOG_LEVEL": "WARNING",
                "CLUSTERPEDIA_LOG_FORMAT": "text",
                "CLUSTERPEDIA_APISERVER__BIND_HOST": "127.0.0.1",
                "CLUSTERPEDIA_APISERVER__PORT": str(self.api_port),
                # queries go straight to the API tier, unauthenticated: everything, as an admin sees it
                "CLUSTERPEDIA_APISERVER__AUTHORIZATION_MODE": "host-only",
            },
        )
        self.synchro: Tier | None = None
        self.writer_tiers: list[Tier] = []
        self.apiserver: Tier | None = None
        self.all_in_one: Tier | None = None
        self._engine: Engine | None = None

    @property
    def embedded(self) -> bool:
        return self.queue_url.startswith("memory:")

    @property
    def api_url(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = self.store.engine(pool_size=2)
        return self._engine

    def start(self, *, apiserver: bool = True, timeout_seconds: float = 60.0) -> None:
        if self.embedded:
            port = free_port()
            self.all_in_one = self.tiers.start(
                "all-in-one",
                ["all-in-one", "--writers", str(self.writers)],
                {"CLUSTERPEDIA_METRICS_PORT": str(port)},
            )
            self._wait_ready([(self.all_in_one, port)], timeout_seconds)
            self._wait_api(timeout_seconds)
            return
        ports = []
        port = free_port()
        self.synchro = self.tiers.start("synchro", ["synchro"], {"CLUSTERPEDIA_METRICS_PORT": str(port)})
        ports.append((self.synchro, port))
        for i in range(self.writers):
            port = free_port()
            tier = self.tiers.start(
                f"writer-{i}",
                ["writer"],
                {
                    "CLUSTERPEDIA_METRICS_PORT": str(port),
                    "CLUSTERPEDIA_WRITER__CONSUMER_NAME": f"bench-writer-{i}",
                },
            )
            self.writer_tiers.append(tier)
            ports.append((tier, port))
        if apiserver:
            self.apiserver = self.tiers.start("apiserver", ["apiserver"])
        self._wait_ready(ports, timeout_seconds)
        if apiserver:
            self._wait_api(timeout_seconds)

    def _wait_ready(self, tiers: Sequence[tuple[Tier, int]], timeout_seconds: float) -> None:
        deadline = time.monotonic() + timeout_seconds
        for tier, port in tiers:
            while not _answers(f"http://127.0.0.1:{port}/readyz", ok_only=True):
                tier.check()
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{tier.name} not ready within {timeout_seconds}s:\n{tier.log_tail()}")
                time.sleep(0.1)

    def _wait_api(self, timeout_seconds: float) -> None:
        deadline = time.monotonic() + timeout_seconds
        while not _answers(f"{self.api_url}/healthz", ok_only=False):
            self.tiers.check()
            if time.monotonic() > deadline:
                raise TimeoutError(f"API tier not answering within {timeout_seconds}s")
            time.sleep(0.1)

    def process_tiers(self) -> list[Tier]:
        return list(self.tiers.started)

    def live_rows(self, clusters: Sequence[str]) -> int:
        stmt = (
            select(func.count())
            .select_from(resources)
            .where(
                and_(
                    resources.c.cluster.in_(list(clusters)),
                    resources.c.deleted == false(),
                    resources.c.api_group != RBAC_GROUP,  # synced besides what the bench generated
                )
            )
        )
        with self.engine().connect() as conn:
            return int(conn.execute(stmt).scalar_one())

    def wait_rows(self, clusters: Sequence[str], expected: int, timeout_seconds: float) -> float:
        """Poll until ``expected`` live rows of ``clusters`` are stored; the perf_counter time then."""
        deadline = time.perf_counter() + timeout_seconds
        last = -1
        while True:
            count = self.live_rows(clusters)
            now = time.perf_counter()
            if count >= expected:
                return now
            self.tiers.check()
            if now > deadline:
                raise TimeoutError(f"{count}/{expected} rows after {timeout_seconds}s (was {last})")
            last = count
            time.sleep(0.05 if expected - count < 500 else 0.2)

    def stop(self) -> None:
        self.tiers.stop_all()
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def __enter__(self) -> System:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
