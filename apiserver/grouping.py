"""Parses the group-by search condition (pure): ``groupBy`` (URL) and ``search.clusterpedia.io/group-by``.

Two spellings, one meaning (docs/search.md, "Group-by counts"):

- URL query ``groupBy=cluster,namespace,status.phase,metadata.labels['app.kubernetes.io/name']``:
  comma-separated group fields, in the order of the output's columns; any JSON path a field
  selector takes (quoted keys in brackets included).
- Label selector ``search.clusterpedia.io/group-by=cluster`` or ``search.clusterpedia.io/group-by in
  (cluster,status.phase)``: the only way plain kubectl can carry it. A label value cannot hold ``[``,
  ``'`` or ``/``, so there a field is a column name or a path of dotted segments
  (``spec.nodeName``, ``metadata.labels.app``); a label key with dots or a slash needs the URL form.
  kubectl keeps the order of an ``in`` set, and so do we.

A field is a column of the store (``cluster``, ``namespace``, ``name``, ``group``, ``resource``,
``kind``: the names a JSON path cannot take, since no Kubernetes object has such a top-level field
whose value would differ) or a JSON path, validated by the field selectors' grammar
(``apiserver.selectors.parse_json_path``). At most ``MAX_GROUP_FIELDS`` fields, none twice.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from apiserver.selectors import parse_json_path
from common.errors import BadRequest
from common.storage.grouping import GROUP_COLUMNS, GroupField

GROUP_BY_PARAM = "groupBy"
GROUP_BY_LABEL = "group-by"
"""The label selector key after ``search.clusterpedia.io/``."""
MAX_GROUP_FIELDS = 8

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_LABEL_FORM = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_][A-Za-z0-9_-]*)*")


def field_name(path: tuple[str, ...]) -> str:
    """The canonical spelling of a path: dotted identifiers, other segments as ``['key']``."""
    out = ""
    for seg in path:
        if _IDENTIFIER.fullmatch(seg):
            out += f".{seg}" if out else seg
        else:
            out += f"['{seg}']"
    return out


def group_field(text: str, origin: str) -> GroupField:
    """One group field; BadRequest for anything else."""
    item = text.strip()
    if not item:
        raise BadRequest(f"group-by ({origin}): empty group field")
    column = GROUP_COLUMNS.get(item)
    if column is not None:
        return GroupField(item, column=column)
    if origin == "label selector" and not _LABEL_FORM.fullmatch(item):
        raise BadRequest(
            f'group-by (label selector): invalid group field "{item}": a label value takes a column'
            f" ({', '.join(GROUP_COLUMNS)}) or a path of dotted names such as status.phase; use the URL"
            " query groupBy for a path with [...] (e.g. groupBy=metadata.labels['app.kubernetes.io/name'])"
        )
    try:
        path = parse_json_path(item)
    except BadRequest as e:
        raise BadRequest(
            f'group-by ({origin}): invalid group field "{item}": expected one of'
            f" {', '.join(GROUP_COLUMNS)} or a JSON path such as status.phase or metadata.labels['app']"
        ) from e
    return GroupField(field_name(path), path=path)


def _split_fields(text: str) -> list[str]:
    """``a,b['x,y'],c`` -> items, splitting on commas outside brackets."""
    out: list[str] = []
    depth, start = 0, 0
    for i, c in enumerate(text):
        if c == "[":
            depth += 1
        elif c == "]":
            depth = max(0, depth - 1)
        elif c == "," and depth == 0:
            out.append(text[start:i])
            start = i + 1
    out.append(text[start:])
    return out


def parse_group_by(values: Iterable[str], origin: str) -> tuple[GroupField, ...]:
    """The group fields of the URL query's ``groupBy`` (``origin`` "query parameter": each value is
    a comma-separated list) or of the label selector's ``in`` set (``origin`` "label selector")."""
    items: list[str] = []
    for v in values:
        items.extend(_split_fields(v) if origin == "query parameter" else [v])
    fields = tuple(group_field(item, origin) for item in items)
    if not fields:
        raise BadRequest(f"group-by ({origin}): no group field given")
    if len(fields) > MAX_GROUP_FIELDS:
        raise BadRequest(f"group-by ({origin}): at most {MAX_GROUP_FIELDS} group fields, not {len(fields)}")
    seen: set[tuple[str, tuple[str, ...]]] = set()
    for f in fields:
        key = (f.column, f.path)
        if key in seen:
            raise BadRequest(f'group-by ({origin}): group field "{f.name}" is given twice')
        seen.add(key)
    return fields
