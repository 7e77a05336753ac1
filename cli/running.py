"""Running the tiers: one tier per process, or all of them in one process tree.

The synchro and the writer are blocking functions that return when their ``stop_event`` is set;
they run in threads here so that the main thread stays free to receive SIGTERM/SIGINT (a Python
signal handler only runs in the main thread) and set that event. The API tier runs uvicorn in the
main thread: uvicorn installs its own SIGTERM/SIGINT handlers, shuts down gracefully, and then
re-raises the signal to the handlers installed before it, which stop the other tiers.

``all-in-one`` with the in-process queue (``memory://``) must keep every tier in one process:
that queue is a Python object. With Redis it starts each tier as a child process
(``python -m cli <tier>``) with the same configuration, and stops them all when one ends.
"""

from __future__ import annotations

import importlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from types import FrameType
from typing import Any, cast

import msgspec

from cli.flags import flatten
from common.observability import HEALTH, start_observability_server
from common.settings import Settings
from common.storage import load_backend

log = logging.getLogger("clusterpedia.cli")

TierRunner = Callable[[Settings, threading.Event], None]
STOP_GRACE_SECONDS = 20.0


def _entry(module: str, name: str) -> Any:
    """A tier's entry point, imported only when that tier runs (``--help`` stays fast)."""
    return getattr(importlib.import_module(module), name)


def _load_synchro() -> TierRunner:
    return cast(TierRunner, _entry("synchro.manager", "run_synchro"))


def _load_writer() -> TierRunner:
    return cast(TierRunner, _entry("writer.worker", "run_writer"))


def _load_apiserver() -> Callable[[Settings], int]:
    return cast(Callable[[Settings], int], _entry("apiserver.server", "run_apiserver"))


def prepare_store(settings: Settings, attempts: int = 5) -> None:
    """Create or upgrade the store's schema before the tiers start (they would otherwise race to do
    it)."""
    from common.storage import StorageUnavailable, open_store

    store = open_store(settings.storage)
    try:
        for attempt in range(attempts):
            try:
                store.migrate()
                return
            except StorageUnavailable:
                # another process creating the same tables at the same moment
                if attempt == attempts - 1:
                    raise
                time.sleep(0.2 * (attempt + 1))
    finally:
        store.close()


def run_migrate(settings: Settings) -> int:
    prepare_store(settings)
    log.info("store schema is up to date")
    return 0


