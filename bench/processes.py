"""The project's tiers as child processes, as an operator runs them, and their memory.

Each tier is started with the real command line (``python -m cli synchro|writer|apiserver|
all-in-one``) and configured only through ``CLUSTERPEDIA_*`` environment variables, so what is
measured is what ships. Logs go to files in the run's scratch directory. Every process started
here is stopped (SIGTERM, then SIGKILL after a grace period) by :meth:`Tier.stop` or by the
:class:`Tiers` context manager, also when a scenario fails.

Memory is read from ``/proc/PID/status``: ``VmRSS`` sampled every 50 ms by a thread (the peak of
the samples), and ``VmHWM``, the kernel's own high-water mark, as a cross-check.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from bench.services import REPO

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # in the child between fork and exec: no orphan if the bench dies
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _status_kib(pid: int, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def rss_bytes(pid: int) -> int:
    return _status_kib(pid, "VmRSS") * 1024


_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICKS
    except (OSError, IndexError, ValueError):
        return 0.0


def tree_cpu_seconds(pid: int) -> float:
    """CPU of ``pid`` and of its live descendants (the API tier's worker processes)."""
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        total += cpu_seconds(p)
        with contextlib.suppress(OSError, ValueError):
            todo += [int(c) for c in Path(f"/proc/{p}/task/{p}/children").read_text().split()]
    return total


def server_pids(kind: str) -> list[int]:
    """PIDs of the database server processes (PostgreSQL backends, mariadbd) for CPU accounting."""
    names = {"postgresql": "postgres", "mysql": "mariadbd"}.get(kind)
    if names is None:
        return []
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == names:
                    out.append(int(entry.name))
            except OSError:
                continue
    return out


class RssSampler:
    """Samples the RSS of one process in a thread; ``peak`` since the last :meth:`reset`."""

    def __init__(self, pid: int, interval_seconds: float = 0.05) -> None:
        self.pid = pid
        self.interval = interval_seconds
        self.peak = 0
        self.last = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"rss-{pid}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            value = rss_bytes(self.pid)
            if value:
                self.last = value
                self.peak = max(self.peak, value)

    def reset(self) -> int:
        """Start a new peak window; returns the current RSS."""
        self.last = rss_bytes(self.pid)
        self.peak = self.last
        return self.last

    def close(self) -> None:
        self._stop.set()
        self._thread.join(1.0)


class Tier:
    """One running tier process."""

    def __init__(self, name: str, args: list[str], env: Mapping[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        full_env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cli", *args],
            cwd=REPO,
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        self.rss = RssSampler(self.proc.pid)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def check(self) -> None:
        """Raise with the tail of its log if the process has ended."""
        if not self.alive():
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, grace_seconds: float = 15.0) -> None:
        self.rss.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace_seconds)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


class Tiers:
    """Starts tiers and stops all of them on exit."""

    def __init__(self, log_dir: Path, env: Mapping[str, str]) -> None:
        self.log_dir = log_dir
        self.env = dict(env)
        self.started: list[Tier] = []

    def start(self, name: str, args: list[str], extra_env: Mapping[str, str] | None = None) -> Tier:
        tier = Tier(name, args, {**self.env, **(extra_env or {})}, self.log_dir)
        self.started.append(tier)
        return tier

    def check(self) -> None:
        for tier in self.started:
            tier.check()

    def stop_all(self) -> None:
        for tier in reversed(self.started):
            tier.stop()
        self.started.clear()

    def __enter__(self) -> Tiers:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop_all()


def wait_until(predicate: object, timeout_seconds: float, interval_seconds: float = 0.1) -> float:
    """Poll ``predicate()`` until true; returns the time it became true (perf_counter)."""
    deadline = time.perf_counter() + timeout_seconds
    while True:
        if predicate():  # type: ignore[operator]
            return time.perf_counter()
        if time.perf_counter() > deadline:
            raise TimeoutError(f"not reached within {timeout_seconds}s")
        time.sleep(interval_seconds)
