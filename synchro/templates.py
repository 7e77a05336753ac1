"""The small template language of ClusterImportPolicies: names, conditions and spec templates.

A policy is written by an operator, but what it reads -- the source object and its references
(a Cluster API ``Cluster``, a Secret) -- is written by others, and the synchro evaluates it with
its own powers. So the language is built here rather than borrowed: it has no loops, no
assignment, no attribute access to Python objects and no way to name anything but the variables it
is given (``source``, ``references``, ``policy``) and the functions of ``FUNCTIONS``. Values are
JSON values only (mappings, lists, strings, numbers, booleans, null); ``a.b`` and ``a["b"]`` read a
mapping key, ``a[0]`` a list item, and reading past a missing key gives null instead of an error.
Every evaluation has a budget: the text of a template, its nesting depth, the length of any string
it builds and the total number of characters it may produce are bounded, so a hostile or careless
template ends in a :class:`TemplateError` with a message, never in a hang or a crash. (Jinja2's
sandbox was the alternative; it still has loops, whose running time it does not bound.)

Syntax, Go-template-like so that the original project's policies read familiar::

    "{{ source.metadata.namespace }}-{{ source.metadata.name | lower }}"     # interpolation
    "{{ references.kubeconfig.data.value }}"                               # a single {{ }}: the value itself
    source.status.phase == "Provisioned" and not has(source.metadata.deletionTimestamp)   # condition

Operators: ``or and not == != < <= > >= in + |`` and parentheses; literals: strings in single or
double quotes (``\\`` escapes), integers, ``true false null``, lists ``[a, b]``. ``x | f(y)``
means ``f(x, y)``.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

MAX_TEMPLATE_CHARS = 16 * 1024
"""Longest template (or condition) text."""
MAX_DEPTH = 32
"""Deepest nesting of parentheses, lists, indexes and calls."""
MAX_TREE_DEPTH = 64
"""Deepest syntax tree (a chain like ``a.b.c`` or ``x + y + z`` is as deep as it is long)."""
MAX_VALUE_CHARS = 1024 * 1024
"""Longest string (or list) one operation may build: a kubeconfig fits many times."""
MAX_OUTPUT_CHARS = 4 * 1024 * 1024
"""Characters an evaluation may produce in all (every concatenation and function result counts)."""


class TemplateError(Exception):
    """A template that cannot be parsed or evaluated; the message says where and why."""


# ------------------------------------------------------------------------------------ tokens

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<num>-?\d+)
      | (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<op>==|!=|<=|>=|[<>()\[\].,|+])
      | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
    )""",
    re.VERBOSE,
)
_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", '"': '"', "'": "'"}
KEYWORDS = {"and", "or", "not", "in", "true", "false", "null"}


def _tokenize(text: str) -> list[tuple[str, str, int]]:
    out: list[tuple[str, str, int]] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            col = pos + len(text[pos:]) - len(text[pos:].lstrip())
            raise TemplateError(f"unexpected character {text[col]!r} at column {col + 1}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind), m.start(kind)))
        pos = m.end()
    return out


def _unquote(literal: str) -> str:
    body = literal[1:-1]
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), body)


# ------------------------------------------------------------------------------------ syntax tree


@dataclass(frozen=True)
class Node:
    op: str  # lit, var, field, index, call, list, not, and, or, cmp, add
    args: tuple[Any, ...]


