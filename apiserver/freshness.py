"""Freshness warnings: a response that includes a cluster whose rows may be stale says so.

What the store holds of a cluster is only as fresh as its sync. The synchro records that in the
PediaCluster's status (``synchro/status.py``): the Ready condition (reason Healthy, Unhealthy,
Unauthorized, InvalidConfig, Pending, ...; since ``lastTransitionTime``) and, per resource, the
sync status and the initial list's progress. Every list, get and watch whose scope includes a
cluster that is not fully in sync carries a Kubernetes ``Warning`` header per such cluster, which
kubectl prints on stderr::

    Warning: cluster-3 is not synced: Unhealthy since 2026-12-06 17:04:35 UTC (cannot reach
    https://127.0.0.1:27948: ConnectError: All connection attempts failed); its rows may be stale

A cluster in sync by those can still lag: its events wait in the queue for a writer (writers
stopped or slower than the members change). The synchro reports the queue time of the cluster's
oldest event not yet stored as ``status.unappliedEventsSince`` (``synchro/publishing.py``), and a
cluster lagging longer than ``apiserver.stale_lag_seconds`` is named too::

    Warning: cluster-1 is lagging: its events since 2026-12-06 17:04:35 UTC are not stored yet
    (42 s behind); its rows may be stale

The scope is the path's cluster, else every cluster minus what the ``clusters`` search condition
leaves out. The statuses come from the one PediaCluster reader of the API process
(``apiserver/pediaclusters.py``, at most ``refresh_seconds`` old); an API tier without a host adds
no warnings. Deriving the texts is pure (``stale_clusters``, ``warning_value``), unit-tested.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Mapping
from typing import Any

from apiserver.pediaclusters import PediaClusterDirectory

MAX_MESSAGE_CHARS = 160
"""The Ready message is cut to this (a warning is one line for a person; kube-apiserver bounds
warning headers too)."""


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _clock(timestamp: str) -> str:
    """``2026-12-06T12:01:07Z`` -> ``2026-12-06 12:01:07 UTC`` (as written when it is not RFC 3339)."""
    date, sep, rest = timestamp.partition("T")
    if not sep or not rest.endswith("Z"):
        return timestamp
    return f"{date} {rest[:-1]} UTC"


def _short(message: str) -> str:
    message = " ".join(message.split())
    return message if len(message) <= MAX_MESSAGE_CHARS else message[: MAX_MESSAGE_CHARS - 3] + "..."


def stale_reason(pediacluster: Mapping[str, Any]) -> str:
    """Why this PediaCluster's rows may be stale or incomplete; "" when it is fully in sync."""
    status = pediacluster.get("status")
    status = status if isinstance(status, dict) else {}
    conditions = status.get("conditions")
    ready = (
        next(
            (c for c in conditions or () if isinstance(c, dict) and c.get("type") == "Ready"),
            None,
        )
        if isinstance(conditions, list)
        else None
    )
    if ready is None:
        return "not synced: no status yet (the synchro has not reported on it); its rows may be missing"
    if ready.get("status") != "True":
        reason = _text(ready.get("reason")) or "NotReady"
        since = _text(ready.get("lastTransitionTime"))
        message = _short(_text(ready.get("message")))
        text = f"not synced: {reason}"
        if since:
            text += f" since {_clock(since)}"
        if message:
            text += f" ({message})"
        return text + "; its rows may be stale"
    unsynced: list[str] = []
    for group in status.get("resources") or ():
        if not isinstance(group, dict):
            continue
        for res in group.get("resources") or ():
            if not isinstance(res, dict):
                continue
            name = _text(res.get("resource")) + (
                "." + _text(group.get("group")) if group.get("group") else ""
            )
            for cond in res.get("syncConditions") or ():
                if not isinstance(cond, dict):
                    continue
                state = _text(cond.get("status"))
                progress = _text(cond.get("initialListProgress"))
                if state == "Syncing" and progress in ("", "done"):
                    continue
                detail = f"initial list {progress}" if state == "Syncing" else state or "unknown"
                unsynced.append(f"{name} {detail}")
    if unsynced:
        shown = ", ".join(unsynced[:5]) + (f" and {len(unsynced) - 5} more" if len(unsynced) > 5 else "")
        return f"not fully synced: {shown}; its rows may be incomplete"
    return ""


