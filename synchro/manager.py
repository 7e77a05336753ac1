"""The synchro worker: watch PediaClusters, own some of them through Leases, sync those.

Three loops share one asyncio event loop: the PediaCluster informer (a local cache of the host's
objects), the lease loop (heartbeat, renew owned cluster Leases, release beyond the fair share,
acquire free ones), and per-cluster reconciles triggered by changes (start, restart on a spec
change, finalizer-driven cleanup on deletion). Losing or failing to renew a Lease stops that
cluster's sync at once, so two workers never sync one cluster for longer than a renew interval.
The ClusterImportPolicy controller (``synchro/importing.py``) runs beside them, in one worker at a
time (its own Lease).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from common.destinations import InvalidConfig, parse_networks
from common.events import PurgeCluster
from common.pediacluster import PediaClusterStatus, spec_of, status_of
from common.queue.base import Publisher
from common.settings import Settings
from common.transform import parse_resource_version
from common.types import GVR
from synchro import metrics
from synchro.client import ApiError, KubeClient
from synchro.cluster_sync import ClusterSync, prefetch_budget
from synchro.heap import pin_mmap_threshold
from synchro.host import FINALIZER, Host, host_credentials
from synchro.importing import ImportController
from synchro.leases import (
    CLUSTER_LABEL,
    CLUSTER_PREFIX,
    WORKER_LABEL,
    WORKER_PREFIX,
    cluster_lease_name,
    dns_label,
    fair_share,
    holder,
    is_alive,
    lease_body,
)
from synchro.publishing import EventFunnel
from synchro.resource_sync import TRANSPORT_ERRORS
from synchro.status import INVALID_CONFIG, SYNC_FAILED, ClusterStatus

log = logging.getLogger(__name__)

HOST_ERRORS = (ApiError, *TRANSPORT_ERRORS)
RENEW_CONCURRENCY = 16
"""Lease renewals in flight at once per worker."""


@dataclass(eq=False)
class Owned:
    """A cluster whose Lease this worker holds."""

    lease: dict[str, Any]
    renewed_at: float  # monotonic time of the last successful renew
    sync: ClusterSync | None = None
    task: asyncio.Task[None] | None = None
    generation: int = -1
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    failures: int = 0
    """Unexpected failures of this cluster's sync in a row (same generation)."""
    started_at: float = 0.0
    retry_at: float = 0.0
    """Monotonic time before which a failed sync is not restarted (capped exponential back-off)."""
    invalid_generation: int = -1
    """The generation whose spec did not decode (reported once, nothing runs until it changes)."""