def install_stop_handlers(stop: threading.Event, *, force_on_second: bool = True) -> None:
    """SIGTERM and SIGINT set ``stop``; a second one while stopping exits at once."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        if stop.is_set() and force_on_second:
            log.warning("second signal while stopping: exiting now", extra={"signal": signum})
            os._exit(128 + signum)
        log.info("stopping", extra={"signal": signal.Signals(signum).name})
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


class TierThread(threading.Thread):
    """A tier in a thread; records its failure and wakes the main thread when it ends."""

    def __init__(self, name: str, runner: TierRunner, settings: Settings, stop: threading.Event) -> None:
        super().__init__(name=name, daemon=True)
        self.runner = runner
        self.settings = settings
        self.stop = stop
        self.error: BaseException | None = None

    def run(self) -> None:
        HEALTH.set_ready(self.name, True)
        try:
            self.runner(self.settings, self.stop)
        except BaseException as exc:
            self.error = exc
            log.exception("%s stopped with an error", self.name)
            HEALTH.set_dead(self.name, f"{type(exc).__name__}: {exc}")
        finally:
            HEALTH.set_ready(self.name, False, "stopped")
            if not self.stop.is_set():
                if self.error is None:
                    log.error("%s returned before it was asked to stop", self.name)
                    self.error = RuntimeError(f"{self.name} returned unexpectedly")
                self.stop.set()


def _wait(stop: threading.Event) -> None:
    # Short waits keep the main thread responsive to signals on every platform.
    while not stop.wait(0.5):
        pass


def _join(threads: Sequence[TierThread]) -> int:
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
        if t.is_alive():
            log.error("%s did not stop within %ss", t.name, STOP_GRACE_SECONDS)
            return 1
    return 1 if any(t.error is not None for t in threads) else 0


def run_threads(settings: Settings, tiers: Mapping[str, TierRunner]) -> int:
    """Run blocking tiers in threads until a signal or until one of them ends."""
    stop = threading.Event()
    install_stop_handlers(stop)
    server = start_observability_server(settings)
    threads = [TierThread(name, runner, settings, stop) for name, runner in tiers.items()]
    try:
        for t in threads:
            t.start()
        _wait(stop)
        return _join(threads)
    finally:
        if server is not None:
            server.stop()


def run_synchro(settings: Settings) -> int:
    return run_threads(settings, {"synchro": _load_synchro()})


def run_writer(settings: Settings) -> int:
    # The store's backend (its database driver) is imported before the tier reports ready.
    load_backend(settings.storage)
    return run_threads(settings, {"writer": _load_writer()})


def run_apiserver(settings: Settings) -> int:
    return _load_apiserver()(settings)


def run_kube_state_metrics(settings: Settings) -> int:
    run = cast(Callable[[Settings], int], _entry("kubestate.server", "run_kube_state_metrics"))
    return run(settings)


def run_all_in_one_process(settings: Settings, writers: int) -> int:
    """Synchro and writer threads plus the API tier in the main thread: the memory:// shape."""
    synchro, writer, apiserver = _load_synchro(), _load_writer(), _load_apiserver()
    if settings.apiserver.workers > 1:
        # The API tier runs in the process that holds the in-process queue and the synchro and
        # writer threads (and a memory:// store): a forked worker would copy their state, not
        # share it. With redis:// each tier is a process of its own and the workers are honoured.
        log.warning("apiserver.workers > 1 needs the redis:// queue in all-in-one: serving with 1")
        settings = msgspec.structs.replace(
            settings, apiserver=msgspec.structs.replace(settings.apiserver, workers=1)
        )
    prepare_store(settings)
    stop = threading.Event()
    api_done = threading.Event()
    # The watcher below re-sends SIGTERM to reach uvicorn: repeated signals must not force an exit.
    install_stop_handlers(stop, force_on_second=False)
    server = start_observability_server(settings)
    threads = [TierThread("synchro", synchro, settings, stop)]
    for i in range(writers):
        name = "writer" if writers == 1 else f"writer-{i}"
        s = settings
        if writers > 1 and settings.writer.consumer_name:
            s = msgspec.structs.replace(
                settings,
                writer=msgspec.structs.replace(
                    settings.writer, consumer_name=f"{settings.writer.consumer_name}-{i}"
                ),
            )
        threads.append(TierThread(name, writer, s, stop))

    def stop_apiserver_when_a_tier_ends() -> None:
        _wait(stop)
        # uvicorn owns SIGTERM in the main thread once it runs; this asks it to shut down
        # gracefully, again until it does (the first signal may land before its handlers exist).
        while not api_done.is_set():
            os.kill(os.getpid(), signal.SIGTERM)
            api_done.wait(2.0)

    watcher = threading.Thread(target=stop_apiserver_when_a_tier_ends, name="tier-watch", daemon=True)
    try:
        for t in threads:
            t.start()
        watcher.start()
        api_failed = False
        try:
            apiserver(settings)
        except (Exception, SystemExit):
            log.exception("apiserver stopped with an error")
            api_failed = True
        api_done.set()
        stop.set()
        code = _join(threads)
        return 1 if api_failed else code
    finally:
        if server is not None:
            server.stop()


def child_argv(tier: str, config_file: str | None, overrides: Mapping[str, Any]) -> list[str]:
    """The command line that runs one tier as a child with the parent's configuration."""
    argv = [sys.executable, "-m", "cli", tier]
    if config_file:
        argv += ["--config", config_file]
    for key, value in flatten(overrides):
        argv += ["--set", f"{key}={msgspec.json.encode(value).decode()}"]
    return argv


def run_all_in_processes(
    config_file: str | None, overrides: Mapping[str, Any], settings: Settings, writers: int
) -> int:
    """One child process per tier (apiserver, synchro, N writers): the Redis shape.

    ``metrics_port`` P goes to the synchro, P+1..P+N to the writers (0 stays 0: no server).
    """
    prepare_store(settings)
    stop = threading.Event()
    install_stop_handlers(stop)
    base = settings.metrics_port
    plan: list[tuple[str, list[str]]] = [("apiserver", child_argv("apiserver", config_file, overrides))]
    plan.append(("synchro", child_argv("synchro", config_file, {**overrides, "metrics_port": base})))
    for i in range(writers):
        port = base + 1 + i if base else 0
        plan.append((f"writer-{i}", child_argv("writer", config_file, {**overrides, "metrics_port": port})))
    children: dict[str, subprocess.Popen[bytes]] = {}
    failed = False
    try:
        for name, argv in plan:
            children[name] = subprocess.Popen(argv)
            log.info("started %s", name, extra={"pid": children[name].pid})
        while not stop.wait(0.5):
            ended = {n: p.returncode for n, p in children.items() if p.poll() is not None}
            if ended:
                log.error("a tier ended; stopping the others", extra={"ended": str(ended)})
                failed = True
                break
    finally:
        for p in children.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for name, p in children.items():
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("%s did not stop in time; killing it", name)
                p.kill()
                p.wait()
                failed = True
            if p.returncode not in (0, -signal.SIGTERM, 128 + signal.SIGTERM):
                failed = True
    return 1 if failed else 0
