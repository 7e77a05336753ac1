"""No leftovers: every process the harness starts is stopped and reaped, even when the test process
itself is SIGKILLed, and a component that cannot start is reported with its log."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness import processes
from harness.cluster import Cluster, ClusterStartError, free_port
from harness.paths import REPO_ROOT, etcd_binary

pytestmark = pytest.mark.e2e


def _alive(pid: int) -> bool:
    """True while the process exists and is not a zombie (PID 1 here may not reap orphans)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def _wait_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.1)
    return False


def test_children_die_with_a_sigkilled_test_process(tmp_path: Path) -> None:
    port, peer = free_port(), free_port()
    script = f"""
import time
from pathlib import Path
from harness.processes import Process
p = Process("etcd", [{str(etcd_binary())!r}, "--data-dir={tmp_path / "etcd"}",
    "--listen-client-urls=http://127.0.0.1:{port}", "--advertise-client-urls=http://127.0.0.1:{port}",
    "--listen-peer-urls=http://127.0.0.1:{peer}", "--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
    "--initial-cluster=default=http://127.0.0.1:{peer}"], Path({str(tmp_path / "etcd.log")!r}))
p.start()
print(p.pid, flush=True)
time.sleep(120)
"""
    parent = subprocess.Popen(
        [sys.executable, "-c", script], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True, env=os.environ
    )
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert _alive(child)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        assert _wait_gone(child), f"etcd {child} survived its SIGKILLed parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()


def test_stop_and_sweep_leave_nothing(tmp_path: Path) -> None:
    cluster = Cluster("sweep", "current", workdir=tmp_path / "sweep")
    cluster.start()
    pids = [p.pid for p in cluster.processes]
    assert all(pid is not None and _alive(pid) for pid in pids)
    assert {p.pid for p in processes.running()} >= set(pids)
    processes.stop_all()  # what the session end / atexit sweep does
    assert not any(pid is not None and _alive(pid) for pid in pids)
    assert not {p.pid for p in processes.running()} & set(pids)
    cluster.stop()  # idempotent


def test_a_component_that_cannot_start_is_reported_with_its_log(tmp_path: Path) -> None:
    cluster = Cluster(
        "broken", "older", workdir=tmp_path / "broken", extra_apiserver_args=["--no-such-flag=1"]
    )
    with pytest.raises(ClusterStartError, match=r"(?s)kube-apiserver exited.*no-such-flag"):
        cluster.start()
    assert not any(p.running() for p in cluster.processes)
