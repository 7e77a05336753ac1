"""The ClusterImportPolicy controller: PediaClusters from objects other platforms keep in the host.

A policy names a source kind (Cluster API ``Cluster``, Karmada ``Cluster``, labelled Secrets...),
the objects each source needs (references, e.g. the ``<name>-kubeconfig`` Secret), conditions for
creating and deleting, and templates for the PediaCluster's name and spec (``synchro/templates.py``).
One synchro worker at a time runs it, the holder of the Lease ``clusterimportpolicy-controller`` in
the lease namespace (the rules of ``synchro/leases.py``); it re-reads policies, sources and
references every ``synchro.import_interval_seconds`` and makes the PediaClusters match
(level-triggered: a missed change is seen on the next pass, a restart loses nothing).

Imported PediaClusters carry the label ``policy.clusterpedia.io/import-policy: <policy>`` and the
annotation ``policy.clusterpedia.io/import-source`` naming their source. Only PediaClusters with
that label are ever updated or deleted: one made by hand (or by another policy) under the same name
is left alone and reported as a conflict. Deleting goes through the usual path (the owning worker's
finalizer purges the rows). Everything that goes wrong with a policy -- a template that does not
compile or evaluate, a missing reference, a source kind the host does not serve, a spec the host
refuses -- becomes a condition on the policy; nothing stops the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from synchro.client import ApiError
from synchro.host import PEDIACLUSTERS, Host
from synchro.leases import holder, is_alive, lease_body
from synchro.resource_sync import TRANSPORT_ERRORS
from synchro.templates import Expression, SpecTemplate, Template, TemplateError

log = logging.getLogger(__name__)

GROUP = "policy.clusterpedia.io"
POLICIES = f"/apis/{GROUP}/v1alpha1/clusterimportpolicies"
LEASE_NAME = "clusterimportpolicy-controller"
POLICY_LABEL = "policy.clusterpedia.io/import-policy"
SOURCE_ANNOTATION = "policy.clusterpedia.io/import-source"
HASH_ANNOTATION = "policy.clusterpedia.io/spec-hash"
DEFAULT_NAME = "{{ source.metadata.name }}"
MAX_LISTED_SOURCES = 100
"""Sources listed one by one in a policy's status (the counts cover all of them)."""
MAX_MESSAGE_CHARS = 2000
HOST_ERRORS = (ApiError, *TRANSPORT_ERRORS)
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


