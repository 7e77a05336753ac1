"""Parses a path below ``/apis/clusterpedia.io/v1beta1/resources`` into what is asked (pure).

Under the prefix (optionally ``/clusters/{name}``) lives a Kubernetes-shaped API, so the same rules
as kube-apiserver's request-info parsing apply: ``/api/v1/...`` is the core group, ``/apis/{g}/{v}/...``
any other, ``namespaces/{ns}/{resource}[/{name}]`` a namespaced request, ``{resource}[/{name}]`` a
cluster-wide one (all namespaces for a namespaced resource, as ``kubectl get -A`` asks).
"""

from __future__ import annotations

from dataclasses import dataclass

from common.errors import NotFound

NOT_FOUND_MESSAGE = "the server could not find the requested resource"


@dataclass(frozen=True, slots=True)
class Route:
    """``action``: root, version, api, apis, group, resources (APIResourceList), list, get,
    openapi-index, openapi-gv, openapi-v2 (one cluster's: forwarded to the member)."""

    action: str
    cluster: str = ""
    group: str = ""
    version: str = ""
    resource: str = ""
    namespace: str = ""
    name: str = ""
    namespaced_path: bool = False
    subresource: str = ""
    """``status``, ``scale``, ``log``, ``exec``, ``proxy``...: served by the member (forwarded);
    what follows it (a proxy's path) is not parsed."""


def not_found() -> NotFound:
    return NotFound(NOT_FOUND_MESSAGE, details={})


def parse_path(rest: str) -> Route:
    """``rest``: the path after ``.../resources`` (with or without the leading slash)."""
    segments = rest.strip("/").split("/") if rest.strip("/") else []
    if any(s == "" for s in segments):
        raise not_found()
    cluster = ""
    if segments and segments[0] == "clusters":
        if len(segments) < 2:
            raise not_found()
        cluster, segments = segments[1], segments[2:]
    if not segments:
        return Route("root", cluster)
    head = segments[0]
    if head == "version" and len(segments) == 1:
        return Route("version", cluster)
    if head == "openapi":
        return _openapi(cluster, segments[1:])
    if head == "api":
        if len(segments) == 1:
            return Route("api", cluster)
        return _group_version(cluster, "", segments[1], segments[2:])
    if head == "apis":
        if len(segments) == 1:
            return Route("apis", cluster)
        if len(segments) == 2:
            return Route("group", cluster, group=segments[1])
        return _group_version(cluster, segments[1], segments[2], segments[3:])
    raise not_found()


def _openapi(cluster: str, tail: list[str]) -> Route:
    """``openapi/v3`` (index) and ``openapi/v3/api/{v}``, ``openapi/v3/apis/{g}/{v}``; ``openapi/v2``
    (the member's own document below one cluster, an empty one on the all-clusters view)."""
    if tail == ["v3"]:
        return Route("openapi-index", cluster)
    if tail == ["v2"]:
        return Route("openapi-v2", cluster)  # one member's own, or an empty one (kubectl validates with it)
    if tail[:2] == ["v3", "api"] and len(tail) == 3:
        return Route("openapi-gv", cluster, "", tail[2])
    if tail[:2] == ["v3", "apis"] and len(tail) == 4:
        return Route("openapi-gv", cluster, tail[2], tail[3])
    raise not_found()


NAMESPACE_SUBRESOURCES = frozenset({"status", "finalize"})
"""``/api/v1/namespaces/{name}/status``: a subresource of the namespace, not a list of "status"."""


def _group_version(cluster: str, group: str, version: str, tail: list[str]) -> Route:
    if not tail:
        return Route("resources", cluster, group, version)
    if tail[0] == "namespaces" and len(tail) == 3 and not group and tail[2] in NAMESPACE_SUBRESOURCES:
        return Route("get", cluster, group, version, "namespaces", "", tail[1], subresource=tail[2])
    if tail[0] == "namespaces" and len(tail) >= 3:
        namespace, resource = tail[1], tail[2]
        name = tail[3] if len(tail) >= 4 else ""
        sub = tail[4] if len(tail) >= 5 else ""
        return Route("get" if name else "list", cluster, group, version, resource, namespace, name, True, sub)
    if len(tail) == 1:
        return Route("list", cluster, group, version, tail[0])
    return Route(
        "get", cluster, group, version, tail[0], "", tail[1], subresource=tail[2] if len(tail) > 2 else ""
    )
