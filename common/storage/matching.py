"""Every search condition as a predicate on one row, with the meaning the SQL builders give it
(``common.storage.sql.selects`` is the reference: ``!=``/``notin`` labels match objects without the
label, field values compare as JSON text with a missing value as "", names in byte order).

The memory backend filters its rows with it, and the API tier's watchers filter the change feed
with it (a change is matched once per watcher, so a watch costs the store nothing per watcher).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import msgspec

from common.storage import relations
from common.storage.base import StorageRejected
from common.storage.query import FieldRequirement, LabelRequirement, Operator, Search


class _Metadata(msgspec.Struct):
    labels: dict[str, Any] = {}


class _Labelled(msgspec.Struct):
    metadata: _Metadata = msgspec.field(default_factory=_Metadata)


_labels_decoder = msgspec.json.Decoder(_Labelled)
NO_LABELS: Mapping[str, str] = {}


def labels_of(raw: bytes) -> Mapping[str, str]:
    """The string labels of a stored object (other values are not labels; the SQL stores skip them
    too). Raises msgspec.DecodeError when ``raw`` is not a JSON object of that shape."""
    labels = _labels_decoder.decode(raw).metadata.labels
    return {k: v for k, v in labels.items() if isinstance(v, str)} if labels else NO_LABELS


class MatchRow(Protocol):
    """What a predicate reads of a row (the memory backend's rows and ``ChangeRow`` qualify)."""

    @property
    def cluster(self) -> str: ...
    @property
    def api_group(self) -> str: ...
    @property
    def resource(self) -> str: ...
    @property
    def namespace(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def uid(self) -> str: ...
    @property
    def owner_uid(self) -> str: ...
    @property
    def created_at(self) -> dt.datetime | None: ...
    @property
    def deleted(self) -> bool: ...
    @property
    def labels(self) -> Mapping[str, str]: ...
    @property
    def object(self) -> bytes: ...


def _in_values(value: str | None, op: Operator, values: tuple[str, ...]) -> bool:
    """``=``, ``in``, ``!=``, ``notin``: a missing value (None) matches only the negations."""
    if op == Operator.EQUALS:
        return value == values[0]
    if op == Operator.IN:
        return value in values
    if op == Operator.NOT_EQUALS:
        return value != values[0]
    return value not in values


def _label_matches(labels: Mapping[str, str], req: LabelRequirement) -> bool:
    value = labels.get(req.key)
    if req.operator == Operator.EXISTS:
        return value is not None
    if req.operator == Operator.DOES_NOT_EXIST:
        return value is None
    return _in_values(value, req.operator, req.values)


_COLUMN_PATHS: dict[tuple[str, ...], Callable[[MatchRow], str]] = {
    ("metadata", "name"): lambda r: r.name,
    ("metadata", "namespace"): lambda r: r.namespace,
    ("metadata", "uid"): lambda r: r.uid,
}


def _json_text(value: Any) -> str:
    """A JSON value as the SQL stores compare it: strings as they are, others as JSON text, a
    missing value or JSON null as ""."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return msgspec.json.encode(value).decode()


def _field_text(row: MatchRow, path: tuple[str, ...], parsed: dict[int, Any]) -> str:
    column = _COLUMN_PATHS.get(path)
    if column is not None:
        return column(row)
    obj = parsed.get(id(row))
    if obj is None:
        obj = parsed[id(row)] = msgspec.json.decode(row.object)
    for seg in path:
        obj = obj.get(seg) if isinstance(obj, dict) else None
    return _json_text(obj)


def _field_matches(text: str, req: FieldRequirement) -> bool:
    if req.operator in (Operator.EXISTS, Operator.DOES_NOT_EXIST):
        raise StorageRejected(
            f"field selector on {'.'.join(req.path)}: operator {req.operator} is not supported"
        )
    return _in_values(text, req.operator, req.values)


def owners(search: Search, rows: Sequence[MatchRow]) -> set[str]:
    """The uids whose objects a search's owner condition asks for (see ``selects._owner_condition``)."""
    cluster = search.one_cluster
    live = [r for r in rows if not r.deleted]
    if search.owner_uid:
        uids = {search.owner_uid}
    else:
        gr = search.owner_gr
        uids = {
            r.uid
            for r in live
            if r.name == search.owner_name
            and r.cluster == cluster
            and (gr is None or (r.api_group, r.resource) == (gr.group, gr.resource))
        }
    for _ in range(search.owner_seniority):
        uids = {r.uid for r in live if r.owner_uid in uids and (not cluster or r.cluster == cluster)}
    return uids


def condition(
    search: Search, owner_uids: set[str] | None, *, tombstones: bool = False
) -> Callable[[MatchRow], bool]:
    """One predicate for every filter of ``search`` (no paging); tombstones never match unless
    ``tombstones`` (a watcher matches a deleted object's last state). ``owner_uids``: the uids an
    owner condition stands for (:func:`owners`), None without one."""
    if (several := relations.alternatives(search)) is not None:
        # a resolved relation answered in several clusters or namespaces: the union of plain searches
        tests = [condition(alt, owner_uids, tombstones=tombstones) for alt in several]
        return lambda r: any(t(r) for t in tests)
    parsed: dict[int, Any] = {}  # rows decoded for field selectors, by id, during this search

    def test(r: MatchRow) -> bool:
        if r.deleted and not tombstones:
            return False
        if search.single_cluster and r.cluster != search.single_cluster:
            return False
        if search.namespace and r.namespace != search.namespace:
            return False
        if not (
            search.clusters.allows(r.cluster)
            and search.namespaces.allows(r.namespace)
            and search.names.allows(r.name)
        ):
            return False
        if search.since is not None and (r.created_at is None or r.created_at < search.since):
            return False
        if search.before is not None and (r.created_at is None or r.created_at >= search.before):
            return False
        if owner_uids is not None and r.owner_uid not in owner_uids:
            return False
        if search.fuzzy_name and search.fuzzy_name not in r.name:
            return False
        if not all(_label_matches(r.labels, req) for req in search.labels):
            return False
        if search.visibility is not None and not any(
            g.cluster == r.cluster
            and g.group == r.api_group
            and g.resource == r.resource
            and g.allows(r.namespace, r.name)
            for g in search.visibility
        ):
            return False
        return all(_field_matches(_field_text(r, req.path, parsed), req) for req in search.fields)

    return test