def stale_clusters(pediaclusters: Mapping[str, Any]) -> dict[str, str]:
    """cluster name -> why it is not in sync (``stale_reason``), for a PediaClusterList."""
    out: dict[str, str] = {}
    for item in pediaclusters.get("items") or ():
        if not isinstance(item, dict):
            continue
        name = _text((item.get("metadata") or {}).get("name"))
        reason = stale_reason(item) if name else ""
        if reason:
            out[name] = reason
    return out


def unapplied_since(pediacluster: Mapping[str, Any]) -> float | None:
    """``status.unappliedEventsSince`` as Unix seconds (None: absent or not RFC 3339)."""
    status = pediacluster.get("status")
    since = status.get("unappliedEventsSince") if isinstance(status, dict) else None
    if not isinstance(since, str) or len(since) > 40:
        return None
    try:
        parsed = dt.datetime.fromisoformat(since.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.timestamp() if parsed.tzinfo is not None else None


def lagging_clusters(pediaclusters: Mapping[str, Any]) -> dict[str, float]:
    """cluster name -> when its oldest event not yet stored was queued (Unix seconds)."""
    out: dict[str, float] = {}
    for item in pediaclusters.get("items") or ():
        if not isinstance(item, dict):
            continue
        name = _text((item.get("metadata") or {}).get("name"))
        since = unapplied_since(item) if name else None
        if since is not None:
            out[name] = since
    return out


def lag_reason(since: float, now: float) -> str:
    behind = max(0, int(now - since))
    try:
        clock = dt.datetime.fromtimestamp(since, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError):  # a hostile status: far outside this era
        clock = "long ago"
    return f"lagging: its events since {clock} are not stored yet ({behind} s behind); its rows may be stale"


def warning_value(cluster: str, reason: str) -> str:
    """The ``Warning`` header (RFC 7234 warn-code 299, as kube-apiserver's): printable ASCII only,
    quotes and backslashes escaped."""
    text = "".join(c if " " <= c <= "~" else "?" for c in f"{cluster} is {reason}")
    return '299 - "' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def warnings_for(stale: Mapping[str, str], in_scope: Callable[[str], bool]) -> list[str]:
    """The header values for the stale clusters a response's scope includes, by cluster name."""
    return [warning_value(c, stale[c]) for c in sorted(stale) if in_scope(c)]


class Freshness:
    """The stale clusters, derived from the shared PediaCluster list when it changes (the lagging
    ones also as time passes: ``lag_seconds`` is the threshold, 0 none)."""

    def __init__(self, directory: PediaClusterDirectory, *, lag_seconds: float = 30.0) -> None:
        self.directory = directory
        self.lag_seconds = lag_seconds
        self._source: dict[str, Any] | None = None
        self._stale: dict[str, str] = {}
        self._lagging: dict[str, float] = {}

    async def stale(self) -> dict[str, str]:
        """cluster -> reason, for the clusters not in sync ({} until the host could be read)."""
        current = await self.directory.current()
        if current is None:
            return {}
        if current is not self._source:
            self._stale, self._source = stale_clusters(current), current
            self._lagging = lagging_clusters(current) if self.lag_seconds > 0 else {}
        if not self._lagging:
            return self._stale
        now = time.time()
        late = {
            c: lag_reason(since, now)
            for c, since in self._lagging.items()
            if c not in self._stale and now - since > self.lag_seconds
        }
        return {**self._stale, **late} if late else self._stale
