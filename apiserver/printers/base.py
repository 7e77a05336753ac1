"""The shape of one printer: column definitions plus a pure function from (object, now) to cells."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

CellsFn = Callable[[Mapping[str, Any], dt.datetime], list[Any]]


@dataclass(frozen=True, slots=True)
class Column:
    """A ``meta.k8s.io/v1`` TableColumnDefinition."""

    name: str
    type: str = "string"
    format: str = ""
    description: str = ""
    priority: int = 0

    def definition(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        }


NAME = Column("Name", format="name", description="Name must be unique within a namespace.")
AGE = Column(
    "Age",
    description="CreationTimestamp is a timestamp representing the server time when this object was created.",
)


def wide(name: str, description: str = "", type_: str = "string") -> Column:
    return Column(name, type=type_, description=description, priority=1)


@dataclass(frozen=True, slots=True)
class Printer:
    columns: tuple[Column, ...]
    cells: CellsFn
