"""HTTP access to the host cluster's kube-apiserver for authentication and authorisation reviews.

The kubeconfig (or in-cluster service account) is loaded with the ``kubernetes`` package, which
knows every kubeconfig form (inline data, files, tokens, exec plugins are out of scope); requests
then go through httpx, async on the request path (TokenReview, SubjectAccessReview) and sync once at
start (reading ``kube-system/extension-apiserver-authentication``).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any

import httpx
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

from common.http import client_kwargs
from common.kubeconfig import LOADER_LOCK
from common.settings import Settings, env_value


@dataclass(frozen=True, slots=True)
class HostConnection:
    server: str
    ca_file: str | None
    verify: bool
    cert_file: str | None
    key_file: str | None
    authorization: str | None

    def ssl_context(self) -> ssl.SSLContext | bool:
        if not self.verify:
            return False
        ctx = (
            ssl.create_default_context(cafile=self.ca_file) if self.ca_file else ssl.create_default_context()
        )
        if self.cert_file and self.key_file:
            ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx

    def headers(self) -> dict[str, str]:
        return {"Authorization": self.authorization} if self.authorization else {}


def load_host_connection(settings: Settings) -> HostConnection:
    """From ``settings.kubeconfig``, else $KUBECONFIG / ~/.kube/config, else the in-cluster account."""
    cfg = k8s_client.Configuration()
    path = settings.kubeconfig or env_value("KUBECONFIG")
    with LOADER_LOCK:
        if not path and env_value("KUBERNETES_SERVICE_HOST"):
            k8s_config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
        else:
            k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=path or None, client_configuration=cfg
            )
    token = cfg.api_key.get("authorization") or cfg.api_key.get("BearerToken")
    if token and cfg.api_key_prefix.get("authorization") and not token.startswith("Bearer"):
        token = f"{cfg.api_key_prefix['authorization']} {token}"
    return HostConnection(
        server=cfg.host.rstrip("/"),
        ca_file=cfg.ssl_ca_cert or None,
        verify=bool(cfg.verify_ssl),
        cert_file=cfg.cert_file or None,
        key_file=cfg.key_file or None,
        authorization=token or None,
    )


class HostClient:
    def __init__(self, conn: HostConnection, *, timeout_seconds: float = 10.0) -> None:
        self.conn = conn
        self._verify = conn.ssl_context()
        self._timeout = timeout_seconds
        self._async: httpx.AsyncClient | None = None

    def get_json_sync(self, path: str) -> Any:
        with httpx.Client(
            base_url=self.conn.server, verify=self._verify, headers=self.conn.headers(), timeout=self._timeout
        ) as c:
            r = c.get(path)
            r.raise_for_status()
            return r.json()

    def _client(self) -> httpx.AsyncClient:
        if self._async is None:
            self._async = httpx.AsyncClient(
                base_url=self.conn.server,
                **client_kwargs(self._verify, httpx.Limits()),
                headers=self.conn.headers(),
                timeout=self._timeout,
            )
        return self._async

    async def post_json(self, path: str, body: dict[str, Any]) -> Any:
        r = await self._client().post(path, json=body)
        r.raise_for_status()
        return r.json()

    async def get_json(self, path: str) -> Any:
        r = await self._client().get(path)
        r.raise_for_status()
        return r.json()

    async def aclose(self) -> None:
        if self._async is not None:
            await self._async.aclose()
            self._async = None
