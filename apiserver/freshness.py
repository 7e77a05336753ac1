"""Freshness warnings: a response that includes a cluster whose rows may be stale says so.

What the store holds of a cluster is only as fresh as its sync. The synchro records that in the
PediaCluster's status (``synchro/status.py``): the Ready condition (reason Healthy, Unhealthy,
Unauthorized, InvalidConfig, Pending, ...; since ``lastTransitionTime``) and, per resource, the
sync status and the initial list's progress. Every list, get and watch whose scope includes a
cluster that is not fully in sync carries a Kubernetes ``Warning`` header per such cluster, which
kubectl prints on stderr::

    Warning: cluster-3 is not synced: Unhealthy since 2026-12-06 17:04:35 UTC (cannot reach
    https://127.0.0.1:27948: ConnectError: All connection attempts failed); its rows may be stale

The scope is the path's cluster, else every cluster minus what the ``clusters`` search condition
leaves out. The statuses come from the one PediaCluster reader of the API process
(``apiserver/pediaclusters.py``, at most ``refresh_seconds`` old); an API tier without a host adds
no warnings. Deriving the texts is pure (``stale_clusters``, ``warning_value``), unit-tested.
"""

from __future__ import annotations

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


def warning_value(cluster: str, reason: str) -> str:
    """The ``Warning`` header (RFC 7234 warn-code 299, as kube-apiserver's): printable ASCII only,
    quotes and backslashes escaped."""
    text = "".join(c if " " <= c <= "~" else "?" for c in f"{cluster} is {reason}")
    return '299 - "' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def warnings_for(stale: Mapping[str, str], in_scope: Callable[[str], bool]) -> list[str]:
    """The header values for the stale clusters a response's scope includes, by cluster name."""
    return [warning_value(c, stale[c]) for c in sorted(stale) if in_scope(c)]


class Freshness:
    """The stale clusters, derived from the shared PediaCluster list when it changes."""

    def __init__(self, directory: PediaClusterDirectory) -> None:
        self.directory = directory
        self._source: dict[str, Any] | None = None
        self._stale: dict[str, str] = {}

    async def stale(self) -> dict[str, str]:
        """cluster -> reason, for the clusters not in sync ({} until the host could be read)."""
        current = await self.directory.current()
        if current is None:
            return {}
        if current is not self._source:
            self._stale, self._source = stale_clusters(current), current
        return self._stale
