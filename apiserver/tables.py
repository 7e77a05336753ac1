"""Builds the ``meta.k8s.io`` Table kubectl asks for, with the CLUSTER column first.

kubectl's ``get`` asks for ``application/json;as=Table;v=v1;g=meta.k8s.io`` and prints the columns
the server returns (hiding priority-1 columns unless ``-o wide``; prepending NAMESPACE itself with
``-A`` from each row's object metadata). So the Table is: ``Cluster``, then exactly the columns the
member cluster's kube-apiserver would return for that kind (see :mod:`apiserver.printers`), with
cells computed at request time (AGE). Rows carry ``PartialObjectMetadata`` (``includeObject`` =
Metadata, the default), the full stored object (Object, spliced as raw bytes) or nothing (None).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from apiserver.printers import DEFAULT_PRINTER, NAME_AGE_PRINTER, Column, Printer, printer_for
from apiserver.printers.crd import crd_printer
from apiserver.printers.registry import BUILTIN_GROUPS
from apiserver.types import StoredObject
from common.errors import BadRequest

log = logging.getLogger(__name__)

CLUSTER_COLUMN = Column("Cluster", description="The member cluster this object was synchronised from.")
INCLUDE_OBJECT = ("None", "Metadata", "Object")

_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class TableOptions:
    include_object: str = "Metadata"
    no_headers: bool = False
    table_version: str = "v1"  # meta.k8s.io version kubectl asked for (v1 or v1beta1)


def table_options(query: Any, table_version: str) -> TableOptions:
    """``includeObject`` and ``noHeaders`` from the URL query (a Starlette QueryParams-like mapping)."""
    include = query.get("includeObject") or "Metadata"
    if include not in INCLUDE_OBJECT:
        raise BadRequest(f"includeObject must be one of {', '.join(INCLUDE_OBJECT)}, not {include!r}")
    no_headers = (query.get("noHeaders") or "").lower() in ("true", "1")
    return TableOptions(include, no_headers, table_version)


def choose_printer(group: str, resource: str, printer_columns: str) -> Printer:
    """Built-in printer, else the CRD's printer columns, else kube-apiserver's defaults."""
    builtin = printer_for(group, resource)
    if builtin is not None:
        return builtin
    if printer_columns.strip():
        return crd_printer(printer_columns)
    if group in BUILTIN_GROUPS:
        return DEFAULT_PRINTER
    return NAME_AGE_PRINTER


def _cells(printer: Printer, obj: dict[str, Any], now: dt.datetime) -> list[Any]:
    try:
        cells = printer.cells(obj, now)
    except Exception:  # a printer bug must not fail the whole list: show what we can
        log.exception("table printer failed for %s", obj.get("metadata", {}).get("name"))
        name = obj.get("metadata", {}).get("name", "") if isinstance(obj.get("metadata"), dict) else ""
        cells = [name] + [None] * (len(printer.columns) - 1)
    return cells


def build_table(
    items: Sequence[StoredObject],
    printer: Printer,
    options: TableOptions,
    *,
    list_metadata: dict[str, Any],
    now: dt.datetime | None = None,
    raw_objects: Sequence[bytes] | None = None,
) -> bytes:
    """The Table as JSON bytes. ``raw_objects`` (same length as ``items``) replaces the stored bytes
    for ``includeObject=Object`` (e.g. after an apiVersion rewrite)."""
    now = now or dt.datetime.now(dt.UTC)
    rows: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        obj = _decoder.decode(item.object)
        if not isinstance(obj, dict):
            continue
        row: dict[str, Any] = {"cells": [item.cluster, *_cells(printer, obj, now)]}
        if options.include_object == "Metadata":
            row["object"] = {
                "kind": "PartialObjectMetadata",
                "apiVersion": f"meta.k8s.io/{options.table_version}",
                "metadata": obj.get("metadata", {}),
            }
        elif options.include_object == "Object":
            row["object"] = msgspec.Raw(raw_objects[i] if raw_objects is not None else item.object)
        rows.append(row)
    table: dict[str, Any] = {
        "kind": "Table",
        "apiVersion": f"meta.k8s.io/{options.table_version}",
        "metadata": list_metadata,
        "columnDefinitions": []
        if options.no_headers
        else [c.definition() for c in (CLUSTER_COLUMN, *printer.columns)],
        "rows": rows,
    }
    return _encoder.encode(table)
