"""The host cluster, as the synchro uses it: PediaClusters (watched, status, finalizer), their
credential Secrets, the Lease objects that shard clusters among workers, and the few generic
calls of the ClusterImportPolicy controller.

The kubeconfig is found and loaded by common/hostcluster.py (the same order as the API tier);
requests then go through the same raw :class:`KubeClient` as member clusters.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import msgspec

from common.credentials import (
    ClusterCredentials,
    credentials_from_host,
    secret_data_if_labelled,
    secret_ref_path,
)
from common.hostcluster import load_host_credentials
from common.settings import Settings
from synchro.client import ApiError, KubeClient, MemberGone

log = logging.getLogger(__name__)

GROUP = "clusters.clusterpedia.io"
VERSION = "v1alpha1"
PEDIACLUSTERS = f"/apis/{GROUP}/{VERSION}/pediaclusters"
FINALIZER = "clusterpedia.io/cleanup"
MERGE_PATCH = "application/merge-patch+json"

_decoder = msgspec.json.Decoder()


def host_credentials(settings: Settings) -> ClusterCredentials:
    """Credentials of the host, found in the order of common/hostcluster.py."""
    host = load_host_credentials(settings)
    log.info("host cluster %s (from %s)", host.server, host.source)
    return credentials_from_host(host)


class Host:
    def __init__(self, client: KubeClient) -> None:
        self.client = client

    async def close(self) -> None:
        await self.client.close()

    # -- PediaClusters ---------------------------------------------------------------------------

    async def watch_pediaclusters(self) -> AsyncIterator[tuple[str, dict[str, Any] | None]]:
        """(name, object) for every PediaCluster, then for every change (object None: deleted).
        A ("", None) pair marks the end of each full list: names not seen since the previous
        marker are gone."""
        while True:
            rv = ""
            async for page in self.client.list_pages(PEDIACLUSTERS, page_size=500):
                rv = rv or page.metadata.resourceVersion
                for raw in page.items or ():
                    obj = _decoder.decode(raw)
                    yield obj["metadata"]["name"], obj
            yield "", None
            try:
                while True:
                    async for event in self.client.watch(
                        PEDIACLUSTERS, resource_version=rv, timeout_seconds=300
                    ):
                        obj = _decoder.decode(event.object)
                        rv = obj["metadata"].get("resourceVersion") or rv
                        if event.type == "BOOKMARK":
                            continue
                        name = obj["metadata"]["name"]
                        yield name, (None if event.type == "DELETED" else obj)
            except MemberGone:
                continue

    async def patch_status(self, name: str, status: dict[str, Any]) -> None:
        try:
            await self.client.request(
                "PATCH", f"{PEDIACLUSTERS}/{name}/status", body={"status": status}, content_type=MERGE_PATCH
            )
        except ApiError as exc:
            if exc.code != 404:  # deleted meanwhile
                raise

    async def set_finalizers(self, obj: dict[str, Any], finalizers: list[str]) -> None:
        """Replace metadata.finalizers, guarded by the object's resourceVersion (409 on a race)."""
        meta = obj["metadata"]
        body = {"metadata": {"finalizers": finalizers, "resourceVersion": meta["resourceVersion"]}}
        await self.client.request(
            "PATCH", f"{PEDIACLUSTERS}/{meta['name']}", body=body, content_type=MERGE_PATCH
        )

    async def get_secret_data(self, namespace: str, name: str) -> dict[str, str]:
        """The data of a Secret labelled as member credentials (InvalidConfig otherwise)."""
        secret = await self.client.get_json(secret_ref_path(namespace, name))
        return secret_data_if_labelled(secret, f"{namespace}/{name}")

    # -- any kind (the ClusterImportPolicy controller: policies, their sources and references) -----

    async def list_objects(self, path: str, label_selector: str = "") -> list[dict[str, Any]]:
        """Every object of a collection path (pages of 500)."""
        params = {"labelSelector": label_selector} if label_selector else None
        out: list[dict[str, Any]] = []
        async for page in self.client.list_pages(path, page_size=500, params=params):
            out.extend(_decoder.decode(raw) for raw in page.items or ())
        return out

    async def get_object(self, path: str) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        try:
            return _decoder.decode(await self.client.request("GET", path))  # type: ignore[no-any-return]
        except ApiError as exc:
            if exc.code == 404:
                return None
            raise

    async def write_object(self, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST (create) or PUT (replace, guarded by the body's resourceVersion)."""
        return _decoder.decode(await self.client.request(method, path, body=body))  # type: ignore[no-any-return]

    async def delete_object(self, path: str) -> None:
        try:
            await self.client.request("DELETE", path)
        except ApiError as exc:
            if exc.code != 404:
                raise

    async def patch_object_status(self, path: str, status: dict[str, Any]) -> None:
        try:
            await self.client.request(
                "PATCH", f"{path}/status", body={"status": status}, content_type=MERGE_PATCH
            )
        except ApiError as exc:
            if exc.code != 404:
                raise

    # -- namespace and leases ------------------------------------------------------------------------

    async def ensure_namespace(self, namespace: str) -> None:
        try:
            await self.client.request("GET", f"/api/v1/namespaces/{namespace}")
            return
        except ApiError as exc:
            if exc.code != 404:
                raise
        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
        try:
            await self.client.request("POST", "/api/v1/namespaces", body=body)
        except ApiError as exc:
            if exc.code != 409:
                raise

    def _leases(self, namespace: str) -> str:
        return f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"

    async def list_leases(self, namespace: str) -> list[dict[str, Any]]:
        body = await self.client.get_json(self._leases(namespace))
        return list(body.get("items") or ())

    async def create_lease(self, namespace: str, lease: dict[str, Any]) -> dict[str, Any]:
        return _decoder.decode(await self.client.request("POST", self._leases(namespace), body=lease))  # type: ignore[no-any-return]

    async def replace_lease(self, namespace: str, lease: dict[str, Any]) -> dict[str, Any]:
        name = lease["metadata"]["name"]
        return _decoder.decode(  # type: ignore[no-any-return]
            await self.client.request("PUT", f"{self._leases(namespace)}/{name}", body=lease)
        )

    async def delete_lease(self, namespace: str, name: str) -> None:
        try:
            await self.client.request("DELETE", f"{self._leases(namespace)}/{name}")
        except ApiError as exc:
            if exc.code != 404:
                raise
