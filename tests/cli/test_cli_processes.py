"""The tiers as processes: they start from the command line, report ready, and stop on SIGTERM.

Real stores (SQLite, Redis) and a real kube-apiserver as the host cluster; the processes are the
console script a user runs.
"""

from __future__ import annotations

import os
import re
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness.cluster import Cluster, free_port, free_port_block

pytestmark = pytest.mark.e2e

CLI = str(Path(sys.executable).parent / "clusterpedia")


def status_of(url: str) -> int:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=3, context=ctx) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return err.code
    except OSError:
        return 0


def eventually_ok(url: str, proc: subprocess.Popen[bytes], log: Path, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"exited with {proc.returncode}:\n{log.read_text()[-3000:]}"
        if status_of(url) == 200:
            return
        time.sleep(0.3)
    raise AssertionError(f"{url} did not answer 200 within {seconds}s:\n{log.read_text()[-3000:]}")


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., tuple[subprocess.Popen[bytes], Path]]]:
    procs: list[subprocess.Popen[bytes]] = []

    def run(*args: str) -> tuple[subprocess.Popen[bytes], Path]:
        log = tmp_path / f"{args[0]}-{len(procs)}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLUSTERPEDIA_")}
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [CLI, *args, "--log-format=text"], stdout=out, stderr=subprocess.STDOUT, env=env
            )
        procs.append(proc)
        return proc, log

    try:
        yield run
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def stop_gracefully(proc: subprocess.Popen[bytes], log: Path) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(f"did not stop within 60s of SIGTERM:\n{log.read_text()[-3000:]}") from None
    assert code == 0, log.read_text()[-3000:]


def test_writer_reports_ready_and_stops_on_sigterm(
    start: Callable[..., tuple[subprocess.Popen[bytes], Path]], sqlite_url: str
) -> None:
    port = free_port()
    proc, log = start("writer", f"--storage={sqlite_url}", "--queue=memory://", f"--metrics-port={port}")
    eventually_ok(f"http://127.0.0.1:{port}/readyz", proc, log)
    assert status_of(f"http://127.0.0.1:{port}/livez") == 200
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3).read().decode()
    assert "clusterpedia_" in body  # the writer's own metrics are in the default registry
    stop_gracefully(proc, log)
    assert "writer stopped" in log.read_text()


@pytest.mark.parametrize("storage", ["sqlite", "memory"])
def test_all_in_one_memory_serves_and_stops_on_sigterm(
    start: Callable[..., tuple[subprocess.Popen[bytes], Path]],
    member_cluster: Callable[..., Cluster],
    sqlite_url: str,
    storage: str,
) -> None:
    """The in-process queue, with the SQLite store or the in-process one (``memory://``)."""
    host = member_cluster("aio-host")
    host.kubectl("apply", "-f", str(Path(__file__).resolve().parents[2] / "charts" / "clusterpedia" / "crds"))
    api_port, metrics_port = free_port(), free_port()
    proc, log = start(
        "all-in-one",
        f"--storage={sqlite_url if storage == 'sqlite' else 'memory://'}",
        f"--kubeconfig={host.kubeconfig}",
        f"--port={api_port}",
        f"--metrics-port={metrics_port}",
        "--workers=2",  # not honoured: the API tier shares this process with the queue
    )
    eventually_ok(f"https://127.0.0.1:{api_port}/readyz", proc, log)
    eventually_ok(f"http://127.0.0.1:{metrics_port}/readyz", proc, log)
    assert not children_of(proc.pid)
    assert "serving with 1" in log.read_text()
    # The search API answers: its group discovery, before any cluster is synchronised.
    assert status_of(f"https://127.0.0.1:{api_port}/apis/clusterpedia.io/v1beta1") == 200
    stop_gracefully(proc, log)
    text = log.read_text()
    assert "synchro worker" in text and "writer stopped" in text


def test_all_in_one_redis_runs_each_tier_as_a_child(
    start: Callable[..., tuple[subprocess.Popen[bytes], Path]],
    member_cluster: Callable[..., Cluster],
    sqlite_url: str,
    redis_url: str,
) -> None:
    host = member_cluster("aio-redis-host")
    host.kubectl("apply", "-f", str(Path(__file__).resolve().parents[2] / "charts" / "clusterpedia" / "crds"))
    api_port, metrics_port = free_port(), free_port_block(3)  # synchro, writer 1, writer 2
    proc, log = start(
        "all-in-one",
        f"--storage={sqlite_url}",
        f"--queue={redis_url}",
        f"--kubeconfig={host.kubeconfig}",
        f"--port={api_port}",
        f"--metrics-port={metrics_port}",
        "--writers=2",
    )
    eventually_ok(f"https://127.0.0.1:{api_port}/readyz", proc, log)
    eventually_ok(f"http://127.0.0.1:{metrics_port}/readyz", proc, log)  # synchro
    eventually_ok(f"http://127.0.0.1:{metrics_port + 1}/readyz", proc, log)  # writer 1
    eventually_ok(f"http://127.0.0.1:{metrics_port + 2}/readyz", proc, log)  # writer 2
    children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True, check=False)
    assert len(children.stdout.split()) == 4  # apiserver, synchro, 2 writers
    stop_gracefully(proc, log)
    for pid in children.stdout.split():
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()


def children_of(pid: int) -> set[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False).stdout
    return {int(p) for p in out.split()}


def listening_pids(port: int) -> set[int]:
    """The processes holding a socket that listens on ``port`` (``ss`` names them)."""
    out = subprocess.run(["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True, check=True)
    return {int(p) for p in re.findall(r"pid=(\d+)", out.stdout)}


def eventually(check: Callable[[], bool], what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def test_apiserver_workers_serve_one_port_are_restarted_and_stop_together(
    start: Callable[..., tuple[subprocess.Popen[bytes], Path]], sqlite_url: str
) -> None:
    port = free_port()
    proc, log = start(
        "apiserver",
        f"--storage={sqlite_url}",
        f"--port={port}",
        "--workers=2",
        "--authorization-mode=host-only",
    )
    eventually_ok(f"https://127.0.0.1:{port}/readyz", proc, log)
    workers = children_of(proc.pid)
    assert len(workers) == 2
    # both workers accept on the one socket the parent bound
    eventually(lambda: workers <= listening_pids(port), "the workers do not listen on the port")
    text = log.read_text()
    assert "worker=0" in text and "worker=1" in text

    killed = min(workers)
    os.kill(killed, signal.SIGKILL)
    eventually(
        lambda: len(children_of(proc.pid)) == 2 and killed not in children_of(proc.pid),
        "the killed worker was not replaced",
    )
    restarted = children_of(proc.pid)
    eventually(lambda: restarted <= listening_pids(port), "the new worker does not listen on the port")
    eventually_ok(f"https://127.0.0.1:{port}/readyz", proc, log)
    assert "API worker ended: starting it again" in log.read_text()

    stop_gracefully(proc, log)
    for pid in restarted:  # no orphan left behind
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
