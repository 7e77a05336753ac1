"""The host's PediaClusters as the API tier reads them: one list, shared by what needs it.

The same reader, pointed at another path, reads the CollectionResourceDefinitions
(``apiserver/collections.py``).

The identity mappings of member-rbac (``apiserver/identities.py``) and the freshness warnings
(``apiserver/freshness.py``) both come from the PediaCluster objects; one reader serves both, so the
host gets one LIST per ``refresh_seconds`` per API process, whoever asks. It is read by the first
request that needs it after that interval (no background task: an idle API tier asks nothing), and
the last good list is kept while the host does not answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Protocol

import httpx

log = logging.getLogger(__name__)

PEDIACLUSTERS = "/apis/clusters.clusterpedia.io/v1alpha1/pediaclusters"


class HostReader(Protocol):
    async def get_json(self, path: str) -> Any: ...


class PediaClusterDirectory:
    """The PediaCluster list of the host, at most ``refresh_seconds`` old (when the host answers)."""

    def __init__(
        self,
        host: HostReader,
        *,
        refresh_seconds: float = 10.0,
        path: str = PEDIACLUSTERS,
        missing_is_empty: bool = False,
    ) -> None:
        self.host = host
        self.path = path
        """What is listed: the PediaClusters, or another kind of the host read the same way (the
        CollectionResourceDefinitions, ``apiserver/collections.py``)."""
        self.missing_is_empty = missing_is_empty
        """A 404 (the kind's CRD is not installed, or was removed) reads as an empty list."""
        self.refresh_seconds = refresh_seconds
        self._list: dict[str, Any] | None = None
        self._read_at = float("-inf")
        self._lock = asyncio.Lock()
        self._failing = False

    async def current(self) -> dict[str, Any] | None:
        """The PediaClusterList (``items``...); None until it could be read once. The same object
        is returned until a new list is read (callers may cache what they derive from it by it)."""
        if time.monotonic() - self._read_at < self.refresh_seconds:
            return self._list
        async with self._lock:
            started = time.monotonic()
            if started - self._read_at >= self.refresh_seconds:
                try:
                    got = await self.host.get_json(self.path)
                    if not isinstance(got, dict):
                        raise ValueError("the list is not an object")
                    self._list, self._failing = got, False
                except (httpx.HTTPError, ValueError) as exc:  # host down or refusing: keep the last
                    if self.missing_is_empty and _status(exc) == 404:
                        self._list, self._failing = {"items": []}, False
                    else:
                        if not self._failing:
                            log.warning("reading %s from the host failed: %s", self.path, exc)
                        self._failing = True
                self._read_at = started
        return self._list


def _status(exc: Exception) -> int:
    return exc.response.status_code if isinstance(exc, httpx.HTTPStatusError) else 0
