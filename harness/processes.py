"""Child processes of the harness, and the guarantee that none outlives the test run.

Every etcd / kube-apiserver / kube-controller-manager is started through ``spawn``, which
- records it in a registry that ``stop_all`` sweeps (pytest session end and ``atexit``), so a
  finalizer that never ran (an interrupted run) still leaves nothing behind;
- asks the kernel to SIGKILL it when the spawning thread dies (``PR_SET_PDEATHSIG``), which covers
  the case no Python code can: the test process itself being SIGKILLed. The parent death signal
  fires when the *thread* that forked exits, so spawn from long-lived threads only (the harness
  spawns from the main thread);
- puts it in its own session, so a Ctrl-C in the terminal reaches pytest only, and pytest stops
  the components in order (controller manager, apiserver, etcd).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import signal
import subprocess
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)

_lock = threading.Lock()
_running: dict[int, Process] = {}


def _die_with_parent() -> None:  # runs in the child between fork and exec
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class Process:
    """One started component: its argv, log file and Popen handle."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None):
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = dict(env) if env is not None else None
        self.popen: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def start(self) -> None:
        if self.running():
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._log.write(f"\n===== starting: {' '.join(self.argv)}\n".encode())
        self._log.flush()
        env = dict(os.environ)
        if self.env:
            env.update(self.env)
        self.popen = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            preexec_fn=_die_with_parent,
            close_fds=True,
        )
        with _lock:
            _running[self.popen.pid] = self

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def exit_code(self) -> int | None:
        return self.popen.poll() if self.popen else None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; always reaps."""
        popen = self.popen
        if popen is not None:
            if popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    popen.terminate()
                try:
                    popen.wait(timeout)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        popen.kill()
                    popen.wait()
            with _lock:
                _running.pop(popen.pid, None)
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 50) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


def running() -> list[Process]:
    with _lock:
        return list(_running.values())


def stop_all() -> None:
    """Stop every process still registered (newest first, so dependents go before their etcd)."""
    for proc in reversed(running()):
        proc.stop(timeout=5.0)


atexit.register(stop_all)
