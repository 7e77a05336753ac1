"""Formatting helpers shared by the table printers, written to print exactly what kube-apiserver prints.

kubectl shows the cells the server computed, so each helper reproduces one of Kubernetes' formatting
rules: ``human_duration`` is apimachinery's ``duration.HumanDuration`` (AGE), ``format_labels`` /
``format_selector`` are ``labels.FormatLabels`` / ``metav1.FormatLabelSelector``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

Obj = Mapping[str, Any]
NONE = "<none>"


def get(obj: Any, *path: str | int) -> Any:
    """``obj[p0][p1]...`` or None when any step is missing or of the wrong shape."""
    cur = obj
    for p in path:
        if isinstance(p, int):
            if not isinstance(cur, list) or p >= len(cur):
                return None
            cur = cur[p]
        else:
            if not isinstance(cur, Mapping):
                return None
            cur = cur.get(p)
        if cur is None:
            return None
    return cur


def get_str(obj: Any, *path: str | int) -> str:
    v = get(obj, *path)
    return v if isinstance(v, str) else ""


def get_int(obj: Any, *path: str | int) -> int:
    v = get(obj, *path)
    return int(v) if isinstance(v, int | float) and not isinstance(v, bool) else 0


def get_list(obj: Any, *path: str | int) -> list[Any]:
    v = get(obj, *path)
    return v if isinstance(v, list) else []


def get_map(obj: Any, *path: str | int) -> Mapping[str, Any]:
    v = get(obj, *path)
    return v if isinstance(v, Mapping) else {}


def parse_time(value: Any) -> dt.datetime | None:
    """RFC 3339 (``2024-01-02T03:04:05Z``, with optional fraction/offset) -> aware datetime."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed


def human_duration(seconds_total: float) -> str:
    """apimachinery ``duration.HumanDuration``: 42s, 5m3s, 27m, 5h3m, 20h, 3d4h, 68d, 2y10d, 9y."""
    seconds = int(seconds_total)
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        s = seconds % 60
        return f"{minutes}m" if s == 0 else f"{minutes}m{s}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = seconds // 3600
    if hours < 8:
        m = minutes % 60
        return f"{hours}h" if m == 0 else f"{hours}h{m}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        h = hours % 24
        return f"{hours // 24}d" if h == 0 else f"{hours // 24}d{h}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        dy = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if dy == 0 else f"{hours // 24 // 365}y{dy}d"
    return f"{hours // 24 // 365}y"


def since(value: Any, now: dt.datetime) -> str:
    """Age of an RFC 3339 timestamp at ``now``; ``<unknown>`` when unset (translateTimestampSince)."""
    t = parse_time(value)
    if t is None:
        return "<unknown>"
    return human_duration((now - t).total_seconds())


def age(obj: Obj, now: dt.datetime) -> str:
    return since(get(obj, "metadata", "creationTimestamp"), now)


def format_labels(labels: Any) -> str:
    """``labels.FormatLabels``: sorted ``k=v`` joined by commas, ``<none>`` when empty."""
    if not isinstance(labels, Mapping) or not labels:
        return NONE
    return ",".join(f"{k}={labels[k]}" for k in sorted(labels))


def selector_string(selector: Any) -> str:
    """``metav1.LabelSelectorAsSelector(sel).String()`` ("" for nil or empty; ``<error>`` if invalid)."""
    if not isinstance(selector, Mapping):
        return ""
    reqs: list[tuple[str, str]] = []
    for k, v in get_map(selector, "matchLabels").items():
        reqs.append((k, f"{k}={v}"))
    for expr in get_list(selector, "matchExpressions"):
        key = get_str(expr, "key")
        op = get_str(expr, "operator")
        values = sorted(str(v) for v in get_list(expr, "values"))
        if op == "In":
            reqs.append((key, f"{key} in ({','.join(values)})"))
        elif op == "NotIn":
            reqs.append((key, f"{key} notin ({','.join(values)})"))
        elif op == "Exists":
            reqs.append((key, key))
        elif op == "DoesNotExist":
            reqs.append((key, f"!{key}"))
        else:
            return "<error>"
    reqs.sort(key=lambda r: r[0])
    return ",".join(r[1] for r in reqs)


def format_selector(selector: Any) -> str:
    """``metav1.FormatLabelSelector``: like :func:`selector_string` but ``<none>`` when empty."""
    return selector_string(selector) or NONE


def containers_cells(containers: list[Any]) -> tuple[str, str]:
    """Names and images of containers, comma-joined (layoutContainerCells)."""
    names = ",".join(get_str(c, "name") for c in containers)
    images = ",".join(get_str(c, "image") for c in containers)
    return names, images


def bool_ptr(value: Any) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    return "<unset>"


def access_modes(modes: list[Any]) -> str:
    """``helper.GetAccessModesAsString``: RWO, ROX, RWX, RWOP in that order, each once."""
    out = []
    for mode, short in (
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ):
        if mode in modes:
            out.append(short)
    return ",".join(out)