class PolicyError(Exception):
    """A policy that cannot be used as written (reason, message for its Ready condition)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def api_path(group: str, version: str, resource: str, namespace: str = "", name: str = "") -> str:
    base = f"/api/{version}" if not group else f"/apis/{group}/{version}"
    path = f"{base}/namespaces/{namespace}/{resource}" if namespace else f"{base}/{resource}"
    return f"{path}/{name}" if name else path


def _segment(value: Any, what: str) -> str:
    text = str(value or "")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.\-]*", text):
        raise PolicyError("InvalidPolicy", f"{what} {text!r} is not a valid API path segment")
    return text


@dataclass(frozen=True)
class Reference:
    key: str
    group: str
    version: str
    resource: str
    namespace: Template | None
    name: Template
    optional: bool


@dataclass(frozen=True)
class Policy:
    name: str
    group: str
    version: str
    resource: str
    namespace: str
    label_selector: str
    references: tuple[Reference, ...]
    creation: Expression | None
    deletion: Expression | None
    prefix: str
    name_template: Template
    spec: SpecTemplate

    @property
    def source_display(self) -> str:
        return f"{self.resource}.{self.group}" if self.group else self.resource

    def source_id(self, obj: dict[str, Any]) -> str:
        meta = obj.get("metadata") or {}
        ns = meta.get("namespace") or ""
        return (
            f"{self.source_display}/{ns}/{meta.get('name')}"
            if ns
            else f"{self.source_display}/{meta.get('name')}"
        )


def _compile(kind: type[Expression] | type[Template], text: Any, field_name: str) -> Any:
    if not isinstance(text, str):
        raise PolicyError("InvalidTemplate", f"spec.{field_name} must be a string")
    try:
        return kind(text)
    except TemplateError as exc:
        raise PolicyError("InvalidTemplate", f"spec.{field_name}: {exc}") from None


def compile_policy(obj: dict[str, Any]) -> Policy:
    """The policy's spec checked and its templates compiled (PolicyError otherwise)."""
    spec = obj.get("spec") or {}
    source = spec.get("source") or {}
    group = str(source.get("group") or "")
    if group:
        _segment(group, "spec.source.group")
    refs: list[Reference] = []
    keys: set[str] = set()
    for i, ref in enumerate(spec.get("references") or ()):
        key = str((ref or {}).get("key") or "")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key) or key in keys:
            raise PolicyError("InvalidPolicy", f"spec.references[{i}].key {key!r} is not a unique identifier")
        keys.add(key)
        ref_group = str(ref.get("group") or "")
        if ref_group:
            _segment(ref_group, f"spec.references[{i}].group")
        ns_text = ref.get("namespaceTemplate")
        refs.append(
            Reference(
                key=key,
                group=ref_group,
                version=_segment(ref.get("version"), f"spec.references[{i}].version"),
                resource=_segment(ref.get("resource"), f"spec.references[{i}].resource"),
                namespace=_compile(Template, ns_text, f"references[{i}].namespaceTemplate")
                if ns_text
                else None,
                name=_compile(Template, ref.get("nameTemplate"), f"references[{i}].nameTemplate"),
                optional=bool(ref.get("optional")),
            )
        )
    template = spec.get("template")
    if not isinstance(template, dict):
        raise PolicyError("InvalidTemplate", "spec.template must be a mapping (the PediaCluster spec)")
    try:
        spec_template = SpecTemplate(template, "spec.template")
    except TemplateError as exc:
        raise PolicyError("InvalidTemplate", str(exc)) from None
    creation, deletion = spec.get("creationCondition"), spec.get("deletionCondition")
    namespace = str(source.get("namespace") or "")
    if namespace:
        _segment(namespace, "spec.source.namespace")
    return Policy(
        name=obj["metadata"]["name"],
        group=group,
        version=_segment(source.get("version"), "spec.source.version"),
        resource=_segment(source.get("resource"), "spec.source.resource"),
        namespace=namespace,
        label_selector=str(source.get("labelSelector") or ""),
        references=tuple(refs),
        creation=_compile(Expression, creation, "creationCondition") if creation else None,
        deletion=_compile(Expression, deletion, "deletionCondition") if deletion else None,
        prefix=str(spec.get("namePrefix") or ""),
        name_template=_compile(Template, spec.get("nameTemplate") or DEFAULT_NAME, "nameTemplate"),
        spec=spec_template,
    )


def spec_hash(spec: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:32]


def _strip(obj: dict[str, Any]) -> dict[str, Any]:
    meta = dict(obj.get("metadata") or {})
    meta.pop("managedFields", None)
    return {**obj, "metadata": meta}


def _labels(obj: dict[str, Any] | None) -> dict[str, str]:
    return dict(((obj or {}).get("metadata") or {}).get("labels") or {})


def _annotations(obj: dict[str, Any] | None) -> dict[str, str]:
    return dict(((obj or {}).get("metadata") or {}).get("annotations") or {})


def _is_ready(obj: dict[str, Any]) -> bool:
    for cond in (obj.get("status") or {}).get("conditions") or ():
        if isinstance(cond, dict) and cond.get("type") == "Ready":
            return cond.get("status") == "True"
    return False


@dataclass
class Outcome:
    """What one pass did with one source (a line of the policy's status)."""

    source: str
    state: str  # Imported, Waiting, Skipped, Conflict, Error, Deleted
    pediacluster: str = ""
    message: str = ""
    reason: str = ""


@dataclass
class PassResult:
    outcomes: list[Outcome] = field(default_factory=list)
    problem: PolicyError | None = None


