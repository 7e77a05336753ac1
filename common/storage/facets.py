"""Facets: a few well-known fields of every stored object kept beside it, read without the object.

``status.phase`` (pods, namespaces, persistent volumes and claims) and ``spec.nodeName`` (pods) are
the classic group-bys (``groupBy=status.phase``) and field selectors (``kubectl get pods
--field-selector spec.nodeName=node-1,status.phase=Running``). Reading them from the JSON of each
object parses every object of the resource (1M pods: ~10 s on PostgreSQL, ~60 s on SQLite); the
writer therefore extracts them once per write into indexed columns (``resources.phase`` and
``resources.node_name`` on the SQL stores, the row in memory) and the searches read those.

A facet holds the field's value exactly as a field selector compares it (``grouping.json_text``)
when that is cheap to keep exact on every store: ``""`` for a missing value or a JSON null, the
string itself for a short plain string. Any other value (a number, an object, a string longer than
``FACET_LENGTH``, one with a NUL, a trailing space or an unpaired surrogate) leaves the facet NULL
(``None``), and the searches read that object's JSON as before: the answers never differ from the
JSON path's. Objects stored before the facets existed are NULL until the store upgrade fills them
(``common.storage.sql.engine``), and read the same way meanwhile.

The set is small on purpose: each facet is a column and an index that every write pays for.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

FACET_PATHS: Mapping[tuple[str, ...], str] = {
    ("status", "phase"): "phase",
    ("spec", "nodeName"): "node_name",
}
"""JSON path -> the column (or memory row field) that holds its facet."""

FACET_LENGTH = 253
"""Longest value a facet holds (a node name is a DNS subdomain: 253); longer ones stay NULL."""

Facets = tuple[str | None, str | None]
"""The facets of one object, in ``FACET_PATHS`` order."""

NO_FACETS: Facets = ("", "")
"""An object with neither field (a tombstone inserted without its object: ``{}``)."""


class _Status(msgspec.Struct):
    phase: Any = None


class _Spec(msgspec.Struct):
    nodeName: Any = None


class _Faceted(msgspec.Struct):
    status: _Status | None = None
    spec: _Spec | None = None


_decoder = msgspec.json.Decoder(_Faceted)


def facet_value(value: Any) -> str | None:
    """The facet of a JSON value (already decoded): "" for missing or null, a plain short string
    as it is, None for anything a column could not hold with the JSON path's exact meaning."""
    if value is None:
        return ""
    if not isinstance(value, str):
        return None
    if len(value) > FACET_LENGTH or "\x00" in value or value.endswith(" "):
        # MySQL/MariaDB compare VARCHARs ignoring trailing spaces (PAD SPACE); the JSON text does not
        return None
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:  # an unpaired surrogate (\ud800) that no text column holds
            return None
    return value


def facets_of(raw: bytes | str) -> Facets:
    """The facets of a stored object's JSON; (None, None) when it does not decode (the searches then
    read its JSON, as they would without facets)."""
    try:
        view = _decoder.decode(raw)
    except msgspec.DecodeError:
        # status or spec not an object (or not JSON at all): read the fields one by one
        try:
            obj = msgspec.json.decode(raw)
        except msgspec.DecodeError:
            return (None, None)
        return tuple(  # type: ignore[return-value]
            facet_value(_at(obj, path)) for path in FACET_PATHS
        )
    status, spec = view.status, view.spec
    return (
        facet_value(status.phase if status is not None else None),
        facet_value(spec.nodeName if spec is not None else None),
    )


def _at(obj: Any, path: tuple[str, ...]) -> Any:
    for seg in path:
        obj = obj.get(seg) if isinstance(obj, dict) else None
    return obj
