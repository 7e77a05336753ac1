"""``python -m demo up|down|status``: start, stop and inspect the demo from the terminal.

``up`` is idempotent: a demo that is running, ready, in the same shape (storage, queue) and whose
API answers is reused (a second ``make demo`` takes seconds); anything else is stopped and started
again from scratch. It follows the supervisor's log so progress is visible while it works.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from demo.layout import MEMBERS, REPO_ROOT, DemoDir, Progress, cmdline, pid_alive

UP_TIMEOUT_SECONDS = 1200.0
DOWN_TIMEOUT_SECONDS = 60.0
DEMO_PROCESS_NAMES = ("etcd", "kube-apiserver", "kube-controller-manager", "clusterpedia", "python")


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="hack/demo.sh", description=__doc__)
    p.add_argument("command", choices=["up", "down", "status", "supervise"])
    p.add_argument("--dir", default=str(REPO_ROOT / ".demo"), help="demo directory (DEMO_DIR)")
    p.add_argument(
        "--storage", default="sqlite", choices=["sqlite", "memory", "postgres", "mysql"], help="STORAGE"
    )
    p.add_argument("--queue", default="memory", choices=["memory", "redis"], help="QUEUE")
    p.add_argument("--writers", type=int, default=2, help="writer processes with a Redis queue (WRITERS)")
    ns = p.parse_args(argv)
    if ns.storage == "memory" and ns.queue != "memory":
        # memory:// lives inside one process: only all-in-one with the in-process queue can share it.
        p.error("STORAGE=memory keeps the objects inside the all-in-one process: use it with QUEUE=memory")
    return ns


def commands(demo: DemoDir) -> str:
    kc = demo.kubeconfig
    shown = f"$PWD/{kc.relative_to(Path.cwd())}" if kc.is_relative_to(Path.cwd()) else str(kc)
    return f"""
Clusterpedia demo is running: a host cluster and three member clusters ({", ".join(MEMBERS)};
cluster-3 runs the older Kubernetes), every member registered as a PediaCluster. Try the seed's tour:

  export KUBECONFIG={shown}
  kubectl get pediaclusters
  kubectl api-resources | grep pedia.clusterpedia.io
  kubectl config get-clusters
  kubectl --cluster clusterpedia api-resources
  kubectl --cluster clusterpedia get deployments -n kube-system
  kubectl --cluster clusterpedia get deployments -A -l "search.clusterpedia.io/namespaces in (kube-system, default)"
  kubectl --cluster clusterpedia get deployments -A -l "search.clusterpedia.io/clusters in (cluster-1, cluster-2),search.clusterpedia.io/namespaces in (kube-system,default),search.clusterpedia.io/orderby=name"
  kubectl --cluster cluster-1 get deployments -A
  kubectl --cluster cluster-1 -n kube-system get deployments coredns -o wide
  kubectl --cluster clusterpedia get pods -A -l "search.clusterpedia.io/clusters=cluster-2"
  kubectl --cluster clusterpedia get databases -A
  kubectl get collectionresources
  kubectl get collectionresources workloads