class ImportController:
    """Owns the ClusterImportPolicies through one Lease and keeps their PediaClusters in step."""

    def __init__(
        self,
        host: Host,
        *,
        namespace: str,
        worker_id: str,
        lease_duration_seconds: float,
        interval_seconds: float,
    ) -> None:
        self.host = host
        self.namespace = namespace
        self.worker_id = worker_id
        self.duration = lease_duration_seconds
        self.interval = interval_seconds
        self._lease: dict[str, Any] | None = None
        self._leading_until = 0.0
        self._written: dict[str, dict[str, Any]] = {}
        self._logged: set[str] = set()
        self._wake = asyncio.Event()  # set when this worker becomes the leader: no wait for the interval

    def leading(self) -> bool:
        return time.monotonic() < self._leading_until

    async def run(self, stop: asyncio.Event) -> None:
        lease_task = asyncio.create_task(self._lease_loop(stop), name="import-lease")
        try:
            while not stop.is_set():
                if self.leading():
                    try:
                        await self.reconcile_all()
                    except HOST_ERRORS as exc:
                        self._log_once(f"importing clusters failed: {exc}")
                    except Exception:  # a bug must not end the worker
                        log.exception("importing clusters failed")
                waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wake.wait())]
                await asyncio.wait(waits, timeout=self.interval, return_when=asyncio.FIRST_COMPLETED)
                for waiter in waits:
                    waiter.cancel()
                await asyncio.gather(*waits, return_exceptions=True)
                self._wake.clear()
        finally:
            lease_task.cancel()
            await asyncio.gather(lease_task, return_exceptions=True)
            await self._release()

    def _log_once(self, message: str) -> None:
        if message not in self._logged:
            self._logged.add(message)
            log.warning("%s", message)

    # -- the Lease ---------------------------------------------------------------------------------

    async def _lease_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self._lease_round()
            except HOST_ERRORS as exc:
                self._log_once(f"the import controller's Lease round failed: {exc}")
            except Exception:  # a bug must not end the worker; not renewing ends the leadership
                log.exception("the import controller's Lease round failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.duration / 3)

    async def _lease_round(self) -> None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases"
        started = time.monotonic()  # the Lease counts from before the request, to be safe
        current = await self.host.get_object(f"{path}/{LEASE_NAME}")
        now = time.time()
        if current is not None and holder(current) != self.worker_id and is_alive(current, now):
            if self.leading():
                log.warning("the import controller's Lease is held by %s: stopping", holder(current))
            self._leading_until = 0.0
            return
        body = lease_body(
            LEASE_NAME,
            holder_identity=self.worker_id,
            duration_seconds=self.duration,
            now=now,
            previous=current,
        )
        try:
            if current is None:
                self._lease = await self.host.write_object("POST", path, body)
            else:
                self._lease = await self.host.write_object("PUT", f"{path}/{LEASE_NAME}", body)
        except ApiError as exc:
            if exc.code == 404 and current is None:
                await self.host.ensure_namespace(self.namespace)
                return
            if exc.code in (404, 409):  # another worker was faster
                self._leading_until = 0.0
                return
            raise
        if not self.leading():
            log.info("running the ClusterImportPolicy controller")
            self._wake.set()
        self._leading_until = started + self.duration * 0.75

    async def _release(self) -> None:
        if self._lease is None or not self.leading():
            return
        self._leading_until = 0.0
        path = f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases/{LEASE_NAME}"
        body = lease_body(
            LEASE_NAME,
            holder_identity="",
            duration_seconds=self.duration,
            now=time.time(),
            previous=self._lease,
        )
        with contextlib.suppress(*HOST_ERRORS):
            await self.host.write_object("PUT", path, body)

    # -- reconciling ---------------------------------------------------------------------------------

    async def reconcile_all(self) -> None:
        try:
            policies = await self.host.list_objects(POLICIES)
        except ApiError as exc:
            if exc.code == 404:  # the CRD is not installed: nothing to import
                if "no-crd" not in self._logged:
                    self._logged.add("no-crd")
                    log.info("the ClusterImportPolicy CRD is not installed: no clusters are imported")
                return
            if exc.code == 403:
                self._log_once(f"ClusterImportPolicies cannot be listed ({exc}): none is applied")
                return
            raise
        clusters = {pc["metadata"]["name"]: pc for pc in await self.host.list_objects(PEDIACLUSTERS)}
        names = {p["metadata"]["name"] for p in policies}
        for obj in sorted(policies, key=lambda p: str(p["metadata"]["name"])):
            if not self.leading():
                return
            await self.reconcile_policy(obj, clusters)
        # PediaClusters of policies that are gone go with them.
        for name, pc in clusters.items():
            owner = _labels(pc).get(POLICY_LABEL)
            if (
                owner
                and owner not in names
                and self.leading()
                and not pc["metadata"].get("deletionTimestamp")
            ):
                log.info("deleting PediaCluster %s: its ClusterImportPolicy %s is gone", name, owner)
                await self.host.delete_object(f"{PEDIACLUSTERS}/{name}")
        self._written = {k: v for k, v in self._written.items() if k in names}

    async def reconcile_policy(self, obj: dict[str, Any], clusters: dict[str, dict[str, Any]]) -> None:
        name = obj["metadata"]["name"]
        result = PassResult()
        display = ""
        try:
            policy = compile_policy(obj)
            display = policy.source_display
            await self._import(policy, clusters, result)
        except PolicyError as exc:
            result.problem = exc
        mine = [pc for pc in clusters.values() if _labels(pc).get(POLICY_LABEL) == name]
        await self._write_status(obj, display, result, mine)

    async def _import(self, policy: Policy, clusters: dict[str, dict[str, Any]], result: PassResult) -> None:
        path = api_path(policy.group, policy.version, policy.resource, policy.namespace)
        try:
            sources = await self.host.list_objects(path, policy.label_selector)
        except ApiError as exc:
            if exc.code == 404:
                raise PolicyError(
                    "SourceUnavailable",
                    f"the host serves no {policy.source_display} in version {policy.version} "
                    "(is its CustomResourceDefinition installed?)",
                ) from None
            if exc.code in (400, 403):
                raise PolicyError("SourceUnavailable", f"listing {path} failed: {exc.message}") from None
            raise
        mine = {n: pc for n, pc in clusters.items() if _labels(pc).get(POLICY_LABEL) == policy.name}
        keep: set[str] = set()  # imported PediaClusters that still have their source
        claimed: dict[str, str] = {}  # PediaCluster name -> source id of this pass
        for source in sorted(sources, key=policy.source_id):
            if not self.leading():
                return
            source_id = policy.source_id(source)
            outcome = await self._import_one(policy, source, source_id, clusters, claimed)
            if outcome.pediacluster and outcome.state in ("Imported", "Waiting"):
                keep.add(outcome.pediacluster)  # an import under an older name goes
            elif outcome.state != "Deleted":
                # Nothing decided for this source (a missing reference, an error, a conflict):
                # whatever it imported before stays as it is.
                keep.update(
                    n for n, pc in mine.items() if _annotations(pc).get(SOURCE_ANNOTATION) == source_id
                )
            result.outcomes.append(outcome)
        for name, pc in mine.items():
            if name not in keep and not pc["metadata"].get("deletionTimestamp") and self.leading():
                source_id = _annotations(pc).get(SOURCE_ANNOTATION, "")
                log.info("deleting PediaCluster %s: its source %s is gone", name, source_id)
                await self.host.delete_object(f"{PEDIACLUSTERS}/{name}")
                result.outcomes.append(Outcome(source_id, "Deleted", name, "the source is gone"))
                clusters.pop(name, None)

    async def _import_one(
        self,
        policy: Policy,
        source: dict[str, Any],
        source_id: str,
        clusters: dict[str, dict[str, Any]],
        claimed: dict[str, str],
    ) -> Outcome:
        env: dict[str, Any] = {"source": _strip(source), "references": {}, "policy": {"name": policy.name}}
        source_ns = str((source.get("metadata") or {}).get("namespace") or "")
        missing: list[str] = []
        try:
            for ref in policy.references:
                ns = str(ref.namespace.render(env)) if ref.namespace is not None else source_ns
                ref_name = str(ref.name.render(env))
                what = f"reference {ref.key} ({ref.resource} {ns + '/' if ns else ''}{ref_name})"
                if not _NAME.match(ref_name) or (ns and not _NAME.match(ns)):
                    return Outcome(
                        source_id, "Error", "", f"{what}: not a valid object name", "InvalidTemplate"
                    )
                found = await self.host.get_object(
                    api_path(ref.group, ref.version, ref.resource, ns, ref_name)
                )
                if found is None and not ref.optional:
                    missing.append(f"{what} not found")
                env["references"][ref.key] = _strip(found) if found is not None else None
            try:
                name = policy.prefix + str(policy.name_template.render(env))
            except TemplateError:
                if missing:  # the name needs the reference
                    return Outcome(source_id, "Waiting", "", "; ".join(missing), "ReferenceMissing")
                raise
            if not _NAME.match(name) or len(name) > 253:
                return Outcome(
                    source_id,
                    "Error",
                    "",
                    f"the name {name[:80]!r} is not a valid object name",
                    "InvalidTemplate",
                )
            existing = clusters.get(name)
            ours = existing is not None and _labels(existing).get(POLICY_LABEL) == policy.name
            deleting = bool((source.get("metadata") or {}).get("deletionTimestamp")) or (
                policy.deletion is not None and policy.deletion.holds(env)
            )
            creating = policy.creation is None or policy.creation.holds(env)
            if existing is not None and not ours:
                if deleting or not creating:
                    return Outcome(source_id, "Skipped", "", "the PediaCluster of this name is not an import")
                owner = _labels(existing).get(POLICY_LABEL)
                by = f"by ClusterImportPolicy {owner}" if owner else "by hand"
                message = f"PediaCluster {name} exists and was made {by}: it is left alone"
                return Outcome(source_id, "Conflict", name, message, "Conflict")
            if deleting:
                if existing is not None:
                    log.info("deleting PediaCluster %s: the deletion condition of %s holds", name, source_id)
                    await self.host.delete_object(f"{PEDIACLUSTERS}/{name}")
                    clusters.pop(name, None)
                    return Outcome(source_id, "Deleted", name, "the deletion condition holds")
                return Outcome(source_id, "Skipped", "", "the deletion condition holds")
            if existing is None and not creating:
                return Outcome(source_id, "Skipped", "", "the creation condition does not hold")
            if name in claimed:
                message = f"PediaCluster {name} is already the import of {claimed[name]}"
                return Outcome(source_id, "Conflict", name, message, "Conflict")
            claimed[name] = source_id
            if missing:
                return Outcome(
                    source_id, "Waiting", name if existing else "", "; ".join(missing), "ReferenceMissing"
                )
            spec = policy.spec.render(env)
            if not isinstance(spec, dict):
                return Outcome(source_id, "Error", name, "spec.template gave no mapping", "InvalidTemplate")
        except TemplateError as exc:
            return Outcome(source_id, "Error", "", str(exc), "InvalidTemplate")
        return await self._apply(policy, name, source_id, spec, existing, clusters)

    async def _apply(
        self,
        policy: Policy,
        name: str,
        source_id: str,
        spec: dict[str, Any],
        existing: dict[str, Any] | None,
        clusters: dict[str, dict[str, Any]],
    ) -> Outcome:
        digest = spec_hash(spec)
        annotations = {SOURCE_ANNOTATION: source_id, HASH_ANNOTATION: digest}
        try:
            if existing is None:
                body = {
                    "apiVersion": "clusters.clusterpedia.io/v1alpha1",
                    "kind": "PediaCluster",
                    "metadata": {
                        "name": name,
                        "labels": {POLICY_LABEL: policy.name},
                        "annotations": annotations,
                    },
                    "spec": spec,
                }
                clusters[name] = await self.host.write_object("POST", PEDIACLUSTERS, body)
                log.info("imported %s as PediaCluster %s (policy %s)", source_id, name, policy.name)
            elif existing["metadata"].get("deletionTimestamp"):
                return Outcome(source_id, "Waiting", name, "the PediaCluster is being deleted")
            elif any(_annotations(existing).get(k) != v for k, v in annotations.items()):
                meta = existing["metadata"]
                body = {
                    **existing,
                    "metadata": {**meta, "annotations": {**(meta.get("annotations") or {}), **annotations}},
                    "spec": spec,
                }
                body.pop("status", None)
                clusters[name] = await self.host.write_object("PUT", f"{PEDIACLUSTERS}/{name}", body)
                log.info("updated PediaCluster %s from %s (policy %s)", name, source_id, policy.name)
        except ApiError as exc:
            if exc.code == 409:  # created or changed meanwhile: the next pass looks again
                return Outcome(source_id, "Waiting", name, f"PediaCluster {name} changed meanwhile")
            if exc.code in (400, 422):
                return Outcome(
                    source_id, "Error", name, f"the host refused the PediaCluster: {exc.message}", "Invalid"
                )
            raise
        return Outcome(source_id, "Imported", name)

    # -- status ------------------------------------------------------------------------------------

    async def _write_status(
        self, obj: dict[str, Any], display: str, result: PassResult, mine: list[dict[str, Any]]
    ) -> None:
        name = obj["metadata"]["name"]
        problems = [o for o in result.outcomes if o.reason]
        conflicts = [o for o in problems if o.reason == "Conflict"]
        if result.problem is not None:
            ready = ("False", result.problem.reason, result.problem.message)
        elif problems:
            lines = [f"{o.source}: {o.message}" for o in problems]
            message = "; ".join(lines)
            if len(message) > MAX_MESSAGE_CHARS:
                message = message[:MAX_MESSAGE_CHARS] + f"... ({len(lines)} problems)"
            ready = ("False", problems[0].reason, message)
        else:
            imported = sum(1 for o in result.outcomes if o.state == "Imported")
            ready = ("True", "Imported", f"{imported} of {len(result.outcomes)} sources imported")
        conflict = (
            ("True", "Conflict", "; ".join(o.message for o in conflicts)[:MAX_MESSAGE_CHARS])
            if conflicts
            else ("False", "NoConflict", "")
        )
        ready_count = sum(1 for pc in mine if _is_ready(pc))
        previous = (obj.get("status") or {}).get("conditions") or []
        status: dict[str, Any] = {
            "source": display,
            "imported": len(mine),
            "ready": ready_count,
            "readySummary": f"{ready_count}/{len(mine)}",
            "observedGeneration": int(obj["metadata"].get("generation") or 0),
            "conditions": [
                _condition("Ready", *ready, previous),
                _condition("Conflict", *conflict, previous),
            ],
            "clusters": [_line(o) for o in result.outcomes[:MAX_LISTED_SOURCES]],
        }
        current = {k: (obj.get("status") or {}).get(k) for k in status}
        if current == status or self._written.get(name) == status:
            return
        await self.host.patch_object_status(f"{POLICIES}/{name}", status)
        self._written[name] = status


def _line(outcome: Outcome) -> dict[str, str]:
    line = {"source": outcome.source, "pediacluster": outcome.pediacluster, "state": outcome.state}
    line["message"] = outcome.message
    return {k: v for k, v in line.items() if v}


def _condition(kind: str, status: str, reason: str, message: str, previous: list[Any]) -> dict[str, str]:
    before = next((c for c in previous if isinstance(c, dict) and c.get("type") == kind), {})
    changed = before.get("status") != status
    when = str(before.get("lastTransitionTime") or "") if not changed else ""
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": when or _now(),
    }


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
