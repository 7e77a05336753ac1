"""Group-by counts: how many objects a search matches per cluster, namespace, phase, label ...

A search with ``Search.group_by`` is answered by ``StoreReader.count_groups`` instead of a page: one
``GroupCount`` per distinct combination of the group fields' values among the matching objects,
computed by the store (``GROUP BY`` on the SQL stores, a counter over the matches in memory) with
every condition of the search applied, the caller's permissions (``Search.visibility``) included.

A group field is a column of the store (``cluster``, ``namespace``, ``name``, ``group``,
``resource``, ``kind``) or a JSON path of the object (``status.phase``,
``metadata.labels['app']``). A path's value reads as a field selector compares it: JSON text
(``3``, ``true``, ``Running``) and ``""`` for a missing value or a JSON null, so each group's count
is the count of the list with the field selector ``path=value``. The types live here (and not in
``query``) so that ``query``, the backends and the API tier share them without a cycle; nothing
here reads a backend.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

GROUP_COLUMNS: Mapping[str, str] = {
    "cluster": "cluster",
    "namespace": "namespace",
    "name": "name",
    "group": "api_group",
    "resource": "resource",
    "kind": "kind",
}
"""Group field names answered from columns of the store -> the column (``group``: the API group,
"" for the core group)."""

COLUMN_PATHS: Mapping[tuple[str, ...], str] = {
    ("metadata", "name"): "name",
    ("metadata", "namespace"): "namespace",
}
"""JSON paths whose value is also a column (read from the column, which is indexed)."""


@dataclass(frozen=True, slots=True)
class GroupField:
    """One field a search groups by: a column of the store (``column``) or a JSON path of the
    object (``path``). ``name`` is how the API tier shows it (the Table's column, the JSON key)."""

    name: str
    column: str = ""
    path: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class GroupCount:
    """The objects of one group: the group fields' values (in ``Search.group_by`` order) and how
    many objects have them."""

    values: tuple[str, ...]
    count: int


def json_text(value: Any) -> str:
    """A JSON value as the stores group and compare it: strings as they are, other scalars as JSON
    text, a missing value or JSON null as ""."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return msgspec.json.encode(value).decode()


def path_value(obj: Any, path: tuple[str, ...]) -> str:
    """The value at ``path`` of a decoded object, as :func:`json_text`."""
    for seg in path:
        obj = obj.get(seg) if isinstance(obj, dict) else None
    return json_text(obj)


def sorted_groups(counts: Iterable[tuple[tuple[str, ...], int]], max_groups: int) -> list[GroupCount]:
    """The groups in the order every store answers them (by their values, in code point order,
    which is byte order for the ASCII of names); ``TooManyGroups`` beyond ``max_groups``."""
    out = [GroupCount(tuple(values), int(n)) for values, n in counts]
    if len(out) > max_groups:
        raise TooManyGroups(max_groups)
    out.sort(key=lambda g: g.values)
    return out


class TooManyGroups(ValueError):
    """More groups than the bound; the stores raise ``StorageRejected`` with this message."""

    def __init__(self, max_groups: int) -> None:
        super().__init__(
            f"the search has more than {max_groups} groups: narrow it (clusters, namespaces, selectors)"
            " or group by fewer fields"
        )
        self.max_groups = max_groups
