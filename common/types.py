"""Type aliases and small value types used across tiers."""

from __future__ import annotations

from typing import NamedTuple


class GVR(NamedTuple):
    """A group/version/resource triple; ``group`` is ``""`` for the core (legacy) group."""

    group: str
    version: str
    resource: str

    @property
    def group_resource(self) -> str:
        """``deployments.apps`` / ``pods``, the form kubectl and the seed print."""
        return f"{self.resource}.{self.group}" if self.group else self.resource

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def __str__(self) -> str:
        return f"{self.group_resource}/{self.version}"


EVENT_SUBJECT_FIELDS: dict[tuple[str, str], str] = {
    ("", "events"): "involvedObject",
    ("events.k8s.io", "events"): "regarding",
}
"""(group, resource) of the Event kinds -> the field naming the object an event is about. The store
keeps that object's uid as the event's ``owner_uid`` (an indexed column; ``common.transform``), so
the events of one object (``kubectl describe``'s field selector on ``involvedObject.uid``, and
``ownerUID``) are found through that index."""


class ObjectKey(NamedTuple):
    """Identity of one synced object in the store: the same object in each API version is one row."""

    cluster: str
    group: str
    resource: str
    namespace: str  # "" for cluster-scoped objects
    name: str


CLUSTER_ANNOTATION = "shadow.clusterpedia.io/cluster-name"
"""Set by the synchro on every stored object: which member cluster it came from."""

MEMBER_RV_ANNOTATION = "clusterpedia.io/member-resource-version"
"""Set by the synchro on every stored object: the member's own ``metadata.resourceVersion`` (served
objects carry the store's global revision there instead, see ``common.storage.revisions``)."""


RBAC_GROUP = "rbac.authorization.k8s.io"
RBAC_RESOURCES = ("roles", "clusterroles", "rolebindings", "clusterrolebindings")
"""The member RBAC objects every PediaCluster syncs besides its ``spec.resources``
(``synchro.sync_member_rbac``): the API tier evaluates them to show each user only what that
member's own RBAC lets them read (DESIGN section 8). Unless the spec asks for them too, they stay
out of the search catalog, so discovery lists what the user asked for."""