def _tree_depth(root: Node) -> int:
    """Depth of a syntax tree, walked without recursion (the tree may be very deep)."""
    deepest, stack = 0, [(root, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        children = node.args[2] if node.op == "call" else node.args
        stack.extend((child, depth + 1) for child in children if isinstance(child, Node))
    return deepest


class _Parser:
    def __init__(self, text: str, names: frozenset[str]) -> None:
        self.tokens = _tokenize(text)
        self.pos = 0
        self.depth = 0
        self.names = names

    def parse(self) -> Node:
        if not self.tokens:
            raise TemplateError("empty expression")
        node = self.pipe()
        if self.pos < len(self.tokens):
            _, value, col = self.tokens[self.pos]
            raise TemplateError(f"unexpected {value!r} at column {col + 1}")
        if _tree_depth(node) > MAX_TREE_DEPTH:
            raise TemplateError(f"expression deeper than {MAX_TREE_DEPTH} operations")
        return node

    # helpers
    def peek(self) -> tuple[str, str]:
        if self.pos >= len(self.tokens):
            return ("end", "")
        kind, value, _ = self.tokens[self.pos]
        return (kind, value)

    def take(self, value: str | None = None) -> str:
        kind, got = self.peek()
        if kind == "end" or (value is not None and got != value):
            raise TemplateError(f"expected {value or 'a value'!r}, found {got or 'the end'!r}")
        self.pos += 1
        return got

    def accept(self, value: str) -> bool:
        kind, got = self.peek()
        if kind in ("op", "name") and got == value:
            self.pos += 1
            return True
        return False

    def nested(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise TemplateError(f"expression nested deeper than {MAX_DEPTH}")

    # grammar, lowest precedence first
    def pipe(self) -> Node:
        node = self.or_()
        while self.accept("|"):
            name = self.take()
            fn = _function(name)
            args = [node]
            if self.accept("("):
                args += self.arguments()
            node = Node("call", (name, fn, tuple(args)))
        return node

    def or_(self) -> Node:
        node = self.and_()
        while self.accept("or"):
            node = Node("or", (node, self.and_()))
        return node

    def and_(self) -> Node:
        node = self.not_()
        while self.accept("and"):
            node = Node("and", (node, self.not_()))
        return node

    def not_(self) -> Node:
        if self.accept("not"):
            self.nested()
            node = Node("not", (self.not_(),))
            self.depth -= 1
            return node
        return self.compare()

    def compare(self) -> Node:
        node = self.add()
        kind, value = self.peek()
        if (kind == "op" and value in ("==", "!=", "<", "<=", ">", ">=")) or (kind, value) == ("name", "in"):
            self.pos += 1
            node = Node("cmp", (value, node, self.add()))
        return node

    def add(self) -> Node:
        node = self.postfix()
        while self.accept("+"):
            node = Node("add", (node, self.postfix()))
        return node

    def postfix(self) -> Node:
        node = self.primary()
        while True:
            if self.accept("."):
                kind, name = self.peek()
                if kind != "name":
                    raise TemplateError(f"expected a field name after '.', found {name or 'the end'!r}")
                self.pos += 1
                node = Node("field", (node, name))
            elif self.accept("["):
                self.nested()
                node = Node("index", (node, self.pipe()))
                self.take("]")
                self.depth -= 1
            else:
                return node

    def arguments(self) -> list[Node]:
        self.nested()
        args: list[Node] = []
        if not self.accept(")"):
            args.append(self.pipe())
            while self.accept(","):
                args.append(self.pipe())
            self.take(")")
        self.depth -= 1
        return args

    def primary(self) -> Node:
        kind, value = self.peek()
        if kind == "end":
            raise TemplateError("expression ends too early")
        self.pos += 1
        if kind == "num":
            if len(value.lstrip("-")) > 18:
                raise TemplateError(f"the number {value[:20]}... is too long")
            return Node("lit", (int(value),))
        if kind == "str":
            return Node("lit", (_unquote(value),))
        if kind == "op" and value == "(":
            self.nested()
            node = self.pipe()
            self.take(")")
            self.depth -= 1
            return node
        if kind == "op" and value == "[":
            self.nested()
            items: list[Node] = []
            if not self.accept("]"):
                items.append(self.pipe())
                while self.accept(","):
                    items.append(self.pipe())
                self.take("]")
            self.depth -= 1
            return Node("list", tuple(items))
        if kind == "name":
            if value in ("true", "false", "null"):
                return Node("lit", ({"true": True, "false": False, "null": None}[value],))
            if value in KEYWORDS:
                raise TemplateError(f"unexpected {value!r}")
            if self.accept("("):
                return Node("call", (value, _function(value), tuple(self.arguments())))
            if value not in self.names:
                known = ", ".join(sorted(self.names))
                raise TemplateError(f"unknown name {value!r} (the variables are {known})")
            return Node("var", (value,))
        raise TemplateError(f"unexpected {value!r}")


# ------------------------------------------------------------------------------------ functions


class _Budget:
    def __init__(self) -> None:
        self.left = MAX_OUTPUT_CHARS

    def charge(self, value: Any) -> Any:
        size = len(value) if isinstance(value, str | list) else 0
        if size > MAX_VALUE_CHARS:
            raise TemplateError(f"a value of {size} characters is longer than {MAX_VALUE_CHARS}")
        self.left -= size
        if self.left < 0:
            raise TemplateError(f"the template produced more than {MAX_OUTPUT_CHARS} characters")
        return value


def _text(value: Any, fn: str) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        raise TemplateError(f"{fn}() got null (a missing field?)")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    raise TemplateError(f"{fn}() needs a string, got a {_kind(value)}")


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    return "mapping"


def _b64dec(value: Any) -> str:
    try:
        return base64.b64decode(_text(value, "b64dec"), validate=True).decode("utf-8")
    except (binascii.Error, ValueError) as exc:
        raise TemplateError(f"b64dec(): not base64-encoded UTF-8 text ({type(exc).__name__})") from None


def _dns_label(value: Any) -> str:
    cleaned = re.sub(r"[^a-z0-9-]+", "-", _text(value, "dnsLabel").lower()).strip("-")
    return cleaned[:63].rstrip("-")


def _len(value: Any) -> int:
    if isinstance(value, str | list | dict):
        return len(value)
    if value is None:
        return 0
    raise TemplateError(f"len() needs a string, list or mapping, got a {_kind(value)}")


def _join(items: Any, sep: Any = ",") -> str:
    if not isinstance(items, list):
        raise TemplateError(f"join() needs a list, got a {_kind(items)}")
    return _text(sep, "join").join(_text(item, "join") for item in items)


def _split(value: Any, sep: Any = ",") -> list[str]:
    separator = _text(sep, "split")
    if not separator:
        raise TemplateError("split() needs a non-empty separator")
    return _text(value, "split").split(separator)


def _replace(value: Any, old: Any, new: Any) -> str:
    text, before, after = _text(value, "replace"), _text(old, "replace"), _text(new, "replace")
    if not before:
        raise TemplateError("replace() needs a non-empty string to replace")
    if len(after) > len(before) and text.count(before) * (len(after) - len(before)) > MAX_VALUE_CHARS:
        raise TemplateError(f"replace() would build more than {MAX_VALUE_CHARS} characters")
    return text.replace(before, after)


FUNCTIONS: dict[str, tuple[Callable[..., Any], int, int]] = {
    # name: (function, fewest arguments, most arguments)
    "b64enc": (lambda v: base64.b64encode(_text(v, "b64enc").encode()).decode(), 1, 1),
    "b64dec": (_b64dec, 1, 1),
    "lower": (lambda v: _text(v, "lower").lower(), 1, 1),
    "upper": (lambda v: _text(v, "upper").upper(), 1, 1),
    "trim": (lambda v: _text(v, "trim").strip(), 1, 1),
    "trimPrefix": (lambda v, p: _text(v, "trimPrefix").removeprefix(_text(p, "trimPrefix")), 2, 2),
    "trimSuffix": (lambda v, s: _text(v, "trimSuffix").removesuffix(_text(s, "trimSuffix")), 2, 2),
    "replace": (_replace, 3, 3),
    "default": (lambda v, d: d if v is None or v == "" else v, 2, 2),
    "has": (lambda v: v is not None, 1, 1),
    "len": (_len, 1, 1),
    "join": (_join, 1, 2),
    "split": (_split, 1, 2),
    "string": (lambda v: _text(v, "string"), 1, 1),
    "dnsLabel": (_dns_label, 1, 1),
    "hasPrefix": (lambda v, p: _text(v, "hasPrefix").startswith(_text(p, "hasPrefix")), 2, 2),
    "hasSuffix": (lambda v, s: _text(v, "hasSuffix").endswith(_text(s, "hasSuffix")), 2, 2),
}


def _function(name: str) -> tuple[Callable[..., Any], int, int]:
    try:
        return FUNCTIONS[name]
    except KeyError:
        raise TemplateError(f"unknown function {name!r} (the functions are {', '.join(FUNCTIONS)})") from None


# ------------------------------------------------------------------------------------ evaluation


def _evaluate(node: Node, env: Mapping[str, Any], budget: _Budget) -> Any:
    op, args = node.op, node.args
    if op == "lit":
        return args[0]
    if op == "var":
        return env.get(args[0])
    if op == "field":
        return _member(_evaluate(args[0], env, budget), args[1])
    if op == "index":
        return _member(_evaluate(args[0], env, budget), _evaluate(args[1], env, budget))
    if op == "not":
        return not _truth(_evaluate(args[0], env, budget))
    if op == "and":
        return _truth(_evaluate(args[0], env, budget)) and _truth(_evaluate(args[1], env, budget))
    if op == "or":
        return _truth(_evaluate(args[0], env, budget)) or _truth(_evaluate(args[1], env, budget))
    if op == "list":
        return budget.charge([_evaluate(item, env, budget) for item in args])
    if op == "cmp":
        return _compare(args[0], _evaluate(args[1], env, budget), _evaluate(args[2], env, budget), budget)
    if op == "add":
        left, right = _evaluate(args[0], env, budget), _evaluate(args[1], env, budget)
        if isinstance(left, str) and isinstance(right, str):
            if len(left) + len(right) > MAX_VALUE_CHARS:
                raise TemplateError(f"a string longer than {MAX_VALUE_CHARS} characters")
            return budget.charge(left + right)
        if _is_number(left) and _is_number(right):
            result = left + right
            if abs(result) > 2**63:
                raise TemplateError("a number beyond 64 bits")
            return result
        raise TemplateError(f"cannot add a {_kind(left)} and a {_kind(right)}")
    if op == "call":
        name, (fn, low, high), arg_nodes = args
        if not low <= len(arg_nodes) <= high:
            count = str(low) if low == high else f"{low} to {high}"
            raise TemplateError(f"{name}() takes {count} arguments, got {len(arg_nodes)}")
        values = [_evaluate(a, env, budget) for a in arg_nodes]
        return budget.charge(fn(*values))
    raise TemplateError(f"unknown operation {op}")  # not reachable: the parser makes only the above


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _member(container: Any, key: Any) -> Any:
    if container is None:
        return None
    if isinstance(container, dict):
        if not isinstance(key, str):
            raise TemplateError(f"a mapping is indexed by strings, not by a {_kind(key)}")
        return container.get(key)
    if isinstance(container, list):
        if not _is_number(key) or not isinstance(key, int):
            raise TemplateError(f"a list is indexed by integers, not by a {_kind(key)}")
        return container[key] if -len(container) <= key < len(container) else None
    raise TemplateError(f"cannot read {key!r} of a {_kind(container)}")


def _truth(value: Any) -> bool:
    return value not in (None, False, "", 0) and value != [] and value != {}


def _scalar(value: Any, op: str) -> Any:
    if isinstance(value, dict | list):
        raise TemplateError(f"'{op}' compares strings, numbers, booleans and null, not a {_kind(value)}")
    return value


def _same(left: Any, right: Any) -> bool:
    return bool(left == right and _kind(left) == _kind(right))  # no conversions: 3 != "3", 1 != true


def _compare(op: str, left: Any, right: Any, budget: _Budget) -> bool:
    """Comparisons of scalars only (comparing whole objects would cost their size each time);
    the work of ``in`` is charged to the budget like the text it scans."""
    if op in ("==", "!="):
        equal = _same(_scalar(left, op), _scalar(right, op))
        return equal if op == "==" else not equal
    if op == "in":
        _scalar(left, op)
        if right is None:
            return False
        if isinstance(right, str):
            budget.charge(right)
            return isinstance(left, str) and left in right
        if isinstance(right, list):
            budget.charge(right)
            return any(_same(left, item) for item in right if not isinstance(item, dict | list))
        if isinstance(right, dict):
            return isinstance(left, str) and left in right
        raise TemplateError(f"'in' needs a string, list or mapping on its right, got a {_kind(right)}")
    both_numbers = _is_number(left) and _is_number(right)
    if not both_numbers and not (isinstance(left, str) and isinstance(right, str)):
        raise TemplateError(f"cannot order a {_kind(left)} and a {_kind(right)}")
    return bool({"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}[op])


# ------------------------------------------------------------------------------------ public face

VARIABLES = frozenset({"source", "references", "policy"})


class Expression:
    """A compiled condition: evaluates to true or false."""

    def __init__(self, text: str, names: frozenset[str] = VARIABLES) -> None:
        if len(text) > MAX_TEMPLATE_CHARS:
            raise TemplateError(f"longer than {MAX_TEMPLATE_CHARS} characters")
        stripped = text.strip()
        if stripped.startswith("{{") and stripped.endswith("}}") and stripped.count("{{") == 1:
            stripped = stripped[2:-2]
        self.text = text
        self.node = _Parser(stripped, names).parse()

    def value(self, env: Mapping[str, Any]) -> Any:
        return _evaluate(self.node, env, _Budget())

    def holds(self, env: Mapping[str, Any]) -> bool:
        return _truth(self.value(env))


class Template:
    """A compiled string template: text with ``{{ expression }}`` parts. A template that is a
    single ``{{ }}`` (blanks around it allowed) gives that expression's value as it is (a list, a
    number, a boolean...); otherwise every part is turned into text and joined. A part that gives
    null is an error (a missing field): ``default(x, "...")`` gives a fallback."""

    def __init__(self, text: str, names: frozenset[str] = VARIABLES) -> None:
        if len(text) > MAX_TEMPLATE_CHARS:
            raise TemplateError(f"longer than {MAX_TEMPLATE_CHARS} characters")
        self.text = text
        self.parts: list[str | tuple[Node, str]] = []
        pos = 0
        while True:
            start = text.find("{{", pos)
            if start < 0:
                if "}}" in text[pos:]:
                    raise TemplateError("'}}' without '{{'")
                self.parts.append(text[pos:])
                break
            end = text.find("}}", start + 2)
            if end < 0:
                raise TemplateError(f"'{{{{' at column {start + 1} is not closed")
            if "}}" in text[pos:start]:
                raise TemplateError("'}}' without '{{'")
            self.parts.append(text[pos:start])
            try:
                inner = text[start + 2 : end]
                self.parts.append((_Parser(inner, names).parse(), inner.strip()))
            except TemplateError as exc:
                raise TemplateError(f"in '{{{{{text[start + 2 : end]}}}}}': {exc}") from None
            pos = end + 2
        self.parts = [p for p in self.parts if p != ""]
        self.single = len(self.parts) == 1 and not isinstance(self.parts[0], str)
        if self.single and text.strip() != text:
            self.single = False

    def render(self, env: Mapping[str, Any], budget: _Budget | None = None) -> Any:
        budget = budget or _Budget()
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            node, inner = part
            value = _evaluate(node, env, budget)
            if value is None:
                raise TemplateError(f"'{{{{ {inner} }}}}' is null (a missing field or reference?)")
            if self.single:
                return value
            if isinstance(value, dict | list):
                raise TemplateError(f"a {_kind(value)} cannot be part of a text")
            out.append(_text(value, "text"))
        return budget.charge("".join(out))


class SpecTemplate:
    """A PediaCluster spec template: a mapping whose string leaves are :class:`Template` s (keys
    are taken literally). Errors name the field: ``template.kubeconfig: ...``."""

    def __init__(self, spec: Any, path: str = "template") -> None:
        self.path = path
        self.root = self._compile(spec, path)

    def _compile(self, value: Any, path: str) -> Any:
        if isinstance(value, str):
            try:
                return Template(value)
            except TemplateError as exc:
                raise TemplateError(f"{path}: {exc}") from None
        if isinstance(value, dict):
            return {str(k): self._compile(v, f"{path}.{k}") for k, v in value.items()}
        if isinstance(value, list):
            return [self._compile(v, f"{path}[{i}]") for i, v in enumerate(value)]
        return value

    def render(self, env: Mapping[str, Any]) -> Any:
        return self._render(self.root, env, _Budget(), self.path)

    def _render(self, value: Any, env: Mapping[str, Any], budget: _Budget, path: str) -> Any:
        if isinstance(value, Template):
            try:
                return value.render(env, budget)
            except TemplateError as exc:
                raise TemplateError(f"{path}: {exc}") from None
        if isinstance(value, dict):
            return {k: self._render(v, env, budget, f"{path}.{k}") for k, v in value.items()}
        if isinstance(value, list):
            return [self._render(v, env, budget, f"{path}[{i}]") for i, v in enumerate(value)]
        return value
