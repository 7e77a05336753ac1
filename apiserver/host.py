"""HTTP access to the host cluster's kube-apiserver for authentication and authorisation reviews.

The kubeconfig is found and loaded by common/hostcluster.py (the same order as the synchro);
requests go through httpx, async on the request path (TokenReview, SubjectAccessReview) and sync
once at start (reading ``kube-system/extension-apiserver-authentication``).
"""

from __future__ import annotations

from typing import Any

import httpx

from common.hostcluster import HostCredentials
from common.http import client_kwargs


class HostClient:
    def __init__(self, conn: HostCredentials, *, timeout_seconds: float = 10.0) -> None:
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
