"""Fault: a writer process killed with SIGKILL in the middle of a batch loses nothing.

The victim (``python -m writer``) holds a batch it has read but not acked when it dies; another
writer reclaims those entries once they are idle, and the store ends up exactly as the events say.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import redis

from common.queue.redis_streams import GROUP, RedisPublisher, split_url
from harness.processes import Process

ROOT = Path(__file__).resolve().parents[2]
KEYS = 2000
EVENTS = 9000


def writer_process(name: str, store_url: str, queue_url: str, log: Path, **flags: object) -> Process:
    argv = [
        sys.executable,
        "-m",
        "writer",
        "--storage",
        store_url,
        "--queue",
        queue_url,
        "--consumer-name",
        name,
    ]
    for flag, value in flags.items():
        argv += [f"--{flag.replace('_', '-')}", str(value)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLUSTERPEDIA_")}
    env["PYTHONPATH"] = str(ROOT)
    return Process(name, argv, log, env=env)


def test_kill_9_mid_batch_loses_nothing(store_url, redis_url, store, objs, tmp_path) -> None:
    queue_url = f"{redis_url}?stream=kill-{objs.cluster}"
    stream = split_url(queue_url)[1]
    raw = redis.Redis.from_url(split_url(queue_url)[0])
    expected: dict[str, int] = {}
    events = []
    for i in range(EVENTS):
        name, rv = f"o{i % KEYS}", 1000 + i
        if i % 7 == 3:
            events.append(objs.delete(name, rv))
            expected.pop(name, None)
        else:
            events.append(objs.upsert(name, rv, body=f'{{"rv":{rv},"pad":"{"x" * 200}"}}'))
            expected[name] = rv

    async def produce() -> None:
        pub = RedisPublisher(queue_url)
        try:
            for i in range(0, len(events), 500):
                await pub.publish(events[i : i + 500])
        finally:
            await pub.close()

    asyncio.run(produce())
    rescuer = writer_process(
        "rescuer", store_url, queue_url, tmp_path / "rescuer.log", reclaim_idle_seconds=1
    )
    victims: list[Process] = []
    try:
        # SIGKILL a writer while it holds a batch; the kill may land just after an ack (the test
        # process is not scheduled in lockstep with the writer), then kill another one.
        for attempt in range(5):
            name = f"victim-{attempt}"
            victim = writer_process(name, store_url, queue_url, tmp_path / f"{name}.log")
            victims.append(victim)
            victim.start()
            deadline = time.monotonic() + 60
            while True:  # working, and holding a batch it has not acked yet
                started = bool(store.live(objs.cluster))
                held = {c["name"]: c["pending"] for c in raw.xpending(stream, GROUP)["consumers"]}
                if started and held.get(name.encode(), 0) > 0:
                    break
                assert victim.running(), victim.log_tail()
                assert time.monotonic() < deadline, victim.log_tail()
                time.sleep(0.005)
            assert victim.popen is not None
            victim.popen.send_signal(signal.SIGKILL)
            victim.popen.wait(10)
            if raw.xpending(stream, GROUP)["pending"] > 0:
                break
        assert raw.xpending(stream, GROUP)["pending"] > 0, "no writer was killed holding a batch"
        assert raw.xinfo_groups(stream)[0]["lag"] > 0, "the queue was done before a writer was killed"

        rescuer.start()
        deadline = time.monotonic() + 90
        while raw.xinfo_groups(stream)[0]["lag"] or raw.xpending(stream, GROUP)["pending"]:
            assert rescuer.running(), rescuer.log_tail()
            assert time.monotonic() < deadline, rescuer.log_tail()
            time.sleep(0.1)
        assert "reclaimed" in (tmp_path / "rescuer.log").read_text()
    finally:
        for victim in victims:
            victim.stop()
        rescuer.stop()
        raw.close()
    assert store.live(objs.cluster) == expected
