"""Parses a list request into a ``Search`` (implementation follows)."""

from __future__ import annotations

from collections.abc import Iterable

from apiserver.types import Search


def parse_search(
    query: Iterable[tuple[str, str]],
    *,
    group: str,
    version: str,
    resource: str,
    cluster: str = "",
    namespace: str = "",
    max_page_size: int = 10000,
) -> Search:
    """``query``: the URL query as (name, value) pairs (Starlette: ``request.query_params.multi_items()``),
    including ``labelSelector``, ``fieldSelector``, ``limit`` and ``continue``. ``cluster``: the
    ``/resources/clusters/{cluster}`` path form; ``namespace``: the path namespace. Pure; raises
    ``common.errors.BadRequest``."""
    raise NotImplementedError
