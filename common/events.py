"""Wire types between synchro workers and writer workers.

Every event is one msgspec Struct (a tagged union), encoded once (msgpack) by the synchro and
decoded once by the writer. The Kubernetes object inside is the raw JSON bytes from the member
cluster's response (a msgpack ``bin``), never re-parsed or re-encoded on the way to the store.
"""

from __future__ import annotations

import msgspec


class Upsert(msgspec.Struct, frozen=True, tag="u", array_like=True):
    """An object exists with this content (list item, ADDED or MODIFIED watch event).

    ``namespace`` is "" for cluster-scoped objects.
    ``epoch`` is the resourceVersion of the list this object's sync generation started from; the
    writer stores it so that :class:`ListDone` can purge rows that the newest list did not return.
    """

    cluster: str
    group: str
    version: str
    resource: str
    kind: str
    namespace: str
    name: str
    uid: str
    resource_version: int
    epoch: int
    owner_uid: str
    """uid of the controller ownerReference ("" when none): owner queries use it."""
    created_at: str
    """metadata.creationTimestamp as sent by the member cluster (RFC 3339), "" when unset."""
    object: bytes
    """The object as stored and served: managedFields stripped, cluster annotation set."""


class Delete(msgspec.Struct, frozen=True, tag="d", array_like=True):
    """A DELETED watch event; ``resource_version`` is the deletion's revision (a tombstone guard)."""

    cluster: str
    group: str
    version: str
    resource: str
    namespace: str
    name: str
    resource_version: int


class ListDone(msgspec.Struct, frozen=True, tag="l", array_like=True):
    """A (re)list of one resource of one cluster has been fully emitted.

    Rows of ``cluster``/``group``/``resource`` whose epoch is older than ``epoch`` were not in the
    list, so they were deleted while nobody watched (410 Gone, synchro restart): the writer turns
    them into tombstones. It is a barrier: the writer applies it only once every entry queued
    before it has been committed.
    """

    cluster: str
    group: str
    version: str
    resource: str
    epoch: int


class PurgeCluster(msgspec.Struct, frozen=True, tag="p", array_like=True):
    """Remove every row of a cluster (its PediaCluster was deleted), or of one resource of it."""

    cluster: str
    group: str | None = None
    resource: str | None = None


class ResourceType(msgspec.Struct, frozen=True, tag="t", array_like=True):
    """What the API tier needs to serve one synced resource of one cluster (from its discovery).

    ``printer_columns`` is the CRD's ``additionalPrinterColumns`` as JSON bytes (``b""`` for
    built-in kinds, whose columns the API tier knows).
    """

    cluster: str
    group: str
    version: str
    resource: str
    kind: str
    namespaced: bool
    short_names: list[str]
    verbs: list[str]
    storage_version: str
    printer_columns: bytes = b""


Event = Upsert | Delete | ListDone | PurgeCluster | ResourceType

_encoder = msgspec.msgpack.Encoder()
_decoder: msgspec.msgpack.Decoder[Event] = msgspec.msgpack.Decoder(Event)


def encode_event(event: Event) -> bytes:
    """Encode for the queue (msgpack; the raw object bytes are embedded as-is)."""
    return _encoder.encode(event)


def decode_event(data: bytes) -> Event:
    return _decoder.decode(data)