class SynchroManager:
    def __init__(self, settings: Settings, publisher: Publisher, host: Host) -> None:
        self.settings = settings
        self.conf = settings.synchro
        self.namespace = self.conf.lease_namespace
        self.worker_id = self.conf.worker_id or f"{socket.gethostname()}-{os.getpid()}"
        self.host = host
        self.funnel = EventFunnel(
            publisher, batch_max_events=self.conf.publish_batch_max_events, on_reset=self.restart_all
        )
        self.clusters: dict[str, dict[str, Any]] = {}
        self.owned: dict[str, Owned] = {}
        self._synced = asyncio.Event()
        self._pending: set[str] = set()
        self._pending_event = asyncio.Event()
        self._heartbeat: dict[str, Any] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self.list_slots = asyncio.Semaphore(max(1, self.conf.max_concurrent_lists))
        self.prefetch_slots = asyncio.Semaphore(prefetch_budget(self.conf))
        self.duration = self.conf.lease_duration_seconds
        parse_networks(self.conf.denied_networks)  # a bad entry stops the worker at start, not per cluster

    # -- entry -----------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        tasks = [
            asyncio.create_task(self.funnel.run(), name="funnel"),
            asyncio.create_task(self._informer(), name="informer"),
            asyncio.create_task(self._reconciler(), name="reconciler"),
        ]
        tasks.append(asyncio.create_task(self._lease_loop(stop), name="leases"))
        imports = ImportController(
            self.host,
            namespace=self.namespace,
            worker_id=self.worker_id,
            lease_duration_seconds=self.duration,
            interval_seconds=self.conf.import_interval_seconds,
        )
        tasks.append(asyncio.create_task(imports.run(stop), name="imports"))
        log.info("synchro worker %s started", self.worker_id)
        stopper = asyncio.create_task(stop.wait(), name="stop")
        try:
            done, _ = await asyncio.wait({stopper, *tasks}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not stopper and not task.cancelled() and task.exception() is not None:
                    raise RuntimeError(f"synchro loop {task.get_name()} failed") from task.exception()
        finally:
            stopper.cancel()
            await self._shutdown(tasks)

    async def _shutdown(self, tasks: list[asyncio.Task[None]]) -> None:
        for task in tasks:
            if task.get_name() != "funnel":
                task.cancel()
        await asyncio.gather(*(t for t in tasks if t.get_name() != "funnel"), return_exceptions=True)
        for name in list(self.owned):
            await self._drop(name, release=True)
        # Let what the syncs produced reach the queue before the funnel goes.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.funnel.drained(), 10)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._heartbeat is not None:
            with contextlib.suppress(*HOST_ERRORS):
                await self.host.delete_lease(self.namespace, self._heartbeat["metadata"]["name"])
        log.info("synchro worker %s stopped", self.worker_id)

    def restart_all(self) -> None:
        for own in self.owned.values():
            if own.sync is not None:
                own.sync.restart()

    async def _retry(self, fn: Any, what: str) -> None:
        delay = 0.5
        while True:
            try:
                await fn()
                return
            except HOST_ERRORS as exc:
                log.warning("%s failed: %s; retrying", what, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10)

    # -- informer --------------------------------------------------------------------------------

    async def _informer(self) -> None:
        delay = 0.5
        while True:
            seen: set[str] = set()
            try:
                async for name, obj in self.host.watch_pediaclusters():
                    delay = 0.5
                    if not name:  # end of a full list: forget what it did not contain
                        for gone in set(self.clusters) - seen:
                            del self.clusters[gone]
                            self._touch(gone)
                        seen = set()
                        self._synced.set()
                        continue
                    seen.add(name)
                    if obj is None:
                        self.clusters.pop(name, None)
                    else:
                        self.clusters[name] = obj
                    self._touch(name)
            except HOST_ERRORS as exc:
                log.warning("watching PediaClusters failed: %s; retrying", exc)
            except Exception:  # a bug or an odd object must not end the worker
                log.exception("watching PediaClusters failed; retrying")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10)

    def _touch(self, name: str) -> None:
        if name in self.owned:
            self._pending.add(name)
            self._pending_event.set()

    # -- leases ----------------------------------------------------------------------------------

    async def _lease_loop(self, stop: asyncio.Event) -> None:
        await self._retry(lambda: self.host.ensure_namespace(self.namespace), "creating the lease namespace")
        await self._synced.wait()
        interval = self.duration / 3
        while not stop.is_set():
            try:
                await self._lease_tick()
            except HOST_ERRORS as exc:
                log.warning("lease round failed: %s", exc)
            except Exception:
                log.exception("lease round failed")
            self._check_renew_deadlines()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval * random.uniform(0.8, 1.1))

    def _check_renew_deadlines(self) -> None:
        """A lease not renewed for most of its duration may be taken by now: stop syncing."""
        deadline = time.monotonic() - self.duration * 0.75
        for name, own in list(self.owned.items()):
            if own.renewed_at < deadline:
                log.warning("could not renew the lease of %s in time: stopping its sync", name)
                self._abandon(name)

    async def _lease_tick(self) -> None:
        now = time.time()
        hb_name = WORKER_PREFIX + dns_label(self.worker_id)
        body = lease_body(
            hb_name,
            holder_identity=self.worker_id,
            duration_seconds=self.duration,
            now=now,
            previous=self._heartbeat,
            labels={WORKER_LABEL: "true"},
        )
        try:
            if self._heartbeat is None:
                self._heartbeat = await self.host.create_lease(self.namespace, body)
            else:
                self._heartbeat = await self.host.replace_lease(self.namespace, body)
        except ApiError as exc:
            if exc.code not in (404, 409):
                raise
            self._heartbeat = None  # recreate/refetch on the next round
            leases = {item["metadata"]["name"]: item for item in await self.host.list_leases(self.namespace)}
            self._heartbeat = leases.get(hb_name)

        leases = {item["metadata"]["name"]: item for item in await self.host.list_leases(self.namespace)}
        now = time.time()
        live = sum(
            1
            for item in leases.values()
            if (item["metadata"].get("labels") or {}).get(WORKER_LABEL) and is_alive(item, now)
        )
        live = max(1, live)
        share = fair_share(len(self.clusters), live)

        renewals: list[tuple[str, Owned, dict[str, Any]]] = []
        for name, own in list(self.owned.items()):
            current = leases.get(cluster_lease_name(name))
            if current is None or holder(current) != self.worker_id:
                log.warning("lease of %s lost (holder %r): stopping its sync", name, holder(current))
                self._abandon(name)
                continue
            if name not in self.clusters:
                await self._drop(name, release=False)
                with contextlib.suppress(*HOST_ERRORS):
                    await self.host.delete_lease(self.namespace, cluster_lease_name(name))
                continue
            renewals.append((name, own, current))
        await self._renew_all(renewals, now)

        if len(self.owned) > share and live > 1:
            # More than a fair share (another worker started): hand one cluster back per round.
            name = sorted(self.owned)[-1]
            log.info("releasing %s (owning %d, fair share %d)", name, len(self.owned), share)
            await self._drop(name, release=True)

        free = [
            name
            for name in self.clusters
            if name not in self.owned and not is_alive(leases.get(cluster_lease_name(name)), now)
        ]
        random.shuffle(free)
        for name in free:
            if len(self.owned) >= share:
                break
            await self._acquire(name, leases.get(cluster_lease_name(name)), now)

        for lease_name, item in leases.items():
            # Tidy up: Leases of PediaClusters that no longer exist and nobody holds, and heartbeats
            # of workers dead for a while (a live one recreates its heartbeat on the next round).
            stale_cluster = lease_name.startswith(CLUSTER_PREFIX) and (
                lease_name[len(CLUSTER_PREFIX) :] not in self.clusters
            )
            dead_worker = lease_name.startswith(WORKER_PREFIX) and not is_alive(item, now - 5 * self.duration)
            if (stale_cluster or dead_worker) and not is_alive(item, now):
                with contextlib.suppress(*HOST_ERRORS):
                    await self.host.delete_lease(self.namespace, lease_name)
        metrics.OWNED.set(len(self.owned))

    async def _renew_all(self, renewals: list[tuple[str, Owned, dict[str, Any]]], now: float) -> None:
        """Renew many leases at once (bounded): one after the other, a worker owning a hundred
        clusters needed longer than the renew deadline while its lists kept the event loop busy,
        and dropped clusters it then listed again (bench size ``fleet``). The first error other
        than a lost lease is raised once every renewal has finished."""
        slots = asyncio.Semaphore(RENEW_CONCURRENCY)

        async def renew(name: str, own: Owned, current: dict[str, Any]) -> None:
            async with slots:
                if self.owned.get(name) is own:  # not abandoned meanwhile
                    await self._renew(name, own, current, now)

        results = await asyncio.gather(*(renew(*r) for r in renewals), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _renew(self, name: str, own: Owned, current: dict[str, Any], now: float) -> None:
        body = lease_body(
            cluster_lease_name(name),
            holder_identity=self.worker_id,
            duration_seconds=self.duration,
            now=now,
            previous=current,
            labels={CLUSTER_LABEL: name},
        )
        try:
            own.lease = await self.host.replace_lease(self.namespace, body)
            own.renewed_at = time.monotonic()
        except ApiError as exc:
            if exc.code in (404, 409):
                log.warning("lease of %s taken over: stopping its sync", name)
                self._abandon(name)
            else:
                log.warning("renewing the lease of %s failed: %s", name, exc)

    async def _acquire(self, name: str, current: dict[str, Any] | None, now: float) -> None:
        body = lease_body(
            cluster_lease_name(name),
            holder_identity=self.worker_id,
            duration_seconds=self.duration,
            now=now,
            previous=current,
            labels={CLUSTER_LABEL: name},
        )
        try:
            if current is None:
                lease = await self.host.create_lease(self.namespace, body)
            else:
                lease = await self.host.replace_lease(self.namespace, body)
        except ApiError as exc:
            if exc.code in (404, 409):
                return  # another worker was faster
            raise
        log.info("acquired cluster %s", name)
        self.owned[name] = Owned(lease=lease, renewed_at=time.monotonic())
        self._pending.add(name)
        self._pending_event.set()

    def _abandon(self, name: str) -> None:
        """Stop a cluster's sync now, without touching its Lease (it is no longer ours)."""
        own = self.owned.pop(name, None)
        if own is not None and own.task is not None:
            own.task.cancel()

    async def _drop(self, name: str, *, release: bool) -> None:
        """Stop a cluster's sync; with ``release`` hand its Lease back (empty holder)."""
        own = self.owned.pop(name, None)
        if own is None:
            return
        if own.task is not None:
            own.task.cancel()
            await asyncio.gather(own.task, return_exceptions=True)
        if release:
            # Our last events of this cluster go out before another worker can list it.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.funnel.drained(), self.duration / 2)
            body = lease_body(
                cluster_lease_name(name),
                holder_identity="",
                duration_seconds=self.duration,
                now=time.time(),
                previous=own.lease,
                labels={CLUSTER_LABEL: name},
            )
            with contextlib.suppress(*HOST_ERRORS):
                await self.host.replace_lease(self.namespace, body)

    # -- per-cluster reconcile -------------------------------------------------------------------

    async def _reconciler(self) -> None:
        while True:
            await self._pending_event.wait()
            self._pending_event.clear()
            names, self._pending = self._pending, set()
            for name in names:
                own = self.owned.get(name)
                if own is None:
                    continue
                try:
                    async with own.lock:
                        await self._reconcile(name, own)
                except HOST_ERRORS as exc:
                    log.warning("reconciling %s failed: %s; retrying", name, exc)
                    self._retry_later(name)
                except Exception:
                    log.exception("reconciling %s failed; retrying", name)
                    self._retry_later(name)

    def _retry_later(self, name: str, delay: float = 1.0) -> None:
        async def later() -> None:
            await asyncio.sleep(delay)
            self._touch(name)

        self._background_task(later())

    def _background_task(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _stop_sync(self, own: Owned) -> None:
        if own.task is not None:
            own.task.cancel()
            await asyncio.gather(own.task, return_exceptions=True)
        own.task = None

    async def _reconcile(self, name: str, own: Owned) -> None:
        obj = self.clusters.get(name)
        if obj is None:
            # Gone from the host (finalizer removed, or deleted before one was added).
            await self._stop_sync(own)
            own.sync = None
            await self._purge(name)
            return
        meta = obj["metadata"]
        finalizers = list(meta.get("finalizers") or ())
        if meta.get("deletionTimestamp"):
            if FINALIZER in finalizers:
                await self._stop_sync(own)
                own.sync = None
                await self._purge(name)
                if self.owned.get(name) is own:
                    await self.host.set_finalizers(obj, [f for f in finalizers if f != FINALIZER])
                    log.info("cluster %s deleted: data purged, finalizer removed", name)
            return
        if FINALIZER not in finalizers:
            await self.host.set_finalizers(obj, [*finalizers, FINALIZER])
            return  # the update comes back through the informer
        generation = int(meta.get("generation") or 0)
        if own.task is not None and not own.task.done() and own.generation == generation:
            return
        if own.generation != generation:
            own.failures, own.retry_at = 0, 0.0  # a new spec gets a fresh start
        elif time.monotonic() < own.retry_at:
            return  # backing off after a failure; _sync_ended scheduled the retry
        try:
            spec = spec_of(obj)
        except InvalidConfig as exc:
            if own.invalid_generation != generation:
                own.invalid_generation = generation
                await self._stop_sync(own)
                status = own.sync.status if own.sync is not None else ClusterStatus()
                status.set_ready(False, INVALID_CONFIG, str(exc))
                log.warning("invalid PediaCluster: %s", exc, extra={"cluster": name})
                await self._write_status(name, status.render())
            return
        own.invalid_generation = -1
        previous = own.sync
        await self._stop_sync(own)
        if self.owned.get(name) is not own:
            return
        sync = ClusterSync(
            name,
            spec,
            settings=self.conf,
            funnel=self.funnel,
            host=self.host,
            default_namespace=self.namespace,
            previous=previous.known if previous is not None else None,
            status=previous.status if previous is not None else None,
            list_slots=self.list_slots,
            prefetch_slots=self.prefetch_slots,
            recorded=recorded_resources(obj) if previous is None else None,
            previous_epochs=previous.epochs if previous is not None else recorded_epochs(obj),
        )
        own.sync, own.generation, own.started_at = sync, generation, time.monotonic()
        own.task = asyncio.create_task(sync.run(), name=f"cluster:{name}")
        own.task.add_done_callback(lambda task: self._sync_ended(name, own, task))
        log.info("syncing cluster %s (generation %d)", name, generation)

    def _sync_ended(self, name: str, own: Owned, task: asyncio.Task[None]) -> None:
        """A cluster's sync ended by itself: a bug, or input nothing validated. Restart it after a
        capped exponential back-off; the error goes to the log with its traceback and to the
        PediaCluster's status once, not once per restart."""
        if task.cancelled() or self.owned.get(name) is not own:
            return
        exc = task.exception()
        now = time.monotonic()
        if now - own.started_at > self.conf.sync_retry_max_seconds:
            own.failures = 0  # it ran fine for a long while: start the back-off again
        own.failures += 1
        delay = min(2.0 ** (own.failures - 1), self.conf.sync_retry_max_seconds)
        own.retry_at = now + delay
        if own.failures == 1:
            log.error("sync of cluster %s failed; restarting it in %.0fs", name, delay, exc_info=exc)
        else:
            log.info(
                "sync of cluster %s failed again (%d in a row); next try in %.0fs", name, own.failures, delay
            )
        sync = own.sync
        if sync is not None and own.failures == 1 and exc is not None:
            sync.status.set_ready(False, SYNC_FAILED, f"the sync failed unexpectedly: {sync.describe(exc)}")
            self._background_task(self._write_status(name, sync.status.render()))
        self._retry_later(name, delay)

    async def _write_status(self, name: str, body: dict[str, Any]) -> None:
        with contextlib.suppress(*HOST_ERRORS):
            await self.host.patch_status(name, body)

    async def _purge(self, name: str) -> None:
        await self.funnel.drained()
        await self.funnel.put(PurgeCluster(name))
        await self.funnel.drained()


def recorded_resources(obj: dict[str, Any]) -> list[tuple[str, str]]:
    """(group, resource) pairs the PediaCluster's status lists: what an earlier sync wrote."""
    return [
        (group.group, entry.resource)
        for group in _status(obj).resources or ()
        for entry in group.resources or ()
        if entry.resource not in ("", "*")
    ]


def recorded_epochs(obj: dict[str, Any]) -> dict[str, int]:
    """group/resource -> resourceVersion of the last list the status records (durable across
    restarts and lease handovers, so a member that went back in time meanwhile is detected)."""
    out: dict[str, int] = {}
    for group in _status(obj).resources or ():
        for entry in group.resources or ():
            if not entry.resource:
                continue
            for cond in entry.syncConditions or ():
                epoch = parse_resource_version(cond.listResourceVersion)
                if epoch:
                    label = GVR(group.group, "", entry.resource).group_resource
                    out[label] = max(out.get(label, 0), epoch)
    return out


def _status(obj: dict[str, Any]) -> PediaClusterStatus:
    status, problem = status_of(obj)
    if problem:
        log.warning("ignoring a status that does not decode: %s", problem, extra={"cluster": _name(obj)})
    return status


def _name(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name") or "")


async def serve_synchro(
    settings: Settings, stop_event: asyncio.Event, *, publisher: Publisher | None = None
) -> None:
    """Run one synchro worker on the current event loop until ``stop_event`` is set.

    ``publisher``: the queue to publish into; by default it is opened from ``settings.queue``
    (``memory://`` names a process-wide in-process queue, so a writer thread can share it)."""
    own_publisher = publisher is None
    if publisher is None:
        from common.queue import open_publisher

        publisher = open_publisher(settings.queue, settings)
    host = Host(KubeClient(host_credentials(settings)))
    try:
        await SynchroManager(settings, publisher, host).run(stop_event)
    finally:
        await host.close()
        if own_publisher:
            await publisher.close()


def run_synchro(settings: Settings, stop_event: threading.Event) -> None:
    """Blocking entry point for the CLI: run a worker on its own event loop until ``stop_event``
    (set from a signal handler in another thread) is set."""

    pin_mmap_threshold()
    finished = threading.Event()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def relay() -> None:
            while not finished.is_set():
                if stop_event.wait(0.2):
                    with contextlib.suppress(RuntimeError):  # the loop already closed
                        loop.call_soon_threadsafe(stop.set)
                    return

        threading.Thread(target=relay, name="synchro-stop-relay", daemon=True).start()
        await serve_synchro(settings, stop)

    try:
        asyncio.run(main())
    finally:
        finished.set()
