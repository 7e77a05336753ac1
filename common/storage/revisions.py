"""The store's global revision on served objects (DESIGN section 9).

Every write of a row takes the next value of one store-wide counter; an object's
``metadata.resourceVersion`` as served is its row's revision (the member's own resourceVersion stays
on the object as the annotation :data:`MEMBER_RV_ANNOTATION`, set by the synchro). The revision is
written into the object when it is read (:func:`stamp`), never into the stored bytes, so a row that
only moves its epoch keeps its revision and a store upgraded from before revisions serves consistent
values at once.

The synchro writes ``metadata`` first and ``resourceVersion`` first in it
(``{"metadata":{"resourceVersion":"…"``), so stamping is a splice of the prefix; any other object is
decoded to its top level and metadata (slices, not parsed further) and re-encoded.
"""

from __future__ import annotations

import msgspec

from common.types import MEMBER_RV_ANNOTATION

__all__ = ["MEMBER_RV_ANNOTATION", "stamp"]

PREFIX = b'{"metadata":{"resourceVersion":"'

_fields = msgspec.json.Decoder(dict[str, msgspec.Raw])
_encoder = msgspec.json.Encoder()


def stamp(raw: bytes, revision: int) -> bytes:
    """``raw`` with ``metadata.resourceVersion`` set to ``revision`` (``raw`` unchanged when it is not
    a JSON object with an object ``metadata``: the store never refuses to serve what it holds)."""
    value = str(revision).encode()
    if raw.startswith(PREFIX):
        end = raw.find(b'"', len(PREFIX))
        if end > 0 and raw[len(PREFIX) : end].isdigit():
            return PREFIX + value + raw[end:]
    try:
        obj = _fields.decode(raw)
        meta_raw = obj.get("metadata")
        meta = _fields.decode(meta_raw) if meta_raw is not None else {}
    except msgspec.DecodeError:
        return raw
    meta["resourceVersion"] = msgspec.Raw(b'"' + value + b'"')
    obj["metadata"] = msgspec.Raw(_encoder.encode(meta))
    return _encoder.encode(obj)
