"""Command-line flags derived from the Settings object, so flags, env and file never drift apart.

Every scalar field of ``common.settings.Settings`` and of its per-tier sections becomes a flag
(``batch_max_events`` -> ``--batch-max-events``); its help text is the field's docstring, read
from the source with ``ast`` (msgspec keeps no attribute docstrings at run time), followed by the
environment variable and the default. Fields that are not scalars (e.g. ``apiserver.collections``)
are set with ``--set apiserver.collections='{...}'`` or in the config file.
"""

from __future__ import annotations

import argparse
import ast
import inspect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec
import yaml

from common import settings as settings_module
from common.settings import ENV_PREFIX, Settings

SCALARS: dict[Any, type] = {int: int, float: float, str: str, bool: bool}
DEST_PREFIX = "setting__"


@dataclass(frozen=True)
class SettingField:
    """One settable field: ``section`` is "" for top-level fields."""

    section: str
    name: str
    type: Any
    default: Any
    doc: str

    @property
    def key(self) -> str:
        return f"{self.section}.{self.name}" if self.section else self.name

    @property
    def env(self) -> str:
        middle = f"{self.section.upper()}__" if self.section else ""
        return f"{ENV_PREFIX}{middle}{self.name.upper()}"

    @property
    def dest(self) -> str:
        return f"{DEST_PREFIX}{self.section}__{self.name}"

    @property
    def scalar(self) -> type | None:
        return SCALARS.get(self.type)


def _docstrings() -> dict[str, dict[str, str]]:
    """class name -> field name -> docstring, from the settings module's source."""
    tree = ast.parse(inspect.getsource(settings_module))
    out: dict[str, dict[str, str]] = {}
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        docs: dict[str, str] = {}
        body = node.body
        for i, stmt in enumerate(body):
            if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
                continue
            nxt = body[i + 1] if i + 1 < len(body) else None
            if isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
                docs[stmt.target.id] = " ".join(str(nxt.value.value).split())
        out[node.name] = docs
    return out


def _default(info: msgspec.structs.FieldInfo) -> Any:
    if info.default is not msgspec.NODEFAULT:
        return info.default
    if info.default_factory is not msgspec.NODEFAULT:
        return info.default_factory()
    return None


def setting_fields() -> list[SettingField]:
    """All fields of Settings, top level first, then each section in declaration order."""
    docs = _docstrings()
    top: list[SettingField] = []
    nested: list[SettingField] = []
    for info in msgspec.structs.fields(Settings):
        ftype = info.type
        if isinstance(ftype, type) and issubclass(ftype, msgspec.Struct):
            section_docs = docs.get(ftype.__name__, {})
            for sub in msgspec.structs.fields(ftype):
                nested.append(
                    SettingField(info.name, sub.name, sub.type, _default(sub), section_docs.get(sub.name, ""))
                )
        else:
            top.append(
                SettingField("", info.name, ftype, _default(info), docs["Settings"].get(info.name, ""))
            )
    return top + nested


def sections() -> list[str]:
    return sorted({f.section for f in setting_fields() if f.section})


def add_setting_flags(
    parser: argparse.ArgumentParser, fields: Iterable[SettingField], *, prefixed: frozenset[str] = frozenset()
) -> None:
    """Add one flag per scalar field; names in ``prefixed`` get their section as a prefix
    (``--writer-batch-max-events``), used where two sections share a field name."""
    groups: dict[str, argparse._ArgumentGroup] = {}
    for field in fields:
        scalar = field.scalar
        if scalar is None:
            continue
        title = f"{field.section} settings" if field.section else "common settings"
        group = groups.setdefault(field.section, parser.add_argument_group(title))
        name = field.name.replace("_", "-")
        if field.name in prefixed and field.section:
            name = f"{field.section}-{name}"
        default_txt = repr(field.default) if field.default != "" else '""'
        help_txt = f"{field.doc} [env {field.env}; default {default_txt}]".strip().replace("%", "%%")
        if scalar is bool:
            group.add_argument(
                f"--{name}",
                dest=field.dest,
                action=argparse.BooleanOptionalAction,
                default=argparse.SUPPRESS,
                help=help_txt,
            )
        else:
            group.add_argument(
                f"--{name}",
                dest=field.dest,
                type=scalar,
                default=argparse.SUPPRESS,
                metavar=field.name.upper(),
                help=help_txt,
            )


def fields_for(section_names: Iterable[str]) -> tuple[list[SettingField], frozenset[str]]:
    """Top-level fields plus those of the given sections, and the names that collide across them."""
    wanted = set(section_names)
    chosen = [f for f in setting_fields() if not f.section or f.section in wanted]
    seen: dict[str, int] = {}
    for f in chosen:
        if f.scalar is not None:
            seen[f.name] = seen.get(f.name, 0) + 1
    return chosen, frozenset(n for n, count in seen.items() if count > 1)


def parse_set(items: Iterable[str]) -> dict[str, Any]:
    """``--set writer.batch_max_events=500`` pairs -> nested overrides (values parsed as YAML)."""
    out: dict[str, Any] = {}
    valid = {f.key for f in setting_fields()}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in valid:
            raise argparse.ArgumentTypeError(
                f"--set {item!r}: expected KEY=VALUE with KEY one of {', '.join(sorted(valid))}"
            )
        value = yaml.safe_load(raw) if raw else raw
        _put(out, key.split("."), value)
    return out


def _put(tree: dict[str, Any], path: list[str], value: Any) -> None:
    for part in path[:-1]:
        tree = tree.setdefault(part, {})
    tree[path[-1]] = value


def overrides_from(ns: argparse.Namespace) -> dict[str, Any]:
    """Nested overrides from the parsed flags: ``--set`` first, then dedicated flags on top."""
    out = parse_set(getattr(ns, "set", None) or [])
    for dest, value in vars(ns).items():
        if not dest.startswith(DEST_PREFIX):
            continue
        section, _, name = dest[len(DEST_PREFIX) :].partition("__")
        _put(out, [section, name] if section else [name], value)
    return out


def flatten(tree: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Nested overrides -> (dotted key, value) pairs, e.g. to hand them to a child process."""
    out: list[tuple[str, Any]] = []
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and not prefix and dotted in sections():
            out.extend(flatten(value, dotted + "."))
        else:
            out.append((dotted, value))
    return out
