"""Redis restarts without persistence while events sit unconsumed in the stream: the synchro learns
of the reset (QueueReset, also when idle) and relists every cluster under a new epoch, so the store
ends equal to the member cluster with no further change there."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from harness.cluster import Cluster, free_port
from harness.processes import Process
from tests.e2e.sync_support import (
    GR,
    cluster_rows,
    install_crd,
    make_settings,
    pediacluster,
    start_synchro,
    start_writer,
    unique,
    wait_for,
    wait_store_matches,
)

pytestmark = pytest.mark.e2e

CM: list[GR] = [("", "v1", "configmaps")]


def configmaps(ns: str, names: range) -> str:
    return "\n---\n".join(
        [f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}"]
        + [f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cm-{i}, namespace: {ns}}}" for i in names]
    )


def test_redis_restart_relists(
    host_cluster: Cluster, member_cluster: Any, sqlite_url: str, tmp_path: Path
) -> None:
    port = free_port()
    server = shutil.which("redis-server")
    assert server, "redis-server is installed by hack/services.sh"
    argv = [
        server,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(tmp_path),
    ]
    redis_proc = Process("redis-reset", argv, tmp_path / "redis.log")
    url = f"redis://127.0.0.1:{port}/0"

    def redis_up() -> bool:
        try:
            return bool(redis.Redis.from_url(url).ping())
        except redis.ConnectionError:
            return False

    redis_proc.start()
    wait_for(redis_up, "redis up", timeout=20, interval=0.2)
    member: Cluster = member_cluster("queue-reset")
    install_crd(host_cluster)
    host_cluster.apply(pediacluster("queue-reset", member, {"": ["configmaps"]}))
    settings = make_settings(host_cluster, sqlite_url, url)
    writer, synchro = start_writer(settings), start_synchro(settings, unique("w"))
    try:
        ns = unique("reset")
        member.apply(configmaps(ns, range(30)))
        wait_store_matches(sqlite_url, lambda: cluster_rows("queue-reset", member, CM), ["queue-reset"])

        writer.stop()  # events now stay in the stream, unconsumed
        member.apply(configmaps(ns, range(30, 60)))
        member.kubectl("-n", ns, "delete", "configmap", *[f"cm-{i}" for i in range(5)])
        wait_for(
            lambda: redis.Redis.from_url(url).xlen("clusterpedia:events") >= 35, "events queued in redis"
        )

        assert redis_proc.popen is not None
        redis_proc.popen.kill()  # no persistence: the queued events are gone
        redis_proc.popen.wait()
        redis_proc.stop()
        redis_proc.start()
        wait_for(redis_up, "redis up again", timeout=20, interval=0.2)
        restarted = time.monotonic()
        writer = start_writer(settings)
        took = wait_store_matches(
            sqlite_url, lambda: cluster_rows("queue-reset", member, CM), ["queue-reset"], timeout=60
        )
        print(f"store equal to the cluster {took:.1f}s after the Redis restart (idle synchro, relist)")
        assert time.monotonic() - restarted < 60
    finally:
        synchro.stop()
        writer.stop()
        redis_proc.stop()
        host_cluster.kubectl("delete", "pediaclusters", "--all", "--wait=false")
