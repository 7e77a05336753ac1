"""The host's PediaCluster list as the API tier reads it, at the protocol edge (``HostReader``)."""

from __future__ import annotations

from typing import Any

import httpx


class Host:
    """Answers the PediaCluster LIST with ``items``; ``items`` None: the host is down."""

    def __init__(self, items: list[dict[str, Any]] | None) -> None:
        self.items = items

    async def get_json(self, path: str) -> Any:
        if self.items is None:
            raise httpx.ConnectError("host down")
        return {"items": self.items}
