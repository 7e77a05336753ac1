"""Events about the objects of one cluster, for the storage and writer tests."""

from __future__ import annotations

from common.events import Delete, ListDone, ResourceType, Upsert

DEPLOYMENTS = ("apps", "v1", "deployments", "Deployment")
PODS = ("", "v1", "pods", "Pod")


class Objects:
    """Events about deployments of one cluster, for tests."""

    def __init__(self, cluster: str) -> None:
        self.cluster = cluster

    def upsert(
        self,
        name: str,
        rv: int,
        epoch: int = 1,
        *,
        ns: str = "default",
        body: str = "",
        gvr: tuple[str, str, str, str] = DEPLOYMENTS,
    ) -> Upsert:
        """An upsert of ``name`` (a deployment unless ``gvr`` = (group, version, resource, kind))."""
        obj = body or f'{{"metadata":{{"name":"{name}","resourceVersion":"{rv}"}}}}'
        group, version, resource, kind = gvr
        return Upsert(
            self.cluster,
            group,
            version,
            resource,
            kind,
            ns,
            name,
            f"uid-{name}",
            rv,
            epoch,
            "",
            "",
            obj.encode(),
        )

    def delete(self, name: str, rv: int, *, ns: str = "default") -> Delete:
        return Delete(self.cluster, "apps", "v1", "deployments", ns, name, rv)

    def list_done(self, epoch: int) -> ListDone:
        return ListDone(self.cluster, "apps", "v1", "deployments", epoch)

    def types(self) -> list[ResourceType]:
        """The resource types of this cluster's deployments and pods (a store knows a cluster by them)."""
        return [
            ResourceType(self.cluster, g, v, r, k, True, [], ["get", "list"], v)
            for g, v, r, k in (DEPLOYMENTS, PODS)
        ]
