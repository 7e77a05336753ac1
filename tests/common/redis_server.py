"""A redis-server of one test alone, for the tests that restart or flush Redis."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import redis

from harness.cluster import free_port
from harness.processes import Process


class ThrowawayRedis:
    """A redis-server of this test alone, restartable on the same port, keeping nothing on disk."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        exe = shutil.which("redis-server") or "redis-server"
        argv = [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.proc = Process("redis-throwaway", [*argv, "--dir", str(workdir)], workdir / "redis.log")

    def start(self) -> None:
        self.proc.start()
        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, self.proc.log_tail()
                time.sleep(0.05)
        client.close()

    def restart(self) -> None:
        self.proc.stop()
        self.start()
