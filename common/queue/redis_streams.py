"""The fleet's queue: one Redis stream, one consumer group ``writers``.

Why each piece is there:

* At-least-once: a writer acks (XACK) only after its transaction committed. Entries it held when
  it died stay pending on its name; a (re)started consumer first re-reads its own pending entries
  (XREADGROUP from id 0), and any consumer takes over entries idle longer than
  ``reclaim_idle_seconds`` on another one (XAUTOCLAIM).
* Bounded, never lossy: nothing is trimmed by length. After acking, the stream is trimmed with
  ``XTRIM MINID`` up to the oldest entry still pending or not yet delivered (the smaller of
  XPENDING's first id and the group's last-delivered-id), so only processed entries go.
  Publishers apply back-pressure instead: they wait while the group's lag plus pending entries
  reach ``queue_max_len``.
* Redis lost the stream (restarted without persistence, or flushed): detected by a new server
  ``run_id``, or by the stream's incarnation key (a random token beside the stream, created by
  whoever finds it missing) changing, or by NOGROUP. The consumer recreates the group from id 0
  and bumps ``generation`` so the writer drops barriers it held from the lost stream; a publisher
  raises :class:`QueueReset` once, so the synchro relists everything.
* Barriers: ``all_acked_before`` is true when no entry older than the barrier is pending and the
  group has delivered past it (so no older entry is still undelivered).

The URL is the settings' queue URL; an optional ``?stream=`` query names the stream key.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import msgspec
import redis
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from common.events import Event, decode_event, encode_event
from common.queue.base import Delivery, Oldest, QueueReset

DEFAULT_STREAM = "clusterpedia:events"
GROUP = "writers"
FIELD = b"e"
DEAD_CONSUMER_IDLE_SECONDS = 3600.0
"""Consumers with nothing pending and idle this long are removed from the group (each writer
process registers under a new name, so the group would otherwise collect them forever)."""

_CLIENT_OPTIONS: dict[str, Any] = {
    "health_check_interval": 30,
    "socket_connect_timeout": 5,
    # Longer than any XREADGROUP BLOCK the writer asks for; a hung server then fails a read
    # instead of stalling the writer forever.
    "socket_timeout": 30,
}

log = logging.getLogger("clusterpedia.queue")


def split_url(url: str) -> tuple[str, str]:
    """``redis://h:p/0?stream=k`` -> (``redis://h:p/0``, ``k``)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    stream = DEFAULT_STREAM
    rest = []
    for key, value in query:
        if key == "stream":
            stream = value
        else:
            rest.append((key, value))
    return urlunsplit(parts._replace(query=urlencode(rest))), stream


