"""``kubectl get -w`` through a real host kube-apiserver: the aggregated view watched by kubectl 1.27
and 1.32 while objects change in two real members, synced by the real synchro and writer.

kubectl lists (a Table with the CLUSTER column), then watches from the list's resourceVersion and
prints a row per event; ``--output-watch-events`` adds the event type, ``--watch-only`` skips the
list. The rows must show the members' changes (ADDED, MODIFIED, DELETED) with their cluster.
"""

from __future__ import annotations

import queue
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.cluster import Cluster
from harness.paths import kubectl_binary
from tests.e2e.sync_support import (
    install_crd,
    make_settings,
    pediacluster,
    start_synchro,
    start_writer,
    wait_for,
)
from tests.e2e.test_kubectl_aggregation import RBAC, serve_through_host

pytestmark = pytest.mark.e2e

WAIT = 60.0
"""Longest wait for one expected row (a member change crosses the synchro, queue, writer, store
and the API's change feed; measured in bench/, not here)."""


@dataclass
class Setup:
    host: Cluster
    members: dict[str, Cluster]
    kubeconfig: Path


@pytest.fixture(scope="module")
def setup(
    host_cluster: Cluster,
    two_member_clusters: tuple[Cluster, Cluster],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Setup]:
    workdir = tmp_path_factory.mktemp("watch-kubectl")
    store_url = f"sqlite:///{workdir / 'store.db'}"
    members = {c.name: c for c in two_member_clusters}
    for cluster in members.values():
        cluster.kubectl("create", "namespace", "watched")
    install_crd(host_cluster)
    for name, cluster in members.items():
        host_cluster.apply(pediacluster(name, cluster, {"": ["configmaps"]}))
    settings = make_settings(host_cluster, store_url, "memory://")
    writer = start_writer(settings)
    synchro = start_synchro(settings)
    try:
        served = serve_through_host(host_cluster, workdir, store_url, RBAC, mode="host-only")
        try:
            setup = Setup(host_cluster, members, served.kubeconfig)
            # both members' configmaps are served before kubectl watches
            wait_for(
                lambda: {"cluster-1", "cluster-2"} <= {r[1] for r in rows(setup, "get", "configmaps", "-A")},
                "both members' configmaps served",
                timeout=WAIT,
            )
            yield setup
        finally:
            served.api.stop()
    finally:
        synchro.stop()
        writer.stop()


def rows(s: Setup, *args: str, cluster: str = "clusterpedia") -> list[list[str]]:
    argv = [str(kubectl_binary("1.32")), f"--kubeconfig={s.kubeconfig}", "--cluster", cluster, *args]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True).stdout
    return [line.split() for line in out.splitlines()[1:]]


class Watching:
    """A running ``kubectl get -w``, its output lines collected as they come."""

    def __init__(self, s: Setup, version: str, *args: str, cluster: str = "clusterpedia") -> None:
        argv = [str(kubectl_binary(version)), f"--kubeconfig={s.kubeconfig}", "--cluster", cluster, *args]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[list[str]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_row(self, *cells: str) -> list[str]:
        """The first row (after those already seen) that starts with ``cells``."""
        deadline = time.monotonic() + WAIT
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.proc.poll() is not None:
                ended = self.proc.poll() is not None and self.proc.stderr is not None
                err = self.proc.stderr.read() if ended and self.proc.stderr else "running"
                raise AssertionError(f"no row {cells} in {self.seen}; kubectl: {err}")
            try:
                line = self.lines.get(timeout=min(remaining, 1.0))
            except queue.Empty:
                continue
            row = line.split()
            self.seen.append(row)
            if tuple(row[: len(cells)]) == cells:
                return row

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(10)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


@pytest.mark.parametrize("version", ["1.27", "1.32"])
def test_kubectl_get_w_shows_both_members_changes(setup: Setup, version: str) -> None:
    one, two = setup.members["cluster-1"], setup.members["cluster-2"]
    name = f"w{version.replace('.', '')}"
    w = Watching(setup, version, "get", "configmaps", "-n", "watched", "-w", "--output-watch-events")
    try:
        one.kubectl("create", "configmap", f"{name}-a", "-n", "watched", "--from-literal=k=v")
        w.wait_row("ADDED", "cluster-1", f"{name}-a", "1")
        two.kubectl("create", "configmap", f"{name}-b", "-n", "watched")
        w.wait_row("ADDED", "cluster-2", f"{name}-b", "0")
        one.kubectl("label", "configmap", f"{name}-a", "-n", "watched", "changed=yes")
        w.wait_row("MODIFIED", "cluster-1", f"{name}-a")
        two.kubectl("delete", "configmap", f"{name}-b", "-n", "watched")
        w.wait_row("DELETED", "cluster-2", f"{name}-b")
    finally:
        w.stop()
    # the header kubectl printed for the watch's table
    assert w.seen[0][:4] == ["EVENT", "CLUSTER", "NAME", "DATA"]


def test_watch_only_on_one_cluster_and_all_namespaces(setup: Setup) -> None:
    one, two = setup.members["cluster-1"], setup.members["cluster-2"]
    w = Watching(setup, "1.32", "get", "configmaps", "-A", "-w", "--watch-only", cluster="cluster-1")
    try:
        # kubectl prints nothing of the current objects with --watch-only: the first rows are changes
        two.kubectl("create", "configmap", "only-two", "-n", "watched")  # another cluster: not shown
        one.kubectl("create", "configmap", "only-one", "-n", "watched")
        row = w.wait_row("watched", "cluster-1", "only-one")
    finally:
        w.stop()
    assert all("only-two" not in r for r in w.seen)
    assert all(r[:2] == ["NAMESPACE", "CLUSTER"] or r[1] == "cluster-1" for r in w.seen), w.seen
    assert row[:3] == ["watched", "cluster-1", "only-one"]
