"""Table printing of custom resources from their CRD's ``additionalPrinterColumns``.

Follows apiextensions-apiserver's table convertor: a ``Name`` column, then one column per printer
column, each evaluated as a JSONPath on the object; ``date`` columns print an age, ``string`` columns
print the value as kubectl's JSONPath printer would, other types pass JSON values through (and a
value of the wrong type becomes an empty cell, which kubectl shows as ``<none>``).

The JSONPath subset covers what CRDs use in practice: ``.a.b``, ``.a['x.y']``, ``.a[0]``, ``.a[*]``
(first match is used, as the apiserver does) and filters ``[?(@.type=="Ready")]`` with ``==``/``!=``.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from apiserver.printers.base import NAME, Column, Printer
from apiserver.printers.format import Obj, get_str, since

_TOKEN = re.compile(
    r"""
    \.(?P<field>[A-Za-z0-9_\-$]+)                             # .field
  | \[\s*'(?P<quoted>[^']*)'\s*\]                             # ['a.b']
  | \[\s*"(?P<dquoted>[^"]*)"\s*\]                            # ["a.b"]
  | \[\s*(?P<index>-?\d+)\s*\]                                # [0]
  | \[\s*\*\s*\]                                              # [*]
  | \[\s*\?\(\s*@\.(?P<fpath>[A-Za-z0-9_.\-]+)\s*(?P<op>==|!=)\s*
        (?:"(?P<fdq>[^"]*)"|'(?P<fsq>[^']*)'|(?P<fnum>[\w.\-]+))\s*\)\s*\]   # [?(@.type=="Ready")]
    """,
    re.VERBOSE,
)


@dataclass(frozen=True, slots=True)
class _Step:
    kind: str  # field | index | all | filter
    key: str = ""
    index: int = 0
    fpath: tuple[str, ...] = ()
    op: str = "=="
    value: str = ""


class JSONPathError(ValueError):
    pass


def compile_path(path: str) -> tuple[_Step, ...]:
    """Compile ``.status.conditions[?(@.type=="Ready")].status`` into steps (raises JSONPathError)."""
    text = path.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1].strip()
    if text.startswith("$"):
        text = text[1:]
    if text and not text.startswith((".", "[")):
        text = "." + text
    steps: list[_Step] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise JSONPathError(f"unsupported JSONPath {path!r} at {text[pos:]!r}")
        if m.group("field") is not None:
            steps.append(_Step("field", key=m.group("field")))
        elif m.group("quoted") is not None or m.group("dquoted") is not None:
            steps.append(_Step("field", key=m.group("quoted") or m.group("dquoted") or ""))
        elif m.group("index") is not None:
            steps.append(_Step("index", index=int(m.group("index"))))
        elif m.group("fpath") is not None:
            value = m.group("fdq") if m.group("fdq") is not None else m.group("fsq")
            if value is None:
                value = m.group("fnum") or ""
            fpath = tuple(m.group("fpath").split("."))
            steps.append(_Step("filter", fpath=fpath, op=m.group("op"), value=value))
        else:
            steps.append(_Step("all"))
        pos = m.end()
    return tuple(steps)


def _filter_value(item: Any, fpath: tuple[str, ...]) -> Any:
    cur = item
    for key in fpath:
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(key)
    return cur


def _scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return json.dumps(value)


def evaluate(steps: tuple[_Step, ...], obj: Any) -> list[Any]:
    """All matches of the compiled path in ``obj`` (missing keys give no match)."""
    current: list[Any] = [obj]
    for step in steps:
        nxt: list[Any] = []
        for value in current:
            if step.kind == "field":
                if isinstance(value, Mapping) and step.key in value:
                    nxt.append(value[step.key])
            elif step.kind == "index":
                if isinstance(value, list) and -len(value) <= step.index < len(value):
                    nxt.append(value[step.index])
            elif step.kind == "all":
                if isinstance(value, list):
                    nxt.extend(value)
                elif isinstance(value, Mapping):
                    nxt.extend(value.values())
            else:
                if isinstance(value, list):
                    for item in value:
                        got = _filter_value(item, step.fpath)
                        if got is None:
                            continue
                        equal = _scalar_text(got) == step.value
                        if equal == (step.op == "=="):
                            nxt.append(item)
        current = nxt
    return current


def _string_cell(value: Any) -> str:
    """What kubectl's JSONPath printer prints for one value."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, int | float):
        return msgspec.json.encode(value).decode()
    return msgspec.json.encode(value).decode()


def _cell(type_: str, value: Any, now: dt.datetime) -> Any:
    if value is None:
        return None
    if type_ == "string":
        return _string_cell(value)
    if type_ == "integer":
        if isinstance(value, bool):
            return None
        if isinstance(value, int):
            return value
        if isinstance(value, float):
            return int(value)
        return None
    if type_ == "number":
        if isinstance(value, bool):
            return None
        return float(value) if isinstance(value, int | float) else None
    if type_ == "boolean":
        return value if isinstance(value, bool) else None
    if type_ == "date":
        if isinstance(value, str):
            age = since(value, now)
            return "<invalid>" if age == "<unknown>" and value else age
        return None
    return None


AGE_DESCRIPTION = "CreationTimestamp is the server time when this object was created."


class _PrinterColumn(msgspec.Struct, rename="camel"):
    name: str
    type: str = "string"
    json_path: str = ""
    description: str = ""
    format: str = ""
    priority: int = 0


def crd_printer(printer_columns_json: str | bytes) -> Printer:
    """The printer for a CRD version given its ``additionalPrinterColumns`` JSON (never raises:
    unparseable columns are left out; none at all means NAME and AGE, as apiextensions serves)."""
    try:
        specs = msgspec.json.decode(printer_columns_json, type=list[_PrinterColumn])
    except (msgspec.DecodeError, msgspec.ValidationError):
        specs = []
    if not specs:  # apiextensions serves an Age column for a version without printer columns
        specs = [_PrinterColumn("Age", "date", ".metadata.creationTimestamp", AGE_DESCRIPTION)]
    columns: list[Column] = [NAME]
    paths: list[tuple[str, tuple[_Step, ...]]] = []
    for spec in specs:
        try:
            steps = compile_path(spec.json_path)
        except JSONPathError:
            continue
        description = (
            spec.description or f"Custom resource definition column (in JSONPath format): {spec.json_path}"
        )
        columns.append(Column(spec.name, spec.type, spec.format, description, spec.priority))
        paths.append((spec.type, steps))

    def cells(obj: Obj, now: dt.datetime) -> list[Any]:
        row: list[Any] = [get_str(obj, "metadata", "name")]
        for type_, steps in paths:
            found = evaluate(steps, obj)
            row.append(_cell(type_, found[0], now) if found else None)
        return row

    return Printer(tuple(columns), cells)
