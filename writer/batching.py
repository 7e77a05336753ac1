"""Turn a batch of queue deliveries into the steps the writer applies, in queue order.

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

from collections.abc import Sequence
from dataclasses import dataclass, field

from common.events import Delete, ListDone, PurgeCluster, ResourceType, Upsert
from common.queue import Delivery, entry_order
from common.types import ObjectKey


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
