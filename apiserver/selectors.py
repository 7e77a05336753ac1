"""Label and field selector syntax, parsed the way kube-apiserver parses it (pure).

kubectl carries Clusterpedia's search conditions inside the label selector
(``search.clusterpedia.io/clusters in (a,b)``), so the label selector is parsed into raw
requirements first and sorted into search conditions and ordinary label requirements by
``apiserver.search``. Field selectors reach any JSON path of the object
(``status.phase``, ``metadata.annotations['a.b']``); paths are validated here against a strict
grammar, since they become JSON paths in SQL (as bound parameters).

Errors are ``BadRequest`` with messages in the spirit of kube-apiserver's
``unable to parse requirement: ...``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from common.errors import BadRequest
from common.storage.query import FieldRequirement, Operator

_SPECIAL = set("!(),=<>")

_NAME_PART = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


@dataclass(frozen=True, slots=True)
class RawRequirement:
    """A parsed but not yet interpreted label selector requirement."""

    key: str
    operator: Operator
    values: tuple[str, ...]


def label_key_error(key: str) -> str | None:
    """Why ``key`` is not a valid label key (Kubernetes qualified name), or None."""
    prefix, slash, name = key.rpartition("/")
    if slash:
        if not prefix:
            return "prefix part must be non-empty"
        if len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix):
            return (
                "prefix part must be a lowercase RFC 1123 subdomain: lowercase alphanumeric characters,"
                " '-' or '.', starting and ending with an alphanumeric character"
            )
    if not name:
        return "name part must be non-empty"
    if len(name) > 63:
        return "name part must be no more than 63 characters"
    if not _NAME_PART.match(name):
        return (
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end"
            " with an alphanumeric character"
        )
    return None


def label_value_error(value: str) -> str | None:
    """Why ``value`` is not a valid label value, or None."""
    if len(value) > 63:
        return "must be no more than 63 characters"
    if not _LABEL_VALUE.match(value):
        return (
            "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or"
            " '.', and must start and end with an alphanumeric character"
        )
    return None


class _Lexer:
    """Tokens of a label selector: identifiers, ``, ( ) = == != ! in notin < >``."""

    def __init__(self, text: str) -> None:
        self.tokens: list[str] = []
        i, n = 0, len(text)
        while i < n:
            c = text[i]
            if c.isspace():
                i += 1
            elif c in _SPECIAL:
                two = text[i : i + 2]
                if two in ("==", "!="):
                    self.tokens.append(two)
                    i += 2
                else:
                    self.tokens.append(c)
                    i += 1
            else:
                j = i
                while j < n and not text[j].isspace() and text[j] not in _SPECIAL:
                    j += 1
                self.tokens.append(text[i:j])
                i = j
        self.pos = 0

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def next(self) -> str | None:
        tok = self.peek()
        self.pos += 1
        return tok


def _is_identifier(tok: str | None) -> bool:
    return tok is not None and tok not in _SPECIAL and tok not in ("==", "!=")


def _fail(message: str) -> BadRequest:
    return BadRequest(f"unable to parse requirement: {message}")


def parse_label_selector(text: str) -> list[RawRequirement]:
    """Parse a label selector into requirements, keys validated, values not yet (search keys take
    values that are not label values, such as RFC 3339 times)."""
    lex = _Lexer(text)
    out: list[RawRequirement] = []
    if lex.peek() is None:
        return out
    while True:
        out.append(_parse_requirement(lex))
        tok = lex.next()
        if tok is None:
            return out
        if tok != ",":
            raise _fail(f"found '{tok}', expected: ','")
        if lex.peek() is None:
            raise _fail("found end of input, expected: identifier after ','")


def _parse_requirement(lex: _Lexer) -> RawRequirement:
    negated = False
    if lex.peek() == "!":
        lex.next()
        negated = True
    key = lex.next()
    if not _is_identifier(key):
        raise _fail(f"found '{key or 'end of input'}', expected: identifier")
    assert key is not None
    if (reason := label_key_error(key)) is not None:
        raise _fail(f'invalid label key "{key}": {reason}')
    if negated:
        return RawRequirement(key, Operator.DOES_NOT_EXIST, ())
    op_tok = lex.peek()
    if op_tok is None or op_tok == ",":
        return RawRequirement(key, Operator.EXISTS, ())
    lex.next()
    if op_tok in ("=", "=="):
        return RawRequirement(key, Operator.EQUALS, (_single_value(lex),))
    if op_tok == "!=":
        return RawRequirement(key, Operator.NOT_EQUALS, (_single_value(lex),))
    if op_tok in ("in", "notin"):
        op = Operator.IN if op_tok == "in" else Operator.NOT_IN
        return RawRequirement(key, op, _value_set(lex))
    if op_tok in ("<", ">"):
        raise _fail(f"operator '{op_tok}' is not supported by this server")
    raise _fail(f"found '{op_tok}', expected: in, notin, =, ==, !=, or end of input")


def _single_value(lex: _Lexer) -> str:
    tok = lex.peek()
    if tok is None or tok == ",":
        return ""
    if not _is_identifier(tok):
        raise _fail(f"found '{tok}', expected: identifier")
    lex.next()
    return tok


def _value_set(lex: _Lexer) -> tuple[str, ...]:
    if lex.next() != "(":
        raise _fail("expected '(' after set operator")
    values: list[str] = []
    while True:
        tok = lex.peek()
        if tok is None:
            raise _fail("found end of input, expected: ')'")
        if _is_identifier(tok):
            values.append(tok)
            lex.next()
        elif tok in (",", ")"):
            values.append("")  # an empty member, as in "(a,,b)"
        else:
            raise _fail(f"found '{tok}', expected: identifier, ',' or ')'")
        sep = lex.next()
        if sep == ")":
            break
        if sep != ",":
            raise _fail(f"found '{sep or 'end of input'}', expected: ',' or ')'")
    if values == [""]:
        raise _fail("for 'in', 'notin' operators, values set can't be empty")
    return tuple(values)


# ---------------------------------------------------------------------------------------- fields

_SEGMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_BRACKET_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]*")
_FIELD_OPS = ("!=", "==", "=")


def parse_json_path(text: str) -> tuple[str, ...]:
    """``status.phase`` / ``metadata.annotations['a.b/c']`` -> path segments; BadRequest otherwise."""
    segments: list[str] = []
    i, n = 0, len(text)
    expect_segment = True
    while i < n:
        if text[i] == "[":
            quote = text[i + 1 : i + 2]
            if quote not in ("'", '"'):
                raise BadRequest(f'invalid field path "{text}": expected a quoted key after "["')
            end = text.find(quote + "]", i + 2)
            if end < 0:
                raise BadRequest(f'invalid field path "{text}": unterminated "["')
            key = text[i + 2 : end]
            if not _BRACKET_KEY.fullmatch(key) or len(key) > 316:
                raise BadRequest(f'invalid field path "{text}": invalid key {quote}{key}{quote}')
            segments.append(key)
            i = end + 2
            expect_segment = False
        elif text[i] == "." and not expect_segment:
            i += 1
            expect_segment = True
        else:
            m = _SEGMENT.match(text, i)
            if not m or not expect_segment:
                raise BadRequest(f'invalid field path "{text}"')
            segments.append(m.group())
            i = m.end()
            expect_segment = False
    if not segments or expect_segment or len(segments) > 16:
        raise BadRequest(f'invalid field path "{text}"')
    return tuple(segments)


def _split_unescaped(text: str, sep: str) -> list[str]:
    """Split on ``sep`` outside brackets/parentheses, honouring ``\\`` escapes (kept for later)."""
    parts: list[str] = []
    depth = 0
    start = 0
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c in "[(":
            depth += 1
        elif c in "])":
            depth = max(0, depth - 1)
        elif c == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    parts.append(text[start:])
    return parts


def _unescape(value: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(value):
        c = value[i]
        if c == "\\":
            if i + 1 >= len(value) or value[i + 1] not in "\\,=":
                raise BadRequest(f'invalid field selector value "{value}": invalid escape sequence')
            out.append(value[i + 1])
            i += 2
            continue
        if c in ",=":
            raise BadRequest(f'invalid field selector value "{value}": unescaped "{c}"')
        out.append(c)
        i += 1
    return "".join(out)


_SET_TERM = re.compile(r"^\s*(?P<path>\S+?)\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)\s*$")


def parse_field_selector(text: str) -> list[FieldRequirement]:
    """``a.b=v,c!=w,d in (x,y)`` -> requirements. Kubernetes field selector syntax (``=``, ``==``,
    ``!=``, backslash escapes) plus ``in``/``notin`` sets."""
    out: list[FieldRequirement] = []
    if not text.strip():
        return out
    for term in _split_unescaped(text, ","):
        if not term.strip():
            raise BadRequest(f'invalid field selector "{text}": empty requirement')
        m = _SET_TERM.match(term)
        if m:
            path = parse_json_path(m["path"])
            values = tuple(v.strip() for v in m["values"].split(","))
            if values == ("",):
                raise BadRequest(f'invalid field selector "{term}": values set can\'t be empty')
            op = Operator.IN if m["op"] == "in" else Operator.NOT_IN
            out.append(FieldRequirement(path, op, values))
            continue
        for token in _FIELD_OPS:
            idx = _find_unescaped(term, token)
            if idx >= 0:
                lhs, rhs = term[:idx].strip(), term[idx + len(token) :].strip()
                path = parse_json_path(lhs)
                op = Operator.NOT_EQUALS if token == "!=" else Operator.EQUALS
                out.append(FieldRequirement(path, op, (_unescape(rhs),)))
                break
        else:
            raise BadRequest(f'invalid field selector "{term}": expected one of =, ==, !=, in, notin')
    return out


def _find_unescaped(term: str, token: str) -> int:
    """Index of the first operator ``token`` outside brackets, or -1 (``!=`` wins over ``=``)."""
    depth = 0
    i = 0
    while i < len(term):
        c = term[i]
        if c == "\\":
            i += 2
            continue
        if c == "[":
            depth += 1
        elif c == "]":
            depth = max(0, depth - 1)
        elif depth == 0:
            if term.startswith("!=", i):
                return i if token == "!=" else -1
            if term.startswith("==", i):
                return i if token == "==" else -1
            if c == "=":
                return i if token == "=" else -1
        i += 1
    return -1
