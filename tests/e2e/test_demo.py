"""`make demo` end to end, as the README's quick start promises (SQLite + in-process queue).

A fresh demo directory (DEMO_DIR) keeps the test away from a developer's own `.demo/`.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from harness.paths import REPO_ROOT, kubectl_binary

pytestmark = pytest.mark.e2e


def make(target: str, demo_dir: Path, timeout: float, *variables: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEMO_DIR": str(demo_dir)}
    for name in ("STORAGE", "QUEUE", "WRITERS", "KUBECONFIG"):
        env.pop(name, None)
    return subprocess.run(
        ["make", "--no-print-directory", target, *variables],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def demo_processes(demo_dir: Path) -> str:
    out = subprocess.run(["pgrep", "-af", str(demo_dir)], capture_output=True, text=True, check=False)
    return out.stdout.strip()


def kubectl(demo_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(kubectl_binary()), *args],
        env={**os.environ, "KUBECONFIG": str(demo_dir / "kubeconfig")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.timeout(1800)
def test_make_demo_then_kubectl_then_demo_down(tmp_path: Path) -> None:
    demo_dir = tmp_path / "demo"
    try:
        up = make("demo", demo_dir, timeout=1500)
        assert up.returncode == 0, f"{up.stdout}\n{up.stderr}"
        assert "demo ready" in up.stdout
        assert f"export KUBECONFIG={demo_dir}/kubeconfig" in up.stdout
        for n in (1, 2, 3):
            assert (demo_dir / "members" / f"cluster-{n}.kubeconfig").is_file()

        got = kubectl(demo_dir, "--cluster", "clusterpedia", "get", "deployments", "-A")
        assert got.returncode == 0, got.stderr
        lines = got.stdout.splitlines()
        assert lines[0].split() == ["NAMESPACE", "CLUSTER", "NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
        rows = [line.split() for line in lines[1:]]
        assert {row[1] for row in rows} == {"cluster-1", "cluster-2", "cluster-3"}
        # READY reads like the seed, from the status the demo wrote through the status subresource.
        assert ["kube-system", "cluster-1", "coredns", "2/2", "2", "2"] in [r[:6] for r in rows]
        assert ["default", "cluster-2", "dd-airflow-scheduler", "0/1", "1", "0"] in [r[:6] for r in rows]

        clusters = kubectl(demo_dir, "get", "pediaclusters", "-o", "name")
        assert clusters.stdout.split() == [
            f"pediacluster.clusters.clusterpedia.io/cluster-{n}" for n in (1, 2, 3)
        ]
        one = kubectl(demo_dir, "--cluster", "cluster-3", "get", "deployments", "-A", "-o", "name")
        assert one.returncode == 0, one.stderr
        assert "deployment.apps/coredns" in one.stdout.split()
        # events are synced: describe through Clusterpedia shows the one the demo recorded (bounded
        # poll: the demo waits for the deployments, the events' list runs beside them)
        describe = ("--cluster", "cluster-1", "-n", "kube-system", "describe", "deployment", "coredns")
        deadline = time.monotonic() + 30
        while "ScalingReplicaSet" not in kubectl(demo_dir, *describe).stdout.partition("Events:")[2]:
            assert time.monotonic() < deadline, kubectl(demo_dir, *describe).stdout
            time.sleep(0.5)
        # control: the demo's members let the synchro identity impersonate (the README's tour)
        scale = (
            "--cluster",
            "cluster-1",
            "-n",
            "kube-system",
            "scale",
            "deployment",
            "coredns",
            "--replicas=3",
        )
        scaled = kubectl(demo_dir, *scale)
        assert scaled.returncode == 0, scaled.stderr
        replicas = kubectl(
            demo_dir, "--cluster", "cluster-1", "-n", "kube-system", "get", "deployment", "coredns",
            "-o", "jsonpath={.spec.replicas}",
        )  # fmt: skip
        assert replicas.stdout == "3", replicas.stderr

        again = make("demo", demo_dir, timeout=600)
        assert again.returncode == 0, f"{again.stdout}\n{again.stderr}"
        assert "demo already running" in again.stdout and "reusing it" in again.stdout
    finally:
        down = make("demo-down", demo_dir, timeout=300)
    assert down.returncode == 0, f"{down.stdout}\n{down.stderr}"
    assert demo_processes(demo_dir) == ""


@pytest.mark.timeout(1800)
def test_make_demo_fleet_shape_runs_each_tier_as_its_own_process(tmp_path: Path) -> None:
    """`make demo STORAGE=postgres QUEUE=redis`: apiserver, synchro and two writers on PostgreSQL+Redis."""
    demo_dir = tmp_path / "fleet"
    try:
        up = make("demo", demo_dir, 1500, "STORAGE=postgres", "QUEUE=redis")
        assert up.returncode == 0, f"{up.stdout}\n{up.stderr}"
        assert "starting Clusterpedia: apiserver, synchro, writer-1, writer-2" in up.stdout
        status = subprocess.run(
            ["bash", str(REPO_ROOT / "hack" / "demo.sh"), "status"],
            env={**os.environ, "DEMO_DIR": str(demo_dir)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert status.returncode == 0, status.stdout + status.stderr
        assert "postgres + redis" in status.stdout
        for tier in ("apiserver", "synchro", "writer-1", "writer-2"):
            assert re.search(rf"^\s+{tier}\s+pid \d+\s+running", status.stdout, re.M), status.stdout
        got = kubectl(demo_dir, "--cluster", "clusterpedia", "get", "deployments", "-A", "-o", "name")
        assert got.returncode == 0, got.stderr
        listed = kubectl(demo_dir, "--cluster", "clusterpedia", "get", "deployments", "-A")
        assert {line.split()[1] for line in listed.stdout.splitlines()[1:]} == {
            "cluster-1",
            "cluster-2",
            "cluster-3",
        }
    finally:
        down = make("demo-down", demo_dir, 300)
    assert down.returncode == 0, f"{down.stdout}\n{down.stderr}"
    assert demo_processes(demo_dir) == ""
