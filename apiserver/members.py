"""The API tier's connections to member clusters, for writes forwarded as the caller.

A member is reached with its PediaCluster's credentials, read from the host when a write comes
(the API tier may get PediaClusters and the Secrets labelled as member credentials: the chart
grants it). Those credentials are hostile input exactly as in the synchro (DESIGN section 10):
they go through the same parser and URL validation (:mod:`common.credentials`,
:mod:`common.destinations`: inline data only, https, no user information, the operator's denied
networks, checked again after DNS resolution by :class:`common.http.CancelSafeBackend`), and
they are never logged or repeated in a message. A PediaCluster that cannot be used answers a 503
Status naming what is wrong with it, in the words its status would use.

One client per cluster is kept while the PediaCluster's resourceVersion and its Secret stay the
same; the PediaCluster is read again on each write (writes are rare, credentials rotate).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass
from typing import Any

import httpx

from apiserver.identities import DENY, IdentityMapping, mappings_from
from apiserver.pediaclusters import PEDIACLUSTERS, HostReader
from apiserver.permissions import User
from apiserver.search import is_valid_name
from common.credentials import (
    InvalidConfig,
    credentials_from_spec,
    secret_data_if_labelled,
    secret_ref_path,
)
from common.destinations import parse_networks
from common.errors import Forbidden, NotFound, ServiceUnavailable
from common.http import CancelSafeBackend, client_kwargs
from common.pediacluster import spec_of
from common.settings import Settings
from common.transform import NamespaceFilter

log = logging.getLogger(__name__)

TIMEOUT = httpx.Timeout(60.0, connect=10.0)
STREAM_TIMEOUT = httpx.Timeout(60.0, connect=10.0, read=None)
"""Logs followed with ``-f`` stay silent as long as the container is."""


@dataclass(frozen=True, slots=True)
class Member:
    """One member, as writes reach it."""

    cluster: str
    client: httpx.AsyncClient
    mapping: IdentityMapping | None
    """``spec.identity`` (None: the host's identity as it is)."""
    namespaces: NamespaceFilter

    def identity(self, user: User) -> User:
        return self.mapping.apply(user) if self.mapping is not None else user


class Members:
    def __init__(self, host: HostReader, settings: Settings) -> None:
        self.host = host
        self.settings = settings
        self.denied = parse_networks(settings.synchro.denied_networks)
        self._cache: dict[str, tuple[str, Member]] = {}
        self._lock = asyncio.Lock()

    async def _read(self, path: str, what: str) -> Any:
        try:
            return await self.host.get_json(path)
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code == 404:
                raise NotFound(f"{what} not found") from None
            raise ServiceUnavailable(
                f"cannot read {what} from the host: {exc.response.status_code}"
            ) from None
        except (httpx.HTTPError, ValueError) as exc:
            raise ServiceUnavailable(f"cannot read {what} from the host: {type(exc).__name__}") from None

    async def member(self, cluster: str) -> Member:
        if not is_valid_name(cluster):
            raise NotFound(f'cluster "{cluster}" not found')
        pc = await self._read(f"{PEDIACLUSTERS}/{cluster}", f'cluster "{cluster}"')
        spec = pc.get("spec") or {}
        secret_data: dict[str, str] | None = None
        ref = spec.get("secretRef")
        if ref:
            if not isinstance(ref, dict) or not isinstance(ref.get("name"), str) or not ref["name"]:
                raise ServiceUnavailable(
                    f'PediaCluster "{cluster}" cannot be used: spec.secretRef needs a name'
                )
            namespace = str(ref.get("namespace") or self.settings.synchro.lease_namespace)
            try:
                path = secret_ref_path(namespace, ref["name"])  # both go into a host path
            except InvalidConfig as exc:
                raise ServiceUnavailable(f'PediaCluster "{cluster}" cannot be used: {exc}') from None
            where = f"{namespace}/{ref['name']}"
            secret = await self._read(path, f"Secret {where}")
            try:
                secret_data = secret_data_if_labelled(secret, where)
            except InvalidConfig as exc:
                raise ServiceUnavailable(f'PediaCluster "{cluster}" cannot be used: {exc}') from None
        key = hashlib.sha256(
            repr(
                (pc.get("metadata", {}).get("resourceVersion"), sorted((secret_data or {}).items()))
            ).encode()
        ).hexdigest()
        async with self._lock:
            cached = self._cache.get(cluster)
            if cached is not None and cached[0] == key:
                return cached[1]
            member = self._connect(cluster, pc, secret_data)
            self._cache[cluster] = (key, member)
        if cached is not None:
            await cached[1].client.aclose()
        return member

    def _connect(self, cluster: str, pc: dict[str, Any], secret_data: dict[str, str] | None) -> Member:
        spec = pc.get("spec") or {}
        try:
            creds = credentials_from_spec(spec_of(pc), secret_data, denied=self.denied)
            verify = creds.ssl_context()
        except InvalidConfig as exc:
            raise ServiceUnavailable(f'PediaCluster "{cluster}" cannot be used: {exc}') from None
        mapping = mappings_from({"items": [pc]}).get(cluster)
        if mapping is DENY:
            raise Forbidden(f'PediaCluster "{cluster}": spec.identity is malformed, nobody is mapped there')
        ns = spec.get("namespaces")
        ns = ns if isinstance(ns, dict) else {}
        backend = CancelSafeBackend(self.denied, creds.tls_server_name)
        client = httpx.AsyncClient(
            base_url=creds.url,
            headers=creds.headers(),
            timeout=TIMEOUT,
            **client_kwargs(verify, httpx.Limits(max_keepalive_connections=4), backend),
        )
        return Member(
            cluster,
            client,
            mapping if isinstance(mapping, IdentityMapping) else None,
            NamespaceFilter(ns.get("include"), ns.get("exclude")),
        )

    async def aclose(self) -> None:
        for _, member in self._cache.values():
            await member.client.aclose()
        self._cache.clear()