def parse_id(entry_id: str | bytes) -> tuple[int, int]:
    """Stream ids order as (milliseconds, sequence)."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def _is_nogroup(exc: ResponseError) -> bool:
    msg = str(exc)
    return msg.startswith("NOGROUP") or "no such key" in msg.lower()


def incarnation_key(stream: str) -> str:
    return f"{stream}:incarnation"


def _ensure_group(client: redis.Redis, stream: str) -> None:
    try:
        client.xgroup_create(stream, GROUP, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def _group_info(groups: list[dict[str, Any]]) -> dict[str, Any] | None:
    for g in groups:
        name = g.get("name")
        if name in (GROUP, GROUP.encode()):
            return g
    return None


def _entry_id(entry_id: Any) -> str:
    return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)


def _state_of(replies: Sequence[Any]) -> tuple[str, str]:
    """(run_id, incarnation token) from the replies of INFO server, SET NX, GET."""
    info, _, token = replies[:3]
    return str(info["run_id"]), token.decode() if isinstance(token, bytes) else str(token)


class RedisConsumer:
    def __init__(
        self,
        url: str,
        name: str,
        *,
        reclaim_idle_seconds: float = 5.0,
        client: redis.Redis | None = None,
    ) -> None:
        base, self.stream = split_url(url)
        self.name = name
        self.reclaim_idle_seconds = reclaim_idle_seconds
        self._r: redis.Redis = client or redis.Redis.from_url(base, **_CLIENT_OPTIONS)
        self.generation = 0
        """Bumped whenever the queue lost its entries (Redis restarted empty): deliveries from an
        older generation are gone from the queue and their barriers must not be applied."""
        self._server = self._server_state()
        _ensure_group(self._r, self.stream)
        self._own_cursor: str | None = "0"
        self._drained = False
        self._next_reclaim = 0.0
        self._reclaim_cursor = "0-0"

    # -- helpers
    def _server_state(self) -> tuple[str, str]:
        """(server run_id, the stream's incarnation token), creating the token when missing."""
        pipe = self._r.pipeline(transaction=False)
        self._ask_server_state(pipe)
        return _state_of(pipe.execute())

    def _ask_server_state(self, pipe: Any) -> None:
        """Queue the three commands whose replies ``_state_of`` reads, first in ``pipe``."""
        key = incarnation_key(self.stream)
        pipe.info("server")
        pipe.set(key, uuid.uuid4().hex, nx=True)
        pipe.get(key)

    def _lost(self, why: str) -> None:
        log.warning("queue lost its entries (%s); recreating consumer group %s", why, GROUP)
        self.generation += 1
        self._own_cursor = None
        self._reclaim_cursor = "0-0"
        _ensure_group(self._r, self.stream)

    def _lost_group(self) -> None:
        """NOGROUP: the stream went away under an unchanged token (e.g. its key was deleted).
        A new token tells publishers, so the synchro relists what was in it."""
        token = uuid.uuid4().hex
        self._r.set(incarnation_key(self.stream), token)
        self._server = (self._server[0], token)
        self._lost("NOGROUP")

    def _check_server(self) -> None:
        self._compare_server(self._server_state())

    def _compare_server(self, state: tuple[str, str]) -> None:
        if state != self._server:
            self._server = state
            self._lost(f"redis run_id or stream incarnation changed: {state}")

    def _deliveries(self, entries: list[tuple[bytes, dict[bytes, bytes] | None]]) -> list[Delivery]:
        out: list[Delivery] = []
        dead: list[bytes] = []
        for entry_id, fields in entries:
            data = fields.get(FIELD) if fields else None
            if data is None:
                dead.append(entry_id)  # deleted from the stream while pending: nothing to apply
                continue
            try:
                event = decode_event(data)
            except msgspec.DecodeError:
                log.error("dropping undecodable queue entry %s", entry_id.decode())
                dead.append(entry_id)
                continue
            out.append(Delivery(entry_id.decode(), event))
        if dead:
            self._r.xack(self.stream, GROUP, *dead)
        return out

    # -- Consumer protocol
    def read(self, max_events: int, block_seconds: float) -> list[Delivery]:
        """Every read first compares the server's state with the last one seen (a restart that lost
        entries bumps ``generation``). The common read, new entries, sends that check and the
        XREADGROUP in one round trip: both run on one connection, so the entries come from the
        server whose state was just read (one round trip less per batch on the path of every
        change; the check used to be a round trip of its own)."""
        self._drained = False
        try:
            checked = False
            if self._own_cursor is not None:
                self._check_server()
                checked = True
                resp: Any = self._r.xreadgroup(
                    GROUP, self.name, {self.stream: self._own_cursor}, count=max_events
                )
                entries = resp[0][1] if resp else []
                self._own_cursor = entries[-1][0].decode() if len(entries) >= max_events else None
                own = self._deliveries(entries)
                if own:
                    return own
            now = time.monotonic()
            if now >= self._next_reclaim:
                if not checked:
                    self._check_server()
                    checked = True
                claimed = self._reclaim(max_events)
                if claimed:
                    return claimed
            block = max(1, int(block_seconds * 1000)) if block_seconds > 0 else None
            pipe = self._r.pipeline(transaction=False)
            if not checked:
                self._ask_server_state(pipe)
            pipe.xreadgroup(GROUP, self.name, {self.stream: ">"}, count=max_events, block=block)
            replies = pipe.execute(raise_on_error=False)
            generation = self.generation
            if not checked:
                for reply in replies[:3]:
                    if isinstance(reply, Exception):
                        raise reply
                self._compare_server(_state_of(replies[:3]))
            resp = replies[-1]
            if isinstance(resp, Exception):
                if self.generation != generation and isinstance(resp, ResponseError) and _is_nogroup(resp):
                    return []  # a restarted server without the group: just recreated, read again
                raise resp
            entries = resp[0][1] if resp else []
            self._drained = len(entries) < max_events
            return self._deliveries(entries)
        except ResponseError as exc:
            if not _is_nogroup(exc):
                raise
            self._lost_group()
            return []

    def drained(self) -> bool:
        return self._drained

    def _reclaim(self, max_events: int) -> list[Delivery]:
        min_idle = int(self.reclaim_idle_seconds * 1000)
        next_start, entries, _deleted = self._r.xautoclaim(
            self.stream, GROUP, self.name, min_idle, self._reclaim_cursor, count=max_events
        )
        self._reclaim_cursor = next_start.decode() if isinstance(next_start, bytes) else str(next_start)
        if self._reclaim_cursor == "0-0":
            # Scanned the whole pending list: look again in a while, and forget idle consumers.
            self._next_reclaim = time.monotonic() + max(self.reclaim_idle_seconds / 2, 0.05)
            self._forget_dead_consumers()
        out = self._deliveries(entries)
        if out:
            log.info("reclaimed %d entries idle on other consumers", len(out))
        return out

    def _forget_dead_consumers(self) -> None:
        for c in self._r.xinfo_consumers(self.stream, GROUP):
            name = c["name"].decode() if isinstance(c["name"], bytes) else c["name"]
            if name != self.name and c["pending"] == 0 and c["idle"] > DEAD_CONSUMER_IDLE_SECONDS * 1000:
                self._r.xgroup_delconsumer(self.stream, GROUP, name)

    def ack(self, deliveries: Sequence[Delivery]) -> None:
        if not deliveries:
            return
        pipe = self._r.pipeline(transaction=True)
        pipe.xack(self.stream, GROUP, *[d.entry_id for d in deliveries])
        pipe.xinfo_groups(self.stream)
        pipe.xpending(self.stream, GROUP)
        try:
            _, groups, pending = pipe.execute()
        except ResponseError as exc:
            if _is_nogroup(exc):
                return  # the stream is gone; there is nothing to ack or trim
            raise
        self._trim(groups, pending)

    def _trim(self, groups: list[dict[str, Any]], pending: dict[str, Any]) -> None:
        group = _group_info(groups)
        if group is None:
            return
        last = group["last-delivered-id"]
        floor = parse_id(last)
        if floor == (0, 0):
            return
        if pending.get("pending") and pending.get("min") is not None:
            floor = min(floor, parse_id(pending["min"]))
        # Entries strictly below the floor are all delivered and acked (the floor itself stays).
        self._r.xtrim(self.stream, minid=f"{floor[0]}-{floor[1]}", approximate=False)

    def all_acked_before(self, delivery: Delivery) -> bool:
        pipe = self._r.pipeline(transaction=True)
        pipe.xpending_range(self.stream, GROUP, "-", "(" + delivery.entry_id, count=1)
        pipe.xinfo_groups(self.stream)
        try:
            older_pending, groups = pipe.execute()
        except ResponseError as exc:
            if _is_nogroup(exc):
                self._lost_group()
                return False
            raise
        group = _group_info(groups)
        if group is None or older_pending:
            return False
        return parse_id(group["last-delivered-id"]) >= parse_id(delivery.entry_id)

    def depth(self) -> tuple[int, int]:
        try:
            group = _group_info(self._r.xinfo_groups(self.stream))
        except ResponseError:
            return 0, 0
        if group is None:
            return 0, 0
        lag = group.get("lag")
        pending = int(group["pending"])
        if lag is None:
            lag = max(0, int(self._r.xlen(self.stream)) - pending)
        return int(lag), pending

    def close(self) -> None:
        self._r.close()


class RedisPublisher:
    """Async publisher (the synchro's event loop); one instance per process is enough."""

    def __init__(self, url: str, *, max_len: int = 100_000, client: aioredis.Redis | None = None) -> None:
        base, self.stream = split_url(url)
        self.max_len = max_len
        self._r: aioredis.Redis = client or aioredis.Redis.from_url(base, **_CLIENT_OPTIONS)
        self._server: tuple[str, str] | None = None  # (run_id, incarnation token)
        self._room = False
        """The last publish saw the writers' backlog below half of ``max_len`` (see ``publish``)."""

    async def _ensure_group(self) -> None:
        try:
            await self._r.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _unprocessed(self, groups: Any) -> int | None:
        """Lag plus pending of the writers' group; None when the group is missing."""
        if isinstance(groups, ResponseError):
            if _is_nogroup(groups):
                return None
            raise groups
        group = _group_info(groups)
        if group is None:
            return None
        lag = group.get("lag")
        pending = int(group["pending"])
        if lag is None:
            return int(await self._r.xlen(self.stream))
        return int(lag) + pending

    async def publish(self, events: Sequence[Event]) -> str | None:
        """Append ``events`` (see ``Publisher``). ``publish([])`` only checks for a reset: an idle
        synchro probes with it so that a Redis restart is noticed without new events.

        Every publish reads the server's state (a restart that lost entries raises ``QueueReset``)
        and the writers' backlog (at ``max_len`` it waits: back-pressure). When the previous
        publish saw the backlog below half of ``max_len``, the entries go in the same round trip as
        those reads, one round trip instead of two on the path of every change; the backlog can
        then pass half of ``max_len`` by one batch, and the next publish checks before it appends.
        Should that round trip find a reset, its entries are in the restarted server's stream:
        harmless (every write is guarded by resourceVersion and epoch), and the relist that
        ``QueueReset`` starts sends everything again."""
        key = incarnation_key(self.stream)
        delay = 0.01
        while True:
            eager = bool(events) and self._room
            pipe = self._r.pipeline(transaction=False)
            pipe.info("server")
            pipe.set(key, uuid.uuid4().hex, nx=True)
            pipe.get(key)
            pipe.xinfo_groups(self.stream)
            if eager:
                for event in events:
                    pipe.xadd(self.stream, {FIELD: encode_event(event)})
            info, _, token, groups, *ids = await pipe.execute(raise_on_error=False)
            for reply in (info, token, *ids):
                if isinstance(reply, Exception):
                    raise reply
            state = (str(info["run_id"]), token.decode() if isinstance(token, bytes) else str(token))
            if self._server is None:
                self._server = state
            elif state != self._server:
                self._server = state
                self._room = False
                await self._ensure_group()
                raise QueueReset(f"redis lost the queue (run_id, incarnation now {state}); relist")
            if not events:
                return None
            unprocessed = await self._unprocessed(groups)
            if unprocessed is None:
                await self._ensure_group()  # it starts at 0: entries appended above are in it
                if not eager:
                    continue
            if eager:
                self._room = (unprocessed or 0) + len(events) < self.max_len // 2
                return _entry_id(ids[-1])
            if unprocessed is not None and unprocessed < self.max_len:
                break
            self._room = False
            await asyncio.sleep(delay)  # back-pressure: writers are behind
            delay = min(delay * 2, 0.5)
        pipe = self._r.pipeline(transaction=False)
        for event in events:
            pipe.xadd(self.stream, {FIELD: encode_event(event)})
        ids = await pipe.execute()
        self._room = unprocessed + len(events) < self.max_len // 2
        return _entry_id(ids[-1])

    async def oldest_unacked(self) -> Oldest | None:
        """The smaller of the oldest pending entry (XPENDING) and the first entry past the group's
        last-delivered-id; a stream id's first part is when Redis appended it (ms)."""
        pipe = self._r.pipeline(transaction=False)
        pipe.xinfo_groups(self.stream)
        pipe.xpending(self.stream, GROUP)
        groups, pending = await pipe.execute(raise_on_error=False)
        if isinstance(groups, ResponseError) or isinstance(pending, ResponseError):
            return None  # no stream or group yet: nothing appended since it went
        group = _group_info(groups)
        if group is None:
            return None
        candidates: list[tuple[int, int]] = []
        oldest_pending: str | bytes | None = pending.get("min") if pending.get("pending") else None
        if oldest_pending is not None:
            candidates.append(parse_id(oldest_pending))
        last = group["last-delivered-id"]
        last = last.decode() if isinstance(last, bytes) else str(last)
        undelivered = await self._r.xrange(self.stream, min="(" + last, count=1)
        first = undelivered[0][0] if undelivered else None
        if first is not None:
            candidates.append(parse_id(first))
        if not candidates:
            return None
        ms, seq = min(candidates)
        return Oldest(f"{ms}-{seq}", ms / 1000)

    async def close(self) -> None:
        await self._r.aclose()
