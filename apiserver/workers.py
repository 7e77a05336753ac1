"""Several API worker processes serving one port (``apiserver.workers``).

One process serves requests on one core at most (the event loop and the JSON work hold the GIL);
the API tier measured flat from 1 to 32 concurrent clients with ~0.7 of two cores busy. Here the
parent makes the serving certificate once and opens one listening socket per worker on the port
(``SO_REUSEPORT``), then forks the workers: each is a whole API process (its own store pool, its
own watch hub polling the change feed) that runs uvicorn on its own socket, and the kernel spreads
new connections over the sockets by a hash of their addresses. (One shared socket let whichever
worker woke first accept every connection of a burst: asyncio accepts up to 100 per wakeup, so a
client opening 32 connections at once often got one worker for all of them, which then served
the rate of one process.) The parent only supervises:

* a worker that ends while the parent is not stopping is started again (after a short pause when
  workers keep dying young, so a broken configuration does not spin);
* SIGTERM or SIGINT is passed to every worker, which finish their requests (uvicorn's graceful
  shutdown, open watches cut after 5 s); a worker still there after ``STOP_GRACE_SECONDS`` is
  killed, and the parent exits once all are gone;
* a worker dies with its parent (``PR_SET_PDEATHSIG``) should the parent be killed outright.

Forking happens before the parent starts any thread or opens any connection; each worker builds
its app after the fork. Logs of a worker carry ``worker=N``.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from types import FrameType

log = logging.getLogger(__name__)

STOP_GRACE_SECONDS = 15.0
"""How long workers get to stop after SIGTERM before they are killed (watches end after 5 s)."""

_POLL_SECONDS = 0.2
_YOUNG_SECONDS = 10.0
_RESTART_MAX_DELAY_SECONDS = 5.0
_PR_SET_PDEATHSIG = 1
_STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}

Serve = Callable[[int, socket.socket], None]
"""Runs worker ``index`` on its listening socket until it is asked to stop (in the child)."""


class _WorkerField(logging.Filter):
    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index

    def filter(self, record: logging.LogRecord) -> bool:
        record.worker = self.index
        return True


def _die_with_parent(parent: int) -> None:
    with_errno = ctypes.CDLL(None, use_errno=True)
    with_errno.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before prctl
        os._exit(1)


def _child(index: int, socks: list[socket.socket], serve: Serve, parent: int) -> None:
    """The forked worker: never returns (it must not run the parent's cleanup)."""
    code = 1
    sock = socks[index % len(socks)]
    try:
        for other in socks:  # the parent keeps them: only this worker's own stays open here
            if other is not sock:
                other.close()
        for signum in _STOP_SIGNALS:
            signal.signal(signum, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
        _die_with_parent(parent)
        for handler in logging.getLogger().handlers:
            handler.addFilter(_WorkerField(index))
        log.info("API worker started", extra={"pid": os.getpid()})
        serve(index, sock)
        code = 0
    except BaseException:
        log.exception("API worker failed")
    finally:
        logging.shutdown()
        os._exit(code)


class Supervisor:
    """Forks ``count`` workers, worker i on ``socks[i]`` (one listening socket each, see
    ``apiserver.server.listening_sockets``), and keeps them running until SIGTERM/SIGINT. The
    parent holds every socket: a restarted worker takes over the connections queued on its
    predecessor's."""

    def __init__(self, count: int, socks: list[socket.socket], serve: Serve) -> None:
        self.count = count
        self.socks = socks
        self.serve = serve
        self.children: dict[int, tuple[int, float]] = {}  # pid -> (worker index, monotonic start)
        self.stopping = False
        self._restart_delay = 0.0

    def _spawn(self, index: int) -> None:
        parent = os.getpid()
        # A stop signal landing between fork and the child's own handlers must not run the
        # parent's handler in the child: both sides hold the signals until they are set up.
        signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        try:
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                _child(index, self.socks, self.serve, parent)
            self.children[pid] = (index, time.monotonic())
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
        log.info("started API worker", extra={"worker": index, "pid": pid})

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if not self.stopping:
            log.info("stopping the API workers", extra={"signal": signal.Signals(signum).name})
        self.stopping = True
        self._signal_all(signal.SIGTERM)

    def _signal_all(self, signum: int) -> None:
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def run(self) -> int:
        """Supervise until stopped; 0 when every worker stopped cleanly after a stop signal."""
        for signum in _STOP_SIGNALS:
            signal.signal(signum, self._on_signal)
        for index in range(self.count):
            self._spawn(index)
        clean = True
        kill_at: float | None = None
        while self.children:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                if self.stopping:
                    kill_at = kill_at or time.monotonic() + STOP_GRACE_SECONDS
                    if time.monotonic() >= kill_at:
                        log.error("API workers did not stop in time: killing them")
                        self._signal_all(signal.SIGKILL)
                        clean = False
                        kill_at = float("inf")
                time.sleep(_POLL_SECONDS)
                continue
            ended = self.children.pop(pid, None)
            if ended is None:
                continue
            index, started = ended
            code = os.waitstatus_to_exitcode(status)
            if self.stopping:
                clean = clean and code in (0, -signal.SIGTERM)
                log.info("API worker stopped", extra={"worker": index, "pid": pid, "code": code})
                continue
            lived = time.monotonic() - started
            self._restart_delay = (
                0.0
                if lived > _YOUNG_SECONDS
                else min(max(0.1, self._restart_delay * 2), _RESTART_MAX_DELAY_SECONDS)
            )
            log.warning(
                "API worker ended: starting it again",
                extra={"worker": index, "pid": pid, "code": code, "delay_seconds": self._restart_delay},
            )
            deadline = time.monotonic() + self._restart_delay
            while not self.stopping and time.monotonic() < deadline:
                time.sleep(min(_POLL_SECONDS, self._restart_delay))
            if not self.stopping:
                self._spawn(index)
        return 0 if clean else 1
