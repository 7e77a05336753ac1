"""Turns one list request (path, URL query, label and field selectors) into a ``Search`` (pure).

Clusterpedia's search conditions come two ways (seed, "How search conditions are applied"): as label
selector keys under ``search.clusterpedia.io/`` — the only way plain kubectl can carry them — and as
URL query parameters. Both land in the same ``Search``; everything else in the label selector is an
ordinary requirement on the object's labels. Every value is validated here, so that a bad request is
a clear 400 before any SQL is built, and the continue token is decoded here too (``encode_continue``
is its inverse, used by the executor).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import hashlib
import json
import re
from collections.abc import Iterable
from typing import Any

from apiserver import relations
from apiserver.grouping import GROUP_BY_LABEL, GROUP_BY_PARAM, parse_group_by
from apiserver.selectors import label_value_error, parse_field_selector, parse_label_selector
from apiserver.types import (
    ORDER_FIELDS,
    Continue,
    FieldRequirement,
    GroupField,
    GroupResource,
    LabelRequirement,
    Operator,
    OrderBy,
    Search,
    SetFilter,
)
from common.errors import BadRequest

SEARCH_PREFIX = "search.clusterpedia.io/"
_FUZZY_KEYS = ("internalstorage.clusterpedia.io/fuzzy-name",)

# label selector key (after the prefix) -> URL query parameter of the same condition
_LABEL_TO_PARAM = {
    "clusters": "clusters",
    "namespaces": "namespaces",
    "names": "names",
    "orderby": "orderby",
    "size": "size",
    "limit": "size",  # the original accepts .../limit as a synonym of .../size
    "offset": "offset",
    "since": "since",
    "before": "before",
    "owner-uid": "ownerUID",
    "owner-name": "ownerName",
    "owner-gr": "ownerGR",
    "owner-seniority": "ownerSeniority",
    "fuzzy-name": "fuzzyName",
    GROUP_BY_LABEL: GROUP_BY_PARAM,  # group-by counts (apiserver/grouping.py)
}
_LIST_CONDITIONS = ("clusters", "namespaces", "names")
_SCALAR_PARAMS: tuple[str, ...] = ("size", "offset", "since", "before", "ownerUID", "ownerName")
_SCALAR_PARAMS += ("ownerGR", "ownerSeniority", "fuzzyName", "limit", "continue")
_BOOL_PARAMS = ("withContinue", "withRemainingCount", "onlyMetadata")

# relationship queries (apiserver.relations)
_LABEL_TO_PARAM.update(relations.LABEL_PARAMS)
_SCALAR_PARAMS += relations.PARAMS

# Names of objects, namespaces and clusters: what Kubernetes path segments allow in practice
# (RBAC names carry ':'), and nothing that could be mistaken for SQL or a path.
_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._:@+-]{0,251}[A-Za-z0-9_])?")
_FUZZY = re.compile(r"[A-Za-z0-9._:@+_-]{1,253}")
_UID = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,63}")
_GROUP_RESOURCE = re.compile(r"([a-z0-9][a-z0-9-]{0,62})(\.[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?)?")
_MAX_OWNER_SENIORITY = 8


@dataclasses.dataclass
class _Builder:
    """Conditions collected from both sources before the Search is frozen."""

    lists: dict[str, SetFilter] = dataclasses.field(
        default_factory=lambda: {k: SetFilter() for k in _LIST_CONDITIONS}
    )
    scalars: dict[str, tuple[str, str]] = dataclasses.field(default_factory=dict)  # param -> (value, origin)
    orderby: list[OrderBy] = dataclasses.field(default_factory=list)
    orderby_origin: str = ""
    labels: list[LabelRequirement] = dataclasses.field(default_factory=list)
    fields: list[FieldRequirement] = dataclasses.field(default_factory=list)
    bools: dict[str, bool] = dataclasses.field(default_factory=dict)
    group_by: tuple[GroupField, ...] = ()
    group_by_origin: str = ""

    def set_group_by(self, fields: tuple[GroupField, ...], origin: str) -> None:
        if self.group_by and self.group_by != fields:
            raise BadRequest(
                f"group-by is given twice ({self.group_by_origin} and {origin}) with different fields"
            )
        self.group_by, self.group_by_origin = fields, origin

    def scalar(self, param: str, value: str, origin: str) -> None:
        old = self.scalars.get(param)
        if old is not None and old[0] != value:
            raise BadRequest(
                f"search condition {param!r} is given twice ({old[1]} and {origin}) with different values"
            )
        self.scalars[param] = (value, origin)

    def restrict(self, param: str, include: Iterable[str] | None, exclude: Iterable[str] = ()) -> None:
        cur = self.lists[param]
        inc = cur.include
        if include is not None:
            new = tuple(dict.fromkeys(include))
            inc = new if inc is None else tuple(v for v in inc if v in new)
        self.lists[param] = SetFilter(inc, tuple(dict.fromkeys((*cur.exclude, *exclude))))


def parse_search(
    query: Iterable[tuple[str, str]],
    *,
    group: str,
    version: str,
    resource: str,
    cluster: str = "",
    namespace: str = "",
    max_page_size: int = 10000,
) -> Search:
    """``query``: the URL query as (name, value) pairs (Starlette: ``request.query_params.multi_items()``),
    including ``labelSelector``, ``fieldSelector``, ``limit`` and ``continue``. ``cluster``: the
    ``/resources/clusters/{cluster}`` path form; ``namespace``: the path namespace. Unknown query
    parameters are ignored, as kube-apiserver ignores them. Pure; raises ``common.errors.BadRequest``."""
    b = _Builder()
    for key, raw in query:
        if key == "labelSelector":
            _apply_label_selector(b, raw)
        elif key == "fieldSelector":
            b.fields.extend(parse_field_selector(raw))
        elif key in _LIST_CONDITIONS:
            if names := _name_list(key, raw.split(",")):
                b.restrict(key, names)
        elif key == "orderby":
            _set_orderby(b, _parse_orderby_url(raw), "query parameter")
        elif key in _SCALAR_PARAMS:
            b.scalar(key, raw, "query parameter")
        elif key in _BOOL_PARAMS:
            b.bools[key] = _parse_bool(key, raw)
        elif key == GROUP_BY_PARAM:
            b.set_group_by(parse_group_by([raw], "query parameter"), "query parameter")
    return _freeze(
        b,
        group=group,
        version=version,
        resource=resource,
        cluster=cluster,
        namespace=namespace,
        max_page_size=max_page_size,
    )


def _apply_label_selector(b: _Builder, text: str) -> None:
    for req in parse_label_selector(text):
        if req.key.startswith(SEARCH_PREFIX) or req.key in _FUZZY_KEYS:
            name = req.key.rpartition("/")[2]
            param = _LABEL_TO_PARAM.get(name)
            if param is None:
                raise BadRequest(f'unknown search condition "{req.key}"')
            _apply_search_requirement(b, req.key, param, req.operator, req.values)
        else:
            for v in req.values:
                if (reason := label_value_error(v)) is not None:
                    raise BadRequest(f'unable to parse requirement: invalid label value "{v}": {reason}')
            b.labels.append(LabelRequirement(req.key, req.operator, req.values))


def _apply_search_requirement(
    b: _Builder, key: str, param: str, op: Operator, values: tuple[str, ...]
) -> None:
    if op in (Operator.EXISTS, Operator.DOES_NOT_EXIST):
        raise BadRequest(f'search condition "{key}" needs a value (=, ==, !=, in, notin)')
    if param in _LIST_CONDITIONS:
        names = _name_list(param, values)
        if op in (Operator.EQUALS, Operator.IN):
            b.restrict(param, names)
        else:
            b.restrict(param, None, names)
        return
    if param == "orderby":
        if op not in (Operator.EQUALS, Operator.IN):
            raise BadRequest(f'search condition "{key}" supports only =, == and in')
        _set_orderby(b, [_parse_orderby_label(v) for v in values], "label selector")
        return
    if param == GROUP_BY_PARAM:
        if op not in (Operator.EQUALS, Operator.IN):
            raise BadRequest(f'search condition "{key}" supports only =, == and in')
        b.set_group_by(parse_group_by(values, "label selector"), "label selector")
        return
    if op != Operator.EQUALS or len(values) != 1:
        raise BadRequest(f'search condition "{key}" supports only = and ==, with one value')
    b.scalar(param, values[0], "label selector")


def is_valid_name(value: str) -> bool:
    """Whether ``value`` can be the name of an object, a namespace or a cluster."""
    return _NAME.fullmatch(value) is not None


def _name_list(param: str, values: Iterable[str]) -> list[str]:
    out: list[str] = []
    for v in values:
        v = v.strip()
        if not v:
            continue
        if not _NAME.fullmatch(v):
            raise BadRequest(f"invalid value {v!r} in {param!r}: not a valid Kubernetes name")
        out.append(v)
    return out


def _set_orderby(b: _Builder, orders: list[OrderBy], origin: str) -> None:
    if b.orderby and b.orderby != orders:
        raise BadRequest(f"orderby is given twice ({b.orderby_origin} and {origin}) with different values")
    seen: set[str] = set()
    for o in orders:
        if o.field in seen:
            raise BadRequest(f'orderby field "{o.field}" is given twice')
        seen.add(o.field)
    b.orderby, b.orderby_origin = orders, origin


def _check_order_field(name: str) -> str:
    if name not in ORDER_FIELDS:
        raise BadRequest(f'unknown orderby field "{name}" (allowed: {", ".join(ORDER_FIELDS)})')
    return name


def _parse_orderby_url(text: str) -> list[OrderBy]:
    """``name desc,namespace`` -> [(name, desc), (namespace, asc)]."""
    out: list[OrderBy] = []
    for item in text.split(","):
        words = item.split()
        if not words:
            continue
        field = _check_order_field(words[0])
        if len(words) > 2 or (len(words) == 2 and words[1].lower() not in ("desc", "asc")):
            raise BadRequest(f'invalid orderby "{item.strip()}": expected "<field>" or "<field> desc"')
        out.append(OrderBy(field, len(words) == 2 and words[1].lower() == "desc"))
    return out


def _parse_orderby_label(value: str) -> OrderBy:
    """``name_desc`` -> (name, desc); ``created_at`` -> (created_at, asc)."""
    for suffix, desc in (("_desc", True), ("_asc", False)):
        if value.endswith(suffix) and value[: -len(suffix)] in ORDER_FIELDS:
            return OrderBy(value[: -len(suffix)], desc)
    return OrderBy(_check_order_field(value), False)


def _parse_bool(name: str, raw: str) -> bool:
    v = raw.strip().lower()
    if v in ("", "true", "1", "yes"):
        return True
    if v in ("false", "0", "no"):
        return False
    raise BadRequest(f'invalid value "{raw}" for {name}: expected true or false')


MAX_REQUIREMENTS = 100
"""Most label plus field requirements in one request (a longer selector is a 400, not a store error)."""
MAX_SET_VALUES = 1000
"""Most values of all ``in``/``notin`` sets and name lists of one request together."""
_MAX_INT64 = 2**63 - 1


def _check_sizes(b: _Builder) -> None:
    if len(b.labels) + len(b.fields) > MAX_REQUIREMENTS:
        raise BadRequest(
            f"too many selector requirements ({len(b.labels) + len(b.fields)}): at most {MAX_REQUIREMENTS}"
        )
    values = sum(len(r.values) for r in b.labels) + sum(len(r.values) for r in b.fields)
    values += sum(len(f.include or ()) + len(f.exclude) for f in b.lists.values())
    if values > MAX_SET_VALUES:
        raise BadRequest(
            f"too many values in selector sets and name lists ({values}): at most {MAX_SET_VALUES}"
        )


def _parse_count(name: str, raw: str, maximum: int | None) -> int:
    v = raw.strip()
    if not v.isdigit() or not v.isascii() or len(v) > 18:
        raise BadRequest(f'invalid value "{raw}" for {name}: expected a non-negative integer')
    n = int(v)
    if maximum is not None and n > maximum:
        raise BadRequest(f"invalid value {n} for {name}: must be at most {maximum}")
    return n


def parse_time(name: str, raw: str) -> dt.datetime:
    """RFC 3339 (``2006-01-02T15:04:05Z``, offsets, fractions), a date (``2006-01-02``, UTC midnight)
    or unix time in seconds or milliseconds -> naive UTC datetime."""
    v = raw.strip()
    try:
        if re.fullmatch(r"-?\d{1,16}", v):
            n = int(v)
            seconds = n / 1000 if abs(n) >= 100_000_000_000 else n
            return dt.datetime.fromtimestamp(seconds, dt.UTC).replace(tzinfo=None)
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", v):
            return dt.datetime.strptime(v, "%Y-%m-%d")
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})", v):
            # Python keeps microseconds: drop any nanosecond digits beyond them.
            v = re.sub(r"(\.\d{6})\d+", r"\1", v)
            parsed = dt.datetime.fromisoformat(v.replace("z", "Z"))
            return parsed.astimezone(dt.UTC).replace(tzinfo=None)
    except (ValueError, OverflowError, OSError):
        pass
    raise BadRequest(
        f'invalid value "{raw}" for {name}: expected RFC 3339 (2006-01-02T15:04:05Z), a date '
        "(2006-01-02) or unix seconds/milliseconds"
    )


def _parse_owner_gr(raw: str) -> GroupResource:
    v = raw.strip()
    if not _GROUP_RESOURCE.fullmatch(v):
        raise BadRequest(f'invalid ownerGR "{raw}": expected <resource>.<group>, e.g. deployments.apps')
    res, _, grp = v.partition(".")
    return GroupResource(grp, res)


def _freeze(
    b: _Builder,
    *,
    group: str,
    version: str,
    resource: str,
    cluster: str,
    namespace: str,
    max_page_size: int,
) -> Search:
    s: dict[str, str] = {k: v for k, (v, _) in b.scalars.items()}
    size = _parse_count("size", s["size"], max_page_size) if "size" in s else None
    # kube-apiserver never rejects a large limit (kubectl --chunk-size): clamp it, continue covers the rest
    limit = min(_parse_count("limit", s["limit"], None), max_page_size) if "limit" in s else None
    offset = _parse_count("offset", s["offset"], None) if "offset" in s else None
    since = parse_time("since", s["since"]) if "since" in s else None
    before = parse_time("before", s["before"]) if "before" in s else None
    owner_uid = s.get("ownerUID", "").strip()
    owner_name = s.get("ownerName", "").strip()
    if owner_uid and not _UID.fullmatch(owner_uid):
        raise BadRequest(f'invalid ownerUID "{owner_uid}"')
    if owner_name and not _NAME.fullmatch(owner_name):
        raise BadRequest(f'invalid ownerName "{owner_name}": not a valid Kubernetes name')
    if owner_uid and owner_name:
        raise BadRequest("ownerUID and ownerName cannot be used together")
    owner_gr = _parse_owner_gr(s["ownerGR"]) if s.get("ownerGR", "").strip() else None
    if owner_gr is not None and not owner_name:
        raise BadRequest("ownerGR needs ownerName")
    seniority = 0
    if "ownerSeniority" in s:
        seniority = _parse_count("ownerSeniority", s["ownerSeniority"], _MAX_OWNER_SENIORITY)
        if not (owner_uid or owner_name):
            raise BadRequest("ownerSeniority needs ownerUID or ownerName")
    clusters = b.lists["clusters"]
    if cluster and not _NAME.fullmatch(cluster):
        raise BadRequest(f'invalid cluster name "{cluster}"')
    if cluster and (
        (clusters.include is not None and cluster not in clusters.include) or cluster in clusters.exclude
    ):
        raise BadRequest(
            "the clusters search condition contradicts the cluster path: "
            f'this path already selects cluster "{cluster}"'
        )
    _check_sizes(b)
    if namespace and not _NAME.fullmatch(namespace):
        raise BadRequest(f'invalid namespace "{namespace}"')
    if owner_name and not cluster and (clusters.include is None or len(clusters.include) != 1):
        raise BadRequest("ownerName needs exactly one cluster: use the cluster path or one value in clusters")
    fuzzy = s.get("fuzzyName", "").strip()
    if fuzzy and not _FUZZY.fullmatch(fuzzy):
        raise BadRequest(f'invalid fuzzyName "{fuzzy}": letters, digits and ._:@+_- only')
    token = decode_continue(s["continue"]) if s.get("continue") else None
    relation = relations.parse_relation(s, cluster=cluster, namespace=namespace, clusters=clusters)
    return Search(
        group=group,
        version=version,
        resource=resource,
        single_cluster=cluster,
        namespace=namespace,
        clusters=clusters,
        namespaces=b.lists["namespaces"],
        names=b.lists["names"],
        labels=tuple(b.labels),
        fields=tuple(b.fields),
        orderby=tuple(b.orderby),
        limit=limit or None,  # limit=0 means no limit, as in kube-apiserver
        size=size or None,
        offset=offset,
        continue_token=token,
        since=since,
        before=before,
        owner_uid=owner_uid,
        owner_name=owner_name,
        owner_gr=owner_gr,
        owner_seniority=seniority,
        fuzzy_name=fuzzy,
        with_continue=b.bools.get("withContinue", False),
        with_remaining_count=b.bools.get("withRemainingCount", False),
        only_metadata=b.bools.get("onlyMetadata", False),
        group_by=b.group_by,
        relation=relation,
    )


# ------------------------------------------------------------------------------------ continue

_TOKEN_VERSION = 2
"""2: tokens carry the list's scope ("s"). A version-1 token (an earlier release) is refused with
a 400 that says to start the list again."""
_TOKEN_FIELDS = {*ORDER_FIELDS, "api_group", "resource"}


def encode_continue(token: Continue) -> str:
    """Opaque base64url JSON: ``{"v": 2, "s": scope, "o": [...], "k": [...], "rv": "..."}``
    (keyset) or ``{"v": 2, "s": scope, "off": N, "rv": "..."}`` (offset)."""
    body: dict[str, Any] = {"v": _TOKEN_VERSION, "s": token.scope}
    if token.offset is not None:
        body["off"] = token.offset
    else:
        body["o"] = list(token.order)
        body["k"] = list(token.key)
    if token.resource_version:
        body["rv"] = token.resource_version
    raw = json.dumps(body, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_continue(text: str) -> Continue:
    """Inverse of ``encode_continue``; a malformed or forged token is a 400."""
    if len(text) > 8192:
        raise BadRequest("invalid continue token: too long")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        body = json.loads(raw)
    except (binascii.Error, ValueError):
        raise BadRequest("invalid continue token: not a token issued by this server") from None
    if isinstance(body, dict) and body.get("v") == 1:
        raise BadRequest("continue token issued by an earlier version of this server: start the list again")
    if not isinstance(body, dict) or body.get("v") != _TOKEN_VERSION:
        raise BadRequest("invalid continue token: unknown token version")
    scope = body.pop("s", None)
    if not isinstance(scope, str) or len(scope) > 64:
        raise BadRequest("invalid continue token: bad scope")
    rv = body.get("rv", "")
    if not isinstance(rv, str) or not (rv == "" or rv.isdigit()) or len(rv) > 20:
        raise BadRequest("invalid continue token: bad resourceVersion")
    if "off" in body:
        off = body["off"]
        if type(off) is not int or not 0 <= off <= _MAX_INT64 or set(body) - {"v", "off", "rv"}:
            raise BadRequest("invalid continue token: bad offset")
        return Continue(offset=off, resource_version=rv, scope=scope)
    order, key = body.get("o"), body.get("k")
    if (
        not isinstance(order, list)
        or not isinstance(key, list)
        or not order
        or len(order) != len(key)
        or set(body) - {"v", "o", "k", "rv"}
    ):
        raise BadRequest("invalid continue token: bad key")
    for name, value in zip(order, key, strict=True):
        if not isinstance(name, str) or name.lstrip("-") not in _TOKEN_FIELDS:
            raise BadRequest("invalid continue token: bad key")
        want_int = name.lstrip("-") == "resource_version"
        ok = (
            type(value) is int and -_MAX_INT64 <= value <= _MAX_INT64
            if want_int
            else isinstance(value, str) and len(value) <= 512 and value.isascii() and value.isprintable()
        )
        if not ok:
            raise BadRequest("invalid continue token: bad key")
    return Continue(key=tuple(key), order=tuple(order), resource_version=rv, scope=scope)


def continue_scope(search: Search) -> str:
    """Fingerprint of what a list spans: resource (or a collection's resources), cluster path and
    namespace. Filters and paging may differ between pages; the list itself may not."""
    spanned = ",".join(f"{g}/{r}" for g, r in search.group_resources) or f"{search.group}/{search.resource}"
    text = f"{spanned}|{search.single_cluster}|{search.namespace}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def check_continue_scope(token: Continue, search: Search) -> None:
    """400 for a continue token issued for another list."""
    if token.scope != continue_scope(search):
        raise BadRequest(
            "invalid continue token: it was issued for a different list (another resource, cluster or"
            " namespace); continue with the request that returned it, or start again without continue"
        )
