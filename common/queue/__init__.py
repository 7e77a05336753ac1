"""The queue between synchro workers (publishers) and writer workers (consumers).

Two implementations behind one small interface (``base``): Redis streams with a consumer group for
the fleet (``redis_streams``), and an in-process queue for the embedded all-in-one mode
(``memory``). ``open_publisher(url, settings)`` / ``open_consumer(url, settings)`` pick one from
the queue URL (``open_publisher(settings)`` takes ``settings.queue``): ``memory://`` (or
``memory://name``: one in-process queue per name) or ``redis://host:port/db`` (``?stream=key``
names the stream).
"""

from __future__ import annotations

import itertools
import os
import socket
import threading

from common.queue.base import Consumer, Delivery, Publisher, QueueReset
from common.queue.memory import MemoryQueue
from common.settings import Settings

__all__ = [
    "Consumer",
    "Delivery",
    "Publisher",
    "QueueReset",
    "entry_order",
    "memory_queue",
    "open_consumer",
    "open_publisher",
]

_memory_queues: dict[str, MemoryQueue] = {}
_memory_lock = threading.Lock()
_memory_consumer_ids = itertools.count(1)


def _scheme(url: str) -> str:
    return url.partition("://")[0].lower()


def memory_queue(url: str, settings: Settings) -> MemoryQueue:
    """The process-wide in-memory queue named by ``url`` (created on first use)."""
    with _memory_lock:
        queue = _memory_queues.get(url)
        if queue is None:
            queue = MemoryQueue(
                settings.queue_max_len, reclaim_idle_seconds=settings.writer.reclaim_idle_seconds
            )
            _memory_queues[url] = queue
        return queue


def default_consumer_name(settings: Settings) -> str:
    return settings.writer.consumer_name or f"{socket.gethostname()}-{os.getpid()}"


def _url_and_settings(url: str | Settings, settings: Settings | None) -> tuple[str, Settings]:
    if isinstance(url, Settings):
        return url.queue, url
    if settings is None:
        raise TypeError("settings are required with an explicit queue URL")
    return url, settings


def open_publisher(url: str | Settings, settings: Settings | None = None) -> Publisher:
    """The publisher for queue ``url`` (``open_publisher(settings)``: ``settings.queue``)."""
    url, settings = _url_and_settings(url, settings)
    scheme = _scheme(url)
    if scheme == "memory":
        return memory_queue(url, settings).publisher()
    if scheme in ("redis", "rediss", "unix"):
        from common.queue.redis_streams import RedisPublisher

        return RedisPublisher(url, max_len=settings.queue_max_len)
    raise ValueError(f"unsupported queue URL {url!r} (memory:// or redis://)")


def open_consumer(url: str | Settings, settings: Settings | None = None, name: str | None = None) -> Consumer:
    """A consumer of queue ``url`` named ``name`` (default: the writer settings' consumer_name, else
    hostname-pid); ``open_consumer(settings)`` reads ``settings.queue``."""
    url, settings = _url_and_settings(url, settings)
    name = name or default_consumer_name(settings)
    scheme = _scheme(url)
    if scheme == "memory":
        # Writer threads of one process would share hostname-pid: give each its own name.
        if not settings.writer.consumer_name and name == default_consumer_name(settings):
            name = f"{name}-{next(_memory_consumer_ids)}"
        return memory_queue(url, settings).consumer(name)
    if scheme in ("redis", "rediss", "unix"):
        from common.queue.redis_streams import RedisConsumer

        return RedisConsumer(url, name, reclaim_idle_seconds=settings.writer.reclaim_idle_seconds)
    raise ValueError(f"unsupported queue URL {url!r} (memory:// or redis://)")


def entry_order(entry_id: str) -> tuple[int, int]:
    """Sort key of an entry id of either implementation (``"17"`` or ``"1700000000000-3"``)."""
    first, _, second = entry_id.partition("-")
    return int(first), int(second or 0)
