"""The PediaCluster ``status`` a cluster's sync maintains, built purely from its state.

:class:`ClusterStatus` is mutated by the sync tasks (cheap attribute writes, no I/O) and rendered
by :meth:`ClusterStatus.render` into the dict the status writer merges into the host object, at
most once per ``status_update_interval_seconds``. ``lastTransitionTime`` changes only when a
status really changes, as Kubernetes conditions expect.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

READY = "Ready"

# Ready condition reasons
HEALTHY = "Healthy"
UNHEALTHY = "Unhealthy"
INVALID_CONFIG = "InvalidConfig"
UNAUTHORIZED = "Unauthorized"
PENDING = "Pending"
SYNC_FAILED = "SyncFailed"
"""The cluster's sync stopped on an unexpected error; it is restarted with a back-off."""

# syncCondition statuses
SYNC_PENDING = "Pending"
SYNC_SYNCING = "Syncing"
SYNC_STOP = "Stop"
SYNC_ERROR = "Error"

RESOURCE_NOT_FOUND = "ResourceNotFound"
DISCOVERY_FAILED = "DiscoveryFailed"
"""A group's discovery document could not be read: its resources are left as they are."""


LAG_REPORT_SECONDS = 5.0
"""``unappliedEventsSince`` is reported once the cluster's oldest event not yet stored is this old:
writers normally store an event within milliseconds, and a status write per interval for every busy
cluster would load the host for nothing. The API tier's threshold (``apiserver.stale_lag_seconds``)
decides when that is a warning."""


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339(unix_seconds: float) -> str:
    return datetime.fromtimestamp(unix_seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ResourceStatus:
    """Sync state of one resource (one syncCondition: we sync one version per resource)."""

    __slots__ = (
        "group",
        "kind",
        "last_transition",
        "list_rv",
        "listed",
        "listing",
        "message",
        "namespaced",
        "objects",
        "reason",
        "remaining",
        "resource",
        "status",
        "storage_version",
        "version",
    )

    def __init__(
        self, group: str, resource: str, *, kind: str = "", namespaced: bool = False, version: str = ""
    ) -> None:
        self.group = group
        self.resource = resource
        self.kind = kind
        self.namespaced = namespaced
        self.version = version
        self.storage_version = version
        self.status = SYNC_PENDING
        self.reason = ""
        self.message = ""
        self.last_transition = now_rfc3339()
        self.objects = 0
        self.listed = 0
        self.remaining: int | None = None
        self.listing = False
        self.list_rv = ""

    def set(self, status: str, reason: str = "", message: str = "") -> bool:
        """Change the sync status; True when anything changed."""
        changed = (status, reason, message) != (self.status, self.reason, self.message)
        if status != self.status:
            self.last_transition = now_rfc3339()
        self.status, self.reason, self.message = status, reason, message
        return changed

    def progress(self) -> str:
        if self.listing:
            if self.remaining is not None:
                return f"{self.listed}/{self.listed + self.remaining}"
            return f"{self.listed}/?"
        return "done" if self.status in (SYNC_SYNCING, SYNC_STOP) else ""

    def render(self) -> dict[str, Any]:
        cond: dict[str, Any] = {
            "version": self.version,
            "storageVersion": self.storage_version,
            "status": self.status,
            "lastTransitionTime": self.last_transition,
            "objects": self.objects,
            "listedObjects": self.listed,
        }
        if self.reason:
            cond["reason"] = self.reason
        if self.message:
            cond["message"] = self.message
        progress = self.progress()
        if progress:
            cond["initialListProgress"] = progress
        if self.list_rv:
            cond["listResourceVersion"] = self.list_rv
        entry: dict[str, Any] = {"resource": self.resource, "syncConditions": [cond]}
        if self.kind:
            entry["kind"] = self.kind
            entry["namespaced"] = self.namespaced
        return entry


class ClusterStatus:
    """Ready condition, member version and per-resource sync states of one PediaCluster."""

    def __init__(self) -> None:
        self.ready = "Unknown"
        self.reason = PENDING
        self.message = "waiting for the first health probe"
        self.last_transition = now_rfc3339()
        self.version = ""
        self.resources: dict[tuple[str, str], ResourceStatus] = {}
        self.internal: set[tuple[str, str]] = set()
        """Resources synced for Clusterpedia's own use (the member's RBAC), not asked for by the
        spec: listed in ``resources``, left out of ``resourcesSummary``."""
        self.dirty = True
        self.unapplied_since = ""
        """RFC 3339 time this cluster's oldest event not yet stored was queued, "" when there is
        none older than ``LAG_REPORT_SECONDS`` (see ``set_unapplied``)."""

    def set_unapplied(self, since: float | None, now: float) -> None:
        """From the funnel's ``unapplied_since`` (Unix seconds, None: everything stored)."""
        lagging = since is not None and now - since >= LAG_REPORT_SECONDS
        self.unapplied_since = rfc3339(since) if since is not None and lagging else ""

    def set_ready(self, ready: bool, reason: str, message: str = "") -> None:
        value = "True" if ready else "False"
        if value != self.ready:
            self.last_transition = now_rfc3339()
        if (value, reason, message) != (self.ready, self.reason, self.message):
            self.dirty = True
        self.ready, self.reason, self.message = value, reason, message

    def resource(self, group: str, resource: str) -> ResourceStatus:
        key = (group, resource)
        rs = self.resources.get(key)
        if rs is None:
            rs = self.resources[key] = ResourceStatus(group, resource)
            self.dirty = True
        return rs

    def retain(self, keys: set[tuple[str, str]]) -> None:
        """Forget resources no longer requested."""
        for key in list(self.resources):
            if key not in keys:
                del self.resources[key]
                self.dirty = True

    def stop_all(self, reason: str, message: str) -> None:
        for rs in self.resources.values():
            if rs.status != SYNC_ERROR:
                rs.listing = False
                rs.set(SYNC_STOP, reason, message)
        self.dirty = True

    def problems(self) -> list[str]:
        """Messages of resources in Error, for the Ready condition's message."""
        return [
            f"{rs.resource}{'.' + rs.group if rs.group else ''}: {rs.message or rs.reason}"
            for rs in self.resources.values()
            if rs.status == SYNC_ERROR or rs.reason == DISCOVERY_FAILED
        ]

    def summary(self) -> str:
        """``syncing/requested`` over what the spec asked for (the RESOURCES printer column)."""
        asked = [rs for key, rs in self.resources.items() if key not in self.internal]
        syncing = sum(1 for rs in asked if rs.status == SYNC_SYNCING)
        return f"{syncing}/{len(asked)}"

    def render(self) -> dict[str, Any]:
        message = self.message
        problems = self.problems()
        if problems and self.reason == HEALTHY:
            message = "; ".join(problems)
        ready: dict[str, Any] = {
            "type": READY,
            "status": self.ready,
            "reason": self.reason,
            "message": message,
            "lastTransitionTime": self.last_transition,
        }
        groups: dict[str, list[dict[str, Any]]] = {}
        for (group, _), rs in sorted(self.resources.items()):
            groups.setdefault(group, []).append(rs.render())
        body: dict[str, Any] = {
            "conditions": [ready],
            "version": self.version,
            "resourcesSummary": self.summary(),
            "resources": [{"group": g, "resources": rs} for g, rs in groups.items()],
        }
        # None when caught up: the merge patch then removes the field
        body["unappliedEventsSince"] = self.unapplied_since or None
        return body
