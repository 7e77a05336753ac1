"""List, then watch, one resource of one member cluster, forever; relist on 410 Gone.

The epoch design keeps no per-object state here: every object of a list is published as an Upsert
stamped with ``epoch`` = the list's resourceVersion, then a ListDone(epoch) tells the writer that
rows of this resource with an older epoch vanished while nobody watched. Watch events carry the
same epoch. Memory is one list page (plus a read-ahead page when the worker's budget has one) and
the funnel's bounded queue, whatever the object count.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence

import httpx
import msgspec

from common.events import ListDone, PurgeCluster
from common.settings import SynchroSettings
from common.transform import ObjectTransformer, parse_resource_version, resource_version_of
from synchro import metrics
from synchro.client import ApiError, KubeClient, MemberGone
from synchro.discovery import Target, gv_path
from synchro.heap import release_free_heap_soon
from synchro.publishing import EventFunnel
from synchro.status import SYNC_ERROR, SYNC_SYNCING, ResourceStatus

log = logging.getLogger(__name__)

TRANSPORT_ERRORS = (httpx.TransportError, OSError)


class ResourceSync:
    def __init__(
        self,
        *,
        cluster: str,
        client: KubeClient,
        target: Target,
        transformer: ObjectTransformer,
        funnel: EventFunnel,
        status: ResourceStatus,
        settings: SynchroSettings,
        list_slots: asyncio.Semaphore | None = None,
        prefetch_slots: asyncio.Semaphore | None = None,
        epochs: dict[str, int] | None = None,
    ) -> None:
        self.cluster = cluster
        self.epochs = epochs if epochs is not None else {}
        """group/resource -> the highest list epoch used so far (shared by the cluster's syncs)."""
        self.list_slots = list_slots or asyncio.Semaphore(1)
        self.prefetch_slots = prefetch_slots
        """Read-ahead pages shared by every list of the worker (None: no read-ahead)."""
        self.client = client
        self.target = target
        self.transformer = transformer
        self.funnel = funnel
        self.status = status
        self.settings = settings
        self.path = f"{gv_path(target.gvr.group, target.gvr.version)}/{target.gvr.resource}"
        self.label = target.gvr.group_resource
        self.epoch = 0
        self.rv = ""
        self.lists = 0

    async def run(self) -> None:
        backoff = 0.5
        while True:
            try:
                if self.lists:
                    metrics.RELISTS.labels(self.cluster, self.label).inc()
                self.lists += 1
                async with self.list_slots:
                    rv = await self._list()
                backoff = 0.5
                while True:
                    rv = await self._watch_with_retries(rv)
            except MemberGone as exc:
                log.info("relisting after 410 Gone", extra={"cluster": self.cluster, "resource": self.label})
                self.status.message = f"relisting: {exc.message}"
            except ApiError as exc:
                self._error(exc.reason or "ApiError", f"listing {self.path}: {exc}")
            except TRANSPORT_ERRORS as exc:
                self._error("ConnectionError", f"listing {self.path}: {exc!r}")
            except (msgspec.DecodeError, ValueError) as exc:
                # A response we cannot parse: report it, then start over with a fresh list.
                self._error("DecodeError", f"reading {self.path}: {exc}")
            await asyncio.sleep(backoff * (1 + random.random() / 2))
            backoff = min(backoff * 2, 30.0)

    def _error(self, reason: str, message: str) -> None:
        self.status.listing = False
        self.status.set(SYNC_ERROR, reason, message)
        log.warning(message, extra={"cluster": self.cluster, "resource": self.label})

    async def _list(self) -> str:
        st = self.status
        st.listing, st.listed, st.remaining = True, 0, None
        st.set(SYNC_SYNCING)
        epoch, list_rv = 0, ""
        events = metrics.EVENTS.labels(self.cluster, self.label, "LIST")
        async for page in self.client.list_pages(
            self.path, page_size=self.settings.list_page_size, prefetch=self.prefetch_slots
        ):
            if not epoch:
                epoch = parse_resource_version(page.metadata.resourceVersion)
                list_rv = page.metadata.resourceVersion
                await self._check_rewind(epoch)
            count = await self._publish_page(page.items or (), epoch)
            events.inc(count)
            st.remaining = page.metadata.remainingItemCount
            # Let go of page n (and the Raw slices pinning its buffer) before asking for page
            # n+1: a list holds one page, plus a read-ahead page only when it got a budget slot.
            del page
        gvr = self.target.gvr
        await self.funnel.put(ListDone(self.cluster, gvr.group, gvr.version, gvr.resource, epoch))
        self.epoch = epoch
        st.objects, st.listing, st.list_rv = st.listed, False, list_rv
        metrics.set_objects(self.cluster, self.label, st.objects)
        metrics.touch(self.cluster, self.label)
        release_free_heap_soon()  # the list's pages are gone; give their heap space back
        return list_rv

    async def _publish_page(self, items: Sequence[msgspec.Raw], epoch: int) -> int:
        """Upserts for one page's items (the loop variables die with this frame)."""
        st = self.status
        for raw in items:
            upsert = self.transformer.upsert(raw, epoch)
            if upsert is not None:
                await self.funnel.put(upsert)
                st.listed += 1
        return len(items)

    async def _check_rewind(self, epoch: int) -> None:
        """A list older than one already used (etcd restored from a backup, or the cluster rebuilt
        behind the same PediaCluster) would never win the store's resourceVersion guard and its
        ListDone would not clear the newer rows: purge the resource first, then the list refills
        it."""
        highest = self.epochs.get(self.label, 0)
        if epoch and epoch < highest:
            log.warning(
                "resourceVersion went backwards (%d < %d): purging the resource before relisting",
                epoch,
                highest,
                extra={"cluster": self.cluster, "resource": self.label},
            )
            gvr = self.target.gvr
            await self.funnel.put(PurgeCluster(self.cluster, gvr.group, gvr.resource))
        if epoch:
            self.epochs[self.label] = epoch

    async def _watch_with_retries(self, rv: str) -> str:
        """Watch until the server ends the request; on a broken connection resume from the last
        resourceVersion seen (a 410 then means a relist)."""
        backoff = 0.5
        self.rv = rv
        while True:
            try:
                return await self._watch()
            except TRANSPORT_ERRORS as exc:
                log.info(
                    "watch interrupted (%r); resuming from %s",
                    exc,
                    self.rv,
                    extra={"cluster": self.cluster, "resource": self.label},
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    async def _watch(self) -> str:
        """One watch request from ``self.rv``, which follows every event and bookmark."""
        st = self.status
        st.set(SYNC_SYNCING)
        tr, funnel, epoch = self.transformer, self.funnel, self.epoch
        cluster, label = self.cluster, self.label
        metrics.WATCHES.labels(cluster).inc()
        try:
            async for event in self.client.watch(
                self.path, resource_version=self.rv, timeout_seconds=self.settings.watch_timeout_seconds
            ):
                raw = event.object
                kind = event.type
                metrics.touch(cluster, label)
                if kind == "BOOKMARK":
                    self.rv = resource_version_of(raw) or self.rv
                    continue
                metrics.EVENTS.labels(cluster, label, kind).inc()
                if kind == "DELETED":
                    delete = tr.delete(raw)
                    if delete is not None:
                        await funnel.put(delete)
                        st.objects -= 1
                    self.rv = resource_version_of(raw) or self.rv
                    continue
                upsert = tr.upsert(raw, epoch)
                if upsert is not None:
                    await funnel.put(upsert)
                    if kind == "ADDED":
                        st.objects += 1
                if upsert is not None and upsert.resource_version:
                    self.rv = str(upsert.resource_version)
                else:
                    self.rv = resource_version_of(raw) or self.rv
        finally:
            metrics.WATCHES.labels(cluster).dec()
            metrics.set_objects(cluster, label, st.objects)
        return self.rv
