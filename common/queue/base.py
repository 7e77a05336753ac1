"""The queue interface: at-least-once delivery, ack after commit, barriers, back-pressure.

Publishers are asyncio code (the synchro holds hundreds of watches on one loop); consumers are
plain blocking code (a writer is a loop around a database transaction).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol

from common.events import Event


class QueueReset(Exception):
    """The queue lost entries it had accepted (e.g. Redis restarted without persistence).

    Publishers must resynchronise from scratch (relist every resource: a new epoch), because
    events published before the reset may never reach a writer.
    """


class Delivery(NamedTuple):
    """One queue entry handed to a consumer; ``entry_id`` orders entries within the queue."""

    entry_id: str
    event: Event


class Oldest(NamedTuple):
    """The oldest entry no consumer has acked yet: its id and when it was appended (Unix seconds,
    by the queue's clock)."""

    entry_id: str
    queued_at: float


class Publisher(Protocol):
    async def publish(self, events: Sequence[Event]) -> str | None:
        """Append events in order; the id of the last one (None for no events). Waits
        (back-pressure) while the queue holds more unprocessed entries than its bound; never drops
        them. Raises QueueReset, see there."""
        ...

    async def oldest_unacked(self) -> Oldest | None:
        """The oldest entry not yet acked (delivered or not), None when every entry is: how far
        the writers are behind (the synchro reports it per cluster, see synchro/publishing.py)."""
        ...

    async def close(self) -> None: ...


class Consumer(Protocol):
    def read(self, max_events: int, block_seconds: float) -> list[Delivery]:
        """Up to ``max_events`` entries for this consumer: first its own unacked ones (after a
        restart), then entries reclaimed from dead consumers, then new ones. Waits at most
        ``block_seconds`` when there is nothing."""
        ...

    def drained(self) -> bool:
        """True when the last read returned every new entry the queue held for this consumer at
        that moment (it read new entries and got fewer than asked); False after a read of own or
        reclaimed entries, which may leave new ones behind. The writer commits a lone entry that
        drained the queue at once, without another look (``writer.batching.gather``)."""
        ...

    def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Mark entries processed (after their transaction committed); they may then be trimmed."""
        ...

    def all_acked_before(self, delivery: Delivery) -> bool:
        """True when every entry queued before ``delivery`` has been acked by some consumer.

        Barrier events (``ListDone``) are applied only then: all upserts of that list are
        committed, whichever writer got them.
        """
        ...

    def depth(self) -> tuple[int, int]:
        """(entries not yet delivered, entries delivered but not acked), for metrics."""
        ...

    def close(self) -> None: ...
