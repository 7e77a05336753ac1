"""A member whose resourceVersions went backwards (etcd restored, cluster rebuilt) gets its
resource purged before the older list, or every upsert would lose the store's rv guard."""

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import msgspec

from common.events import ListDone, PurgeCluster, Upsert
from common.settings import SynchroSettings
from common.transform import ObjectTransformer
from common.types import GVR
from synchro.client import ListMeta, MemberPage
from synchro.discovery import Target
from synchro.manager import recorded_epochs
from synchro.publishing import EventFunnel
from synchro.resource_sync import ResourceSync
from synchro.status import ClusterStatus, ResourceStatus
from tests.synchro.test_publishing import RecordingPublisher

GVR_CM = GVR("", "v1", "configmaps")


class OneListClient:
    """The member's list endpoint (protocol edge): one page at a given resourceVersion."""

    def __init__(self, rv: int) -> None:
        self.rv = rv

    async def list_pages(
        self, path: str, *, page_size: int, prefetch: asyncio.Semaphore | None = None
    ) -> AsyncIterator[MemberPage]:
        item = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "a", "namespace": "default", "uid": "u1", "resourceVersion": str(self.rv)},
        }
        yield MemberPage(ListMeta(resourceVersion=str(self.rv)), [msgspec.Raw(json.dumps(item).encode())])


def list_once(rv: int, funnel: EventFunnel, epochs: dict[str, int]) -> None:
    sync = ResourceSync(
        cluster="c",
        client=OneListClient(rv),  # type: ignore[arg-type]
        target=Target(GVR_CM, "ConfigMap", True),
        transformer=ObjectTransformer("c", GVR_CM, "ConfigMap"),
        funnel=funnel,
        status=ResourceStatus("", "configmaps"),
        settings=SynchroSettings(),
        epochs=epochs,
    )

    async def body() -> None:
        task = asyncio.create_task(funnel.run())
        try:
            await sync._list()
            await funnel.drained()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(body())


def kinds(events: list[Any]) -> list[str]:
    return [type(e).__name__ for e in events]


def test_backwards_resource_version_purges_before_the_list() -> None:
    pub = RecordingPublisher()
    funnel = EventFunnel(pub)
    epochs: dict[str, int] = {}
    list_once(1000, funnel, epochs)
    list_once(1200, funnel, epochs)  # moving forward: no purge
    assert kinds([e for b in pub.batches for e in b]) == ["Upsert", "ListDone"] * 2
    pub.batches.clear()
    list_once(40, funnel, epochs)  # the member went back in time
    events = [e for b in pub.batches for e in b]
    assert events[0] == PurgeCluster("c", "", "configmaps")
    assert isinstance(events[1], Upsert) and events[1].epoch == 40
    assert isinstance(events[2], ListDone) and events[2].epoch == 40
    assert epochs == {GVR_CM.group_resource: 40}
    assert GVR_CM.group_resource == "configmaps"


def test_last_list_resource_version_survives_in_the_status() -> None:
    """The status records each resource's last list resourceVersion; a worker taking the cluster
    over (restart, lease handover) starts from it, so a rewind meanwhile is still detected."""
    status = ClusterStatus()
    status.resource("", "configmaps").list_rv = "1200"
    status.resource("apps", "deployments").list_rv = "900"
    status.resource("", "pods")  # never listed
    obj = {"status": status.render()}
    assert recorded_epochs(obj) == {"configmaps": 1200, "deployments.apps": 900}
    assert recorded_epochs({}) == {}
