"""Gather a batch of queue deliveries, and turn it into the steps the writer applies, in queue order.

Gathering (:func:`gather`) is latency-first when idle and batch-first under load: after the first
delivery, the batch takes only what the queue already holds (reads that do not wait) and is
committed as soon as a read comes back empty; a lone change that emptied the queue is committed at
once, without that look. It does not wait for company. That wait was most of the ~100 ms a change
took to become visible at 20 changes/s (bench/notes.md, issue 16): on Redis it was a blocking read
of 50 ms, and Redis serves the timeouts of blocking reads on its ``hz`` timer (10/s by default), so
it lasted ~100 ms. Under load, entries pile up while the previous batch commits, so the reads keep
returning some and the batch grows, up to ``batch_max_events`` or for at most
``batch_max_wait_seconds``.

A batch is cut into steps at the events that cannot share a transaction with their neighbours:

* ``Writes``: upserts, deletes and resource types, applied in one transaction. Several events of
  one object collapse into the one with the highest resourceVersion (a statement cannot touch one
  row twice in PostgreSQL, and the guards would discard the older ones anyway); a delete wins
  over an upsert of the same revision, and of two upserts of one revision the later epoch wins.
* ``Barrier``: a ``ListDone``; everything before it in the batch is committed first.
* ``Purge``: a ``PurgeCluster``, also a barrier, run in chunks of its own transactions.

Deliveries are ordered by entry id first: an entry reclaimed from a dead writer may be older than
entries read before it in the same batch, and committing it first lets a barrier behind it pass.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from common.events import Delete, ListDone, PurgeCluster, ResourceType, Upsert
from common.queue import Delivery, entry_order
from common.types import ObjectKey

Read = Callable[[int, float], list[Delivery]]
"""``Consumer.read``: (max_events, block_seconds) -> deliveries."""


def gather(
    read: Read,
    *,
    block_seconds: float,
    max_events: int,
    max_wait_seconds: float,
    drained: Callable[[], bool] = lambda: False,
    clock: Callable[[], float] = time.monotonic,
) -> list[Delivery]:
    """One batch: wait up to ``block_seconds`` for a first delivery, then add what the queue holds
    already, read after read, until a read finds nothing, ``max_events`` are in or
    ``max_wait_seconds`` have passed since the first delivery (empty when nothing came).

    A first read that brought one entry and ``drained`` the queue (``Consumer.drained``) is the
    idle case: that entry is the batch, without the look that would find nothing (a round trip
    to the queue on the path of every lone change). Two or more entries at once mean changes are
    arriving faster than batches commit: the batch then grows as above."""
    batch = read(max_events, block_seconds)
    if not batch or (len(batch) == 1 and drained()):
        return batch
    deadline = clock() + max_wait_seconds
    while len(batch) < max_events and clock() < deadline:
        more = read(max_events - len(batch), 0.0)
        if not more:
            break
        batch.extend(more)
    return batch


@dataclass
class Writes:
    deliveries: list[Delivery] = field(default_factory=list)
    objects: dict[ObjectKey, Upsert | Delete] = field(default_factory=dict)
    resource_types: dict[tuple[str, str, str], ResourceType] = field(default_factory=dict)

    def add(self, delivery: Delivery) -> None:
        self.deliveries.append(delivery)
        event = delivery.event
        if isinstance(event, ResourceType):
            self.resource_types[(event.cluster, event.group, event.resource)] = event
        elif isinstance(event, Upsert | Delete):
            key = ObjectKey(event.cluster, event.group, event.resource, event.namespace, event.name)
            held = self.objects.get(key)
            if held is None or _supersedes(event, held):
                self.objects[key] = event

    def upserts(self) -> list[Upsert]:
        """Sorted by key: concurrent writers then lock rows in the same order."""
        return [e for _, e in sorted(self.objects.items()) if isinstance(e, Upsert)]

    def deletes(self) -> list[Delete]:
        return [e for _, e in sorted(self.objects.items()) if isinstance(e, Delete)]


def _supersedes(new: Upsert | Delete, held: Upsert | Delete) -> bool:
    if new.resource_version != held.resource_version:
        return new.resource_version > held.resource_version
    if isinstance(held, Delete):
        return False
    if isinstance(new, Delete):
        return True
    return new.epoch > held.epoch


@dataclass(frozen=True)
class Barrier:
    delivery: Delivery
    event: ListDone


@dataclass(frozen=True)
class Purge:
    delivery: Delivery
    event: PurgeCluster


Step = Writes | Barrier | Purge


def plan(deliveries: Sequence[Delivery]) -> list[Step]:
    """The steps for one batch, in queue order (duplicated entry ids are kept once)."""
    steps: list[Step] = []
    writes: Writes | None = None
    seen: set[str] = set()
    for delivery in sorted(deliveries, key=lambda d: entry_order(d.entry_id)):
        if delivery.entry_id in seen:
            continue
        seen.add(delivery.entry_id)
        event = delivery.event
        if isinstance(event, ListDone | PurgeCluster):
            if writes is not None:
                steps.append(writes)
                writes = None
            steps.append(Barrier(delivery, event) if isinstance(event, ListDone) else Purge(delivery, event))
        else:
            if writes is None:
                writes = Writes()
            writes.add(delivery)
    if writes is not None:
        steps.append(writes)
    return steps
