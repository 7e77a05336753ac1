"""The PediaCluster as the synchro reads it: typed views of its spec and status, decoded once.

A PediaCluster is written by someone who is not the operator (DESIGN section 10), and a CRD's schema
is only as strict as the one installed: the spec is decoded here into msgspec Structs (unknown
fields ignored, as the API server's pruning would), and a field of the wrong type is an
:class:`InvalidConfig` naming it, which the manager reports as that PediaCluster's Ready
condition instead of starting a sync that would fail on it. The status is the synchro's own
record (resources synced, list epochs); one it cannot read is treated as no record.
"""

from __future__ import annotations

from typing import Any

import msgspec

from common.destinations import InvalidConfig


class SecretRef(msgspec.Struct, frozen=True):
    name: str = ""
    namespace: str = ""
    """Default: the synchro's namespace."""


class NamespaceSelection(msgspec.Struct, frozen=True):
    include: tuple[str, ...] | None = None
    exclude: tuple[str, ...] | None = None


class ResourceSelector(msgspec.Struct, frozen=True):
    """One entry of ``spec.resources``: a group, plural resources (``*``: all) and versions."""

    group: str = ""
    resources: tuple[str, ...] = ()
    versions: tuple[str, ...] = ()


class PediaClusterSpec(msgspec.Struct, frozen=True, omit_defaults=True):
    """The fields the synchro reads (``spec.identity`` is the API tier's)."""

    apiserverURL: str | None = None
    kubeconfig: str | None = None
    caData: str | None = None
    tokenData: str | None = None
    certData: str | None = None
    keyData: str | None = None
    insecureSkipTLSVerify: bool | None = None
    insecureAllowHTTP: bool | None = None
    secretRef: SecretRef | None = None
    resources: tuple[ResourceSelector, ...] | None = None
    syncAllCustomResources: bool | None = None
    namespaces: NamespaceSelection | None = None

    @property
    def wanted(self) -> tuple[ResourceSelector, ...]:
        return self.resources or ()

    @property
    def secret_ref(self) -> SecretRef | None:
        """``spec.secretRef`` when it says anything (an empty one is ignored)."""
        return self.secretRef if self.secretRef is not None and self.secretRef != SecretRef() else None

    @property
    def sync_all(self) -> bool:
        return self.syncAllCustomResources is True

    def credential_fields(self) -> dict[str, Any]:
        """The credential fields that are set, under their spec names (``caData``...)."""
        out: dict[str, Any] = msgspec.to_builtins(self)
        for key in ("secretRef", "resources", "syncAllCustomResources", "namespaces"):
            out.pop(key, None)
        return {k: v for k, v in out.items() if v not in (None, "")}


class SyncCondition(msgspec.Struct, frozen=True):
    listResourceVersion: str = ""


class StatusResource(msgspec.Struct, frozen=True):
    resource: str = ""
    syncConditions: tuple[SyncCondition, ...] | None = None


class StatusGroup(msgspec.Struct, frozen=True):
    group: str = ""
    resources: tuple[StatusResource, ...] | None = None


class PediaClusterStatus(msgspec.Struct, frozen=True):
    """What an earlier sync recorded: the resources it synced and the list epochs it used."""

    resources: tuple[StatusGroup, ...] | None = None


def spec_of(obj: dict[str, Any]) -> PediaClusterSpec:
    """The typed spec of a PediaCluster object; :class:`InvalidConfig` naming the field that has
    the wrong type."""
    try:
        return msgspec.convert(obj.get("spec") or {}, PediaClusterSpec)
    except msgspec.ValidationError as exc:
        raise InvalidConfig(_where(exc, "spec")) from None


def status_of(obj: dict[str, Any]) -> tuple[PediaClusterStatus, str]:
    """The typed status, and "" -- or an empty status and why it cannot be read."""
    try:
        return msgspec.convert(obj.get("status") or {}, PediaClusterStatus), ""
    except msgspec.ValidationError as exc:
        return PediaClusterStatus(), _where(exc, "status")


def _where(exc: msgspec.ValidationError, root: str) -> str:
    """msgspec's "Expected `str`, got `int` - at `$.caData`" as "spec.caData: expected `str`, got `int`"."""
    text = str(exc)
    problem, sep, path = text.rpartition(" - at `$")
    if not sep:
        return f"{root}: {text[:1].lower()}{text[1:]}"
    return f"{root}{path.rstrip('`')}: {problem[:1].lower()}{problem[1:]}"