A member cluster directly: kubectl --kubeconfig {demo.members}/cluster-1.kubeconfig get deployments -A
Logs: {demo.logs}/   Stop everything: make demo-down (with the same DEMO_DIR, if you set one)
"""  # noqa: E501


def _same_shape(state: dict[str, Any], ns: argparse.Namespace) -> bool:
    return (state.get("storage"), state.get("queue"), state.get("writers")) == (
        ns.storage,
        ns.queue,
        ns.writers,
    )


def supervisor_pid(demo: DemoDir) -> int | None:
    """The live supervisor of this demo directory, if any (checked by its command line)."""
    pid = demo.read_state().get("pid")
    if not isinstance(pid, int) or not pid_alive(pid):
        return None
    argv = cmdline(pid)
    if "supervise" in argv and f"--dir={demo.root}" in argv:
        return pid
    return None


def api_answers(demo: DemoDir) -> bool:
    if not demo.kubeconfig.exists():
        return False
    out = subprocess.run(
        [
            "kubectl",
            f"--kubeconfig={demo.kubeconfig}",
            "--cluster=clusterpedia",
            "get",
            "deployments",
            "-A",
            "-o",
            "name",
        ],
        env={**os.environ, "PATH": f"{demo.bin}:{os.environ.get('PATH', '')}"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return out.returncode == 0 and bool(out.stdout.strip())


def up(demo: DemoDir, ns: argparse.Namespace) -> int:
    progress = Progress()
    state = demo.read_state()
    pid = supervisor_pid(demo)
    if pid and state.get("phase") == "ready" and _same_shape(state, ns) and api_answers(demo):
        progress.say(f"demo already running (supervisor pid {pid}, {ns.storage} + {ns.queue}); reusing it")
        print(commands(demo))
        return 0
    if pid or state:
        why = (
            "a different shape" if pid and not _same_shape(state, ns) else f"phase {state.get('phase', '?')}"
        )
        progress.say(f"restarting the demo cleanly ({why})")
        down(demo, quiet=True)
    demo.root.mkdir(parents=True, exist_ok=True)
    demo.logs.mkdir(parents=True, exist_ok=True)
    if demo.log.exists():
        demo.log.replace(demo.logs / "demo.previous.log")
    log = open(demo.log, "wb")  # noqa: SIM115 - handed to the child
    argv = [
        sys.executable,
        "-m",
        "demo",
        "supervise",
        f"--dir={demo.root}",
        f"--storage={ns.storage}",
        f"--queue={ns.queue}",
        f"--writers={ns.writers}",
    ]
    child = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=REPO_ROOT,
    )
    log.close()
    demo.update_state(pid=child.pid, storage=ns.storage, queue=ns.queue, writers=ns.writers, phase="starting")
    progress.say(f"supervisor started (pid {child.pid}); following {demo.log}")

    def interrupted(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    # `make demo` killed or interrupted while it starts: stop the half-started demo too.
    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)
    try:
        return _follow_until_ready(demo, child)
    except KeyboardInterrupt:
        print("\ninterrupted: stopping what was started ...", file=sys.stderr)
        down(demo, quiet=True)
        return 130


def _follow_until_ready(demo: DemoDir, child: subprocess.Popen[bytes]) -> int:
    offset = 0
    deadline = time.monotonic() + UP_TIMEOUT_SECONDS
    while True:
        offset = _follow(demo.log, offset)
        phase = demo.read_state().get("phase")
        if phase == "ready":
            _follow(demo.log, offset)
            print(commands(demo))
            return 0
        if phase == "failed" or child.poll() is not None or time.monotonic() > deadline:
            time.sleep(0.5)
            _follow(demo.log, offset)
            # the supervisor cleans up after a failure: give it the time to
            stop_by = time.monotonic() + DOWN_TIMEOUT_SECONDS
            while child.poll() is None and time.monotonic() < stop_by:
                offset = _follow(demo.log, offset)
                time.sleep(0.5)
            _follow(demo.log, offset)
            reason = demo.read_state().get("error") or f"supervisor exited with {child.poll()}"
            print(
                f"\nmake demo failed: {reason}\nFull log: {demo.log}; stopping what was started ...",
                file=sys.stderr,
            )
            down(demo, quiet=True)
            return 1
        time.sleep(0.5)


def _follow(path: Path, offset: int) -> int:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            chunk = f.read()
    except OSError:
        return offset
    if chunk:
        sys.stdout.write(chunk.decode(errors="replace"))
        sys.stdout.flush()
    return offset + len(chunk)


def demo_processes(demo: DemoDir) -> list[int]:
    """Processes this demo started: its binaries, with the demo directory on their command line."""
    me = {os.getpid(), os.getppid()}
    found = []
    root = str(demo.root)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in me:
            continue
        argv = cmdline(int(entry.name))
        if not argv or not any(root in a for a in argv):
            continue
        exe = Path(argv[0]).name
        if any(exe.startswith(n) for n in DEMO_PROCESS_NAMES) and pid_alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def down(demo: DemoDir, quiet: bool = False) -> int:
    progress = Progress()
    state = demo.read_state()
    pid = supervisor_pid(demo)
    if pid:
        progress.say(f"stopping the demo supervisor (pid {pid}) and everything it runs ...")
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + DOWN_TIMEOUT_SECONDS
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if pid_alive(pid):
            progress.say("supervisor did not stop in time: killing it (its children die with it)")
            os.kill(pid, signal.SIGKILL)
            time.sleep(0.5)
    leftovers = demo_processes(demo)
    if leftovers:
        progress.say(f"stopping {len(leftovers)} leftover demo processes: {leftovers}")
        for p in leftovers:
            with _suppress():
                os.kill(p, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while any(pid_alive(p) for p in leftovers) and time.monotonic() < deadline:
            time.sleep(0.2)
        for p in leftovers:
            if pid_alive(p):
                with _suppress():
                    os.kill(p, signal.SIGKILL)
    if demo.read_state().get("services_started"):
        progress.say("stopping PostgreSQL, MariaDB and Redis (the demo started them)")
        subprocess.run(["bash", str(REPO_ROOT / "hack" / "services.sh"), "stop"], check=False)
    for path in (demo.clusters, demo.members, demo.tls, demo.bin):
        shutil.rmtree(path, ignore_errors=True)
    for path in (demo.kubeconfig, demo.state_file, demo.root / "clusterpedia.db"):
        path.unlink(missing_ok=True)
    for extra in demo.root.glob("clusterpedia.db-*"):
        extra.unlink(missing_ok=True)
    if not quiet or state:
        progress.say(f"demo stopped; nothing of it is running (logs kept in {demo.logs})")
    return 0


class _suppress:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return exc[0] is ProcessLookupError


def status(demo: DemoDir) -> int:
    state = demo.read_state()
    pid = supervisor_pid(demo)
    if not pid:
        print("demo is not running")
        return 1
    print(f"demo {state.get('phase')} (supervisor pid {pid}; {state.get('storage')} + {state.get('queue')})")
    for tier in state.get("tiers", []):
        alive = "running" if pid_alive(tier["pid"]) else "EXITED"
        print(f"  {tier['name']:<14} pid {tier['pid']:<8} {alive}  log {tier['log']}")
    if state.get("error"):
        print(f"  error: {state['error']}")
    return 0 if state.get("phase") == "ready" else 1


def main(argv: list[str]) -> int:
    ns = parse(argv)
    demo = DemoDir(Path(ns.dir))
    if ns.command == "supervise":
        from demo.supervisor import run

        return run(demo.root, ns.storage, ns.queue, ns.writers)
    if ns.command == "up":
        return up(demo, ns)
    if ns.command == "down":
        return down(demo)
    return status(demo)
