"""Everything one worker does for one PediaCluster it owns.

Credentials (spec or Secret) -> client -> health probe loop. While the member answers its probe,
the requested resources are discovered and each gets a :class:`ResourceSync` task; when a probe
fails every watch of the cluster is stopped (status Unhealthy, syncConditions Stop), and on
recovery they start again with a fresh list (new epoch), which also repairs what changed meanwhile.
Bad configuration never raises out of here: it becomes the Ready condition.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, Protocol

from common.credentials import ClusterCredentials, InvalidConfig, credentials_from_spec
from common.destinations import parse_networks
from common.events import PurgeCluster, ResourceType
from common.http import DeniedDestination
from common.pediacluster import NamespaceSelection, PediaClusterSpec, ResourceSelector
from common.settings import SynchroSettings
from common.transform import NamespaceFilter, ObjectTransformer
from common.types import GVR, RBAC_GROUP, RBAC_RESOURCES
from synchro import metrics
from synchro.client import ApiError, KubeClient
from synchro.discovery import (
    Target,
    VersionInfo,
    crd_groups,
    fetch_discovery,
    is_builtin_group,
    printer_columns,
    removals,
    requested,
    resolve,
    spec_wants,
)
from synchro.publishing import EventFunnel
from synchro.resource_sync import TRANSPORT_ERRORS, ResourceSync
from synchro.status import (
    DISCOVERY_FAILED,
    HEALTHY,
    INVALID_CONFIG,
    RESOURCE_NOT_FOUND,
    SYNC_ERROR,
    SYNC_PENDING,
    UNAUTHORIZED,
    UNHEALTHY,
    ClusterStatus,
)

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (group, resource)

PROBE_TIMEOUT_SECONDS = 5.0
REDISCOVER_EVERY_PROBES = 6
SECRET_RETRY_SECONDS = 5.0


def prefetch_budget(settings: SynchroSettings) -> int:
    """Read-ahead list pages a worker may hold beyond one per concurrent list: a quarter as many
    (a page is ``list_page_size`` objects, megabytes of JSON; read-ahead pays off when few lists
    run, and when many run their concurrency already keeps the members busy)."""
    return max(1, settings.max_concurrent_lists // 4)


class HostAPI(Protocol):
    """What a cluster sync needs from the host cluster."""

    async def get_secret_data(self, namespace: str, name: str) -> dict[str, str]: ...

    async def patch_status(self, name: str, status: dict[str, Any]) -> None: ...


class ClusterSync:
    def __init__(
        self,
        name: str,
        spec: PediaClusterSpec,
        *,
        settings: SynchroSettings,
        funnel: EventFunnel,
        host: HostAPI,
        default_namespace: str,
        previous: dict[Key, Target] | None = None,
        status: ClusterStatus | None = None,
        list_slots: asyncio.Semaphore | None = None,
        prefetch_slots: asyncio.Semaphore | None = None,
        recorded: list[Key] | None = None,
        previous_epochs: dict[str, int] | None = None,
    ) -> None:
        self.list_slots = list_slots or asyncio.Semaphore(settings.max_concurrent_lists)
        self.prefetch_slots = prefetch_slots or asyncio.Semaphore(prefetch_budget(settings))
        self.name = name
        self.spec = spec
        self.settings = settings
        self.funnel = funnel
        self.host = host
        self.default_namespace = default_namespace
        self.status = status or ClusterStatus()
        """Carried over from the sync this one replaces (a spec change), so the Ready condition
        does not flap to Unknown meanwhile."""
        self.client: KubeClient | None = None
        self.known: dict[Key, Target] = dict(previous or {})
        """Targets synced now or before (by this sync or the one it replaced): a key that
        discovery no longer yields is purged from the store."""
        self.recorded = [k for k in recorded or () if k not in self.known]
        """Resources the host's PediaCluster status lists as synced (by an earlier worker or
        run): the durable record of what the store may hold for this cluster."""
        self.tasks: dict[Key, asyncio.Task[None]] = {}
        self.epochs: dict[str, int] = dict(previous_epochs or {})
        """group/resource -> highest list epoch used: a lower one means the member went back in
        time (see ResourceSync._check_rewind)."""
        self._missing_once: set[Key] = set()
        """Synced resources the last successful discovery did not find (purged if the next one
        does not find them either)."""
        self._verdict: tuple[bool, str, str] = (True, HEALTHY, "")
        """The Ready condition the last reconcile arrived at."""
        self._wake = asyncio.Event()
        self._restart = False
        self._secret_data: dict[str, str] | None = None
        self._secrets: tuple[str, ...] = ()
        """The credentials in use, redacted from any message that could repeat them."""
        self.denied = parse_networks(settings.denied_networks)
        ns = spec.namespaces or NamespaceSelection()
        self.namespaces = NamespaceFilter(ns.include, ns.exclude)
        self.healthy = False
        for group, names, _ in spec_wants(spec.wanted):
            for resource in names:
                self.status.resource(group, resource)  # Pending until discovered

    # -- lifecycle -------------------------------------------------------------------------------

    async def run(self) -> None:
        await self._purge_unrequested()  # before the status writer replaces the durable record
        writer = asyncio.create_task(self._status_writer(), name=f"status:{self.name}")
        try:
            await self._run()
        finally:
            await self._stop_resources()
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
            if self.client is not None:
                await self.client.close()
            metrics.forget(self.name)

    async def _purge_unrequested(self) -> None:
        """Purge what the status says was synced but the spec no longer asks for (dropped while
        no worker ran this cluster); the rest of the record joins ``known``, so a resource the
        member stopped serving meanwhile is purged by the usual two-discoveries rule."""
        spec_resources = self._resources()
        sync_all = self.spec.sync_all
        for key in self.recorded:
            if requested(spec_resources, key, sync_all=sync_all):
                self.known.setdefault(key, Target(GVR(key[0], "", key[1]), "", False))
            else:
                log.info(
                    "purging %s: in the status, no longer in the spec", key, extra={"cluster": self.name}
                )
                await self.funnel.put(PurgeCluster(self.name, key[0], key[1]))
        self.recorded = []

    def _resources(self) -> list[ResourceSelector]:
        """``spec.resources`` plus the member's RBAC objects (``synchro.sync_member_rbac``): the API
        tier evaluates them to show each user what that member lets them read."""
        spec_resources = list(self.spec.wanted)
        if self.settings.sync_member_rbac:
            spec_resources.append(ResourceSelector(RBAC_GROUP, tuple(RBAC_RESOURCES)))
        return spec_resources

    def _internal(self, key: Key) -> bool:
        """Synced for the API tier's own use (member RBAC) and not asked for by the spec: kept out
        of the search catalog (no ResourceType), so discovery shows what the user asked for."""
        return (
            self.settings.sync_member_rbac
            and key[0] == RBAC_GROUP
            and key[1] in RBAC_RESOURCES
            and not requested(self.spec.wanted, key, sync_all=self.spec.sync_all)
        )

    def restart(self) -> None:
        """Relist every resource (the queue lost entries)."""
        self._restart = True
        self._wake.set()

    async def _run(self) -> None:
        while True:
            client = await self._connect()
            try:
                await self._sync(client)  # returns when the referenced Secret changed
            finally:
                await self._stop_resources()
                await client.close()
                self.client = None
            log.info("credentials Secret changed: reconnecting", extra={"cluster": self.name})

    async def _connect(self) -> KubeClient:
        logged = ""
        while True:
            try:
                creds = await self._credentials()
                self.client = KubeClient(
                    creds, accept_gzip=self.settings.member_accept_gzip, denied=self.denied
                )
                # (a "secret" of a few characters would only garble messages: no real token is that short)
                self._secrets = tuple(s for s in (creds.token,) if len(s) >= 8)
                return self.client
            except InvalidConfig as exc:
                self.status.set_ready(False, INVALID_CONFIG, str(exc))
                if str(exc) != logged:  # once per distinct problem, not once per retry
                    log.warning("invalid configuration: %s", exc, extra={"cluster": self.name})
                    logged = str(exc)
                if self.spec.secret_ref is None:
                    await asyncio.Event().wait()  # until the spec changes (the manager replaces us)
            except (ApiError, *TRANSPORT_ERRORS) as exc:
                self.status.set_ready(False, UNHEALTHY, f"reading spec.secretRef failed: {exc}")
            # The referenced Secret may be created or fixed later: look again.
            await asyncio.sleep(SECRET_RETRY_SECONDS)

    def describe(self, exc: BaseException) -> str:
        """An exception as a status message may show it: short, without the credentials."""
        text = f"{type(exc).__name__}: {exc}"
        for secret in self._secrets:
            text = text.replace(secret, "<redacted>")
        return text if len(text) <= 500 else text[:500] + "..."

    async def _sync(self, client: KubeClient) -> None:
        probes = 0
        while True:
            if probes and probes % REDISCOVER_EVERY_PROBES == 0 and await self._secret_changed():
                return
            ok = await self._probe(client)
            if ok:
                try:
                    if self._restart:
                        self._restart = False
                        await self._stop_resources()
                    if not self.tasks or probes % REDISCOVER_EVERY_PROBES == 0 or self._has_missing():
                        await self._reconcile(client)
                    self.status.set_ready(*self._verdict)
                except (ApiError, *TRANSPORT_ERRORS) as exc:
                    self.status.set_ready(False, UNHEALTHY, f"discovery failed: {exc}")
            probes += 1
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.health_probe_interval_seconds)

    async def _secret_changed(self) -> bool:
        """True when the Secret of ``spec.secretRef`` no longer holds what we connected with."""
        if self._secret_data is None:
            return False
        try:
            return await self._secret() != self._secret_data
        except (ApiError, *TRANSPORT_ERRORS, InvalidConfig):
            return False  # keep the working connection; a missing Secret is not a rotation

    async def _secret(self) -> dict[str, str]:
        ref = self.spec.secret_ref
        if ref is None or not ref.name:
            raise InvalidConfig("spec.secretRef needs a name")
        namespace = ref.namespace or self.default_namespace
        try:
            return await self.host.get_secret_data(namespace, ref.name)
        except ApiError as exc:
            raise InvalidConfig(f"spec.secretRef {namespace}/{ref.name}: {exc.message}") from exc

    async def _credentials(self) -> ClusterCredentials:
        data = await self._secret() if self.spec.secret_ref is not None else None
        creds = credentials_from_spec(self.spec, data, denied=self.denied)
        self._secret_data = data
        return creds

    # -- health ----------------------------------------------------------------------------------

    async def _probe(self, client: KubeClient) -> bool:
        reason, message = UNHEALTHY, ""
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_SECONDS):
                for path in ("/readyz", "/healthz", "/version"):
                    try:
                        await client.request("GET", path)
                        break
                    except ApiError as exc:
                        # 403/404: this identity may not read that endpoint; try the next one.
                        if exc.code not in (403, 404) or path == "/version":
                            raise
        except ApiError as exc:
            if exc.code == 401:
                reason, message = UNAUTHORIZED, f"the member cluster rejected the credentials: {exc}"
            else:
                message = f"health probe failed: {exc}"
        except TimeoutError:
            message = f"health probe timed out after {PROBE_TIMEOUT_SECONDS:.0f}s ({client.url})"
        except TRANSPORT_ERRORS as exc:
            denied = _denied_cause(exc)
            if denied is not None:
                reason, message = INVALID_CONFIG, f"spec.apiserverURL: {denied}"
            else:
                message = f"cannot reach {client.url}: {self.describe(exc)}"
        else:
            if not self.healthy:
                log.info("cluster is healthy", extra={"cluster": self.name})
            self.healthy = True
            metrics.HEALTHY.labels(self.name).set(1)
            return True
        if self.healthy or self.tasks:
            log.warning("cluster unhealthy: %s", message, extra={"cluster": self.name})
        self.healthy = False
        metrics.HEALTHY.labels(self.name).set(0)
        await self._stop_resources()
        self.status.set_ready(False, reason, message)
        self.status.stop_all(reason, message)
        return False

    # -- resources -------------------------------------------------------------------------------

    def _has_missing(self) -> bool:
        return bool(self._missing_once) or any(
            rs.reason in (RESOURCE_NOT_FOUND, DISCOVERY_FAILED) for rs in self.status.resources.values()
        )

    async def _reconcile(self, client: KubeClient) -> None:
        """Discover; start new targets, restart changed ones, stop and purge removed ones."""
        try:
            self.status.version = (await client.get_typed("/version", VersionInfo)).gitVersion
        except ApiError as exc:
            log.info("cannot read /version: %s", exc, extra={"cluster": self.name})
        spec_resources = self._resources()
        sync_all = self.spec.sync_all
        groups = None if sync_all else {g for g, _, _ in spec_wants(spec_resources)}
        disc = await fetch_discovery(client, groups)
        custom = await crd_groups(client) if sync_all else frozenset()
        targets, missing = resolve(disc, spec_resources, custom_groups=custom)
        wanted = {(t.gvr.group, t.gvr.resource): t for t in targets}
        failed = disc.failed_groups()
        plan = removals(
            list(self.known),
            set(wanted),
            disc,
            spec_resources,
            sync_all=sync_all,
            missing_before=self._missing_once,
        )
        self._missing_once = plan.missing_once
        for key in plan.purge:
            await self._stop(key)
            await self.funnel.drained()
            await self.funnel.put(PurgeCluster(self.name, key[0], key[1]))
            log.info("purging %s no longer synced", key, extra={"cluster": self.name})
            del self.known[key]
            metrics.forget(self.name, GVR(key[0], "", key[1]).group_resource)
        for key, why in plan.keep.items():
            log.warning("%s not discovered (%s): left as it is", key, why, extra={"cluster": self.name})
        self.status.retain(set(wanted) | set(plan.keep) | {(m.group, m.resource) for m in missing})
        not_found: list[str] = []
        for m in missing:
            key = (m.group, m.resource)
            rs = self.status.resource(*key)
            reason = DISCOVERY_FAILED if m.group in failed else RESOURCE_NOT_FOUND
            message = failed.get(m.group, m.message)
            if key in plan.keep:
                rs.set(rs.status, reason, plan.keep[key])  # its copy stays and keeps syncing
                continue
            rs.listing = False
            rs.set(SYNC_ERROR, reason, message)
            if reason == RESOURCE_NOT_FOUND:
                shown = f"{m.resource}.{m.group}" if m.group else m.resource
                not_found.append(f"{shown}: {m.message}")
        if not_found:
            self._verdict = (False, RESOURCE_NOT_FOUND, "; ".join(not_found))
        else:
            self._verdict = (True, HEALTHY, "")
        for key, target in wanted.items():
            running = key in self.tasks and not self.tasks[key].done()
            if running and self.known.get(key) == target:
                continue
            await self._stop(key)
            await self._start(client, key, target)

    async def _start(self, client: KubeClient, key: Key, target: Target) -> None:
        rs = self.status.resource(*key)
        rs.kind, rs.namespaced = target.kind, target.namespaced
        rs.version = rs.storage_version = target.gvr.version
        rs.set(SYNC_PENDING)
        if self._internal(key):
            self.status.internal.add(key)
        else:
            self.status.internal.discard(key)
            await self._publish_type(client, target)
        sync = ResourceSync(
            cluster=self.name,
            client=client,
            target=target,
            transformer=ObjectTransformer(
                self.name,
                target.gvr,
                target.kind,
                strip_last_applied=self.settings.strip_last_applied,
                namespaces=self.namespaces,
                redact_values=self.settings.redact_secret_values
                and (target.gvr.group, target.gvr.resource) == ("", "secrets"),
            ),
            funnel=self.funnel,
            status=rs,
            settings=self.settings,
            list_slots=self.list_slots,
            prefetch_slots=self.prefetch_slots,
            epochs=self.epochs,
        )
        self.known[key] = target
        self.tasks[key] = asyncio.create_task(sync.run(), name=f"sync:{self.name}:{target.gvr}")

    async def _publish_type(self, client: KubeClient, target: Target) -> None:
        """The resource's catalog entry (kind, scope, verbs, short names, CRD printer columns)."""
        columns = b""
        if not is_builtin_group(target.gvr.group):
            columns = await printer_columns(client, target) or b""
        await self.funnel.put(
            ResourceType(
                cluster=self.name,
                group=target.gvr.group,
                version=target.gvr.version,
                resource=target.gvr.resource,
                kind=target.kind,
                namespaced=target.namespaced,
                short_names=list(target.short_names),
                verbs=list(target.verbs),
                storage_version=target.gvr.version,
                printer_columns=columns,
            )
        )

    async def _stop(self, key: Key) -> None:
        task = self.tasks.pop(key, None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _stop_resources(self) -> None:
        for key in list(self.tasks):
            await self._stop(key)

    # -- status ----------------------------------------------------------------------------------

    async def _status_writer(self) -> None:
        last: dict[str, Any] | None = None
        while True:
            self.status.set_unapplied(self.funnel.unapplied_since(self.name), time.time())
            body = self.status.render()
            if body != last:
                try:
                    await self.host.patch_status(self.name, body)
                    last = body
                except (ApiError, *TRANSPORT_ERRORS) as exc:
                    log.warning("status update failed: %s", exc, extra={"cluster": self.name})
            await asyncio.sleep(self.settings.status_update_interval_seconds)


def _denied_cause(exc: BaseException) -> DeniedDestination | None:
    """The denied-network refusal behind a transport error (httpx wraps httpcore's error)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, DeniedDestination):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None
