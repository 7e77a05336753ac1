"""The API tier's Starlette application: routing, rendering and the one Status error handler.

Requests reach us either straight from kubectl or proxied by the host's kube-aggregator (APIService
``v1beta1.clusterpedia.io`` and ``v1alpha1.pedia.clusterpedia.io``); both send the same paths:

- ``/apis``, ``/apis/clusterpedia.io[/v1beta1]``, ``/apis/pedia.clusterpedia.io[/v1alpha1]``: the
  group documents an aggregated apiserver serves (the aggregator's availability check reads them);
- ``/apis/clusterpedia.io/v1beta1/resources[/clusters/{name}]/...``: a Kubernetes-shaped API over
  everything synced (see :mod:`apiserver.routing`), and ``.../collectionresources[/{name}]``;
- ``/healthz``, ``/readyz``, ``/livez``, ``/version``, ``/metrics``; OpenAPI v3 for ``kubectl explain``
  below the resources prefix (the root ``/openapi/*`` answer 404, see :mod:`apiserver.openapi`).

Only GET (and HEAD) are served: anything else is a 405 Status, a watch a 405 Status, an unknown
path a 404 Status. Every error leaves as a ``kind: Status`` object.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

import anyio.to_thread
import msgspec
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from apiserver import collections as collection_store
from apiserver import discovery, group_counts, groups, openapi, relations
from apiserver.auth import ANONYMOUS, PROXIED_STATE_KEY, UserInfo, is_watch
from apiserver.catalog import Catalog
from apiserver.forwarding import Forwarding
from apiserver.freshness import Freshness, warnings_for
from apiserver.identities import PediaClusterIdentities
from apiserver.members import Members
from apiserver.metrics import MetricsMiddleware, metrics_endpoint
from apiserver.permissions import User
from apiserver.responses import (
    JSON as JSON_CONTENT_TYPE,
)
from apiserver.responses import (
    ObjectRendering,
    discovery_content_type,
    json_response,
    list_bytes,
    negotiate_discovery,
    negotiate_object,
    status_response,
    table_content_type,
)
from apiserver.routing import Route as ApiRoute
from apiserver.routing import not_found, parse_path
from apiserver.search import (
    check_continue_scope,
    continue_scope,
    encode_continue,
    is_valid_name,
    parse_search,
)
from apiserver.tables import build_table, choose_printer, table_options
from apiserver.types import GroupResource, ListPage, Search, StoredObject
from apiserver.visibility import MODES, MemberRBAC, narrowed
from apiserver.watching import Event, WatchHub, WatchResponse, WatchStream, parse_watch
from common.errors import (
    BadRequest,
    Forbidden,
    MethodNotAllowed,
    NotFound,
    ServiceUnavailable,
    StatusError,
)
from common.settings import Settings
from common.storage import (
    ChangeFeed,
    ServedResource,
    StorageError,
    StorageRejected,
    StorageUnavailable,
    StoreReader,
    StoreWriter,
    UnknownCluster,
)
from common.storage.query import SetFilter

log = logging.getLogger(__name__)

RESOURCES_PREFIX = "/apis/clusterpedia.io/v1beta1/resources"
READ_METHODS = ("GET", "HEAD")

_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()


def _gv(group: str, version: str) -> str:
    return f"{group}/{version}" if group else version


def _rewrite_api_version(raw: bytes, api_version: str) -> bytes:
    """Serve an object stored in another version of the same kind: apiVersion is all that changes
    (the ``None`` conversion strategy of CRDs)."""
    obj = _decoder.decode(raw)
    if isinstance(obj, dict):
        obj["apiVersion"] = api_version
        return _encoder.encode(obj)
    return raw


def _check_read(request: Request) -> None:
    if request.method not in READ_METHODS:
        raise MethodNotAllowed(
            f"{request.method} is not supported: Clusterpedia serves get, list and watch only",
            details={},
        )


def _no_watch(request: Request) -> None:
    """A watch where kube-apiserver has none (a get path, discovery documents)."""
    if is_watch(request.url.query):
        raise MethodNotAllowed("watch is served on list paths only", details={})


def _list_metadata(page: ListPage) -> dict[str, Any]:
    meta: dict[str, Any] = {"resourceVersion": page.resource_version}
    if page.next is not None:
        meta["continue"] = encode_continue(page.next)
    if page.remaining_item_count is not None:
        meta["remainingItemCount"] = page.remaining_item_count
    return meta


def _partial(obj_bytes: bytes, meta_version: str) -> dict[str, Any]:
    obj = _decoder.decode(obj_bytes)
    metadata = obj.get("metadata", {}) if isinstance(obj, dict) else {}
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": f"meta.k8s.io/{meta_version}",
        "metadata": metadata,
    }


class Api:
    """Request handlers bound to one store and one settings object."""

    def __init__(
        self,
        settings: Settings,
        store: StoreReader,
        catalog: Catalog | None = None,
        identities: PediaClusterIdentities | None = None,
        members: Members | None = None,
        writer: StoreWriter | None = None,
        freshness: Freshness | None = None,
        collections: collection_store.Collections | None = None,
    ) -> None:
        self.settings = settings
        self.collection_defs = collections or collection_store.Collections(settings.apiserver)
        """The configured collections and the host's CollectionResourceDefinitions."""
        self.freshness = freshness
        """Stale-cluster warnings (None: no host to read PediaClusters from, no warnings)."""
        self.store = store
        self.catalog = catalog or Catalog(store)
        mode = settings.apiserver.authorization_mode
        if mode not in MODES:
            raise ValueError(f"apiserver.authorization_mode {mode!r}: expected one of {', '.join(MODES)}")
        self.rbac = MemberRBAC(store, identities=identities) if mode == "member-rbac" else None
        """member-rbac: what each caller sees is what their members' RBAC lets them read."""
        self.store_name = str(getattr(store, "name", type(store).__name__))
        self.hub = (
            WatchHub(store, poll_seconds=settings.apiserver.watch_poll_seconds)
            if isinstance(store, ChangeFeed)
            else None
        )
        """Watch support: the store's change feed, read once per process for every watcher."""
        self.forwarding = Forwarding(settings, store, self.catalog, members, writer)
        """Writes and subresources, sent to the member as the caller (None members: refused)."""

    # ---- the Kubernetes-shaped API under /resources -------------------------------------------

    async def resources(self, request: Request) -> Response:
        write = request.method not in READ_METHODS
        if not write:
            _check_read(request)
        rest = request.url.path[len(RESOURCES_PREFIX) :]
        if rest == "":
            raise MethodNotAllowed(
                "resources.clusterpedia.io cannot be listed itself: use the Kubernetes API below "
                f"{RESOURCES_PREFIX}/ (e.g. {RESOURCES_PREFIX}/api/v1/pods)",
                details={},
            )
        route = parse_path(rest)
        if write or route.subresource or route.action == "openapi-v2":
            return await self.forwarding.forward(request, route, _caller_info(request))
        if route.action != "list":
            _no_watch(request)
        rows = await self.catalog.rows(route.cluster)
        if route.cluster and not rows:
            raise NotFound(f'cluster "{route.cluster}" not found', details={"name": route.cluster})
        accept = request.headers.get("accept", "")
        if route.action == "root":
            paths = ["/api", "/api/v1", "/apis", *(f"/apis/{g}" for g in discovery.group_versions(rows) if g)]
            return json_response({"paths": paths})
        if route.action == "version":
            return json_response(groups.version_info())
        if route.action == "openapi-index":
            prefix = request.url.path[: -len("/openapi/v3")]
            return json_response(openapi.index_document(rows, prefix))
        if route.action == "openapi-gv":
            build = openapi.group_version_document
            doc = await anyio.to_thread.run_sync(build, rows, route.group, route.version)
            if doc is None:
                raise not_found()
            return json_response(doc)
        if route.action in ("api", "apis"):
            return self._discovery_root(
                rows, legacy=route.action == "api", accept=accept, writable=self._writable(route)
            )
        if route.action == "group":
            doc = discovery.api_group(rows, route.group)
            if doc is None:
                raise not_found()
            return json_response(doc)
        if route.action == "resources":
            doc = discovery.api_resource_list(
                rows, route.group, route.version, writable=self._writable(route)
            )
            if doc is None:
                raise not_found()
            return json_response(doc)
        found = discovery.find_resource(rows, route.group, route.version, route.resource)
        if found is None:
            raise not_found()
        rtype, same = found
        if route.namespaced_path and not rtype.namespaced:
            raise not_found()
        rendering = negotiate_object(accept)
        if route.action == "list":
            if is_watch(request.url.query):
                response = await self._watch_resource(request, route, rtype, same, rendering)
            else:
                response = await self._list(request, route, rtype, same, rendering)
        else:
            _no_watch(request)
            response = await self._get(request, route, rtype, same, rendering)
        return await self._warn_stale(response, request, route.cluster)

    async def _warn_stale(self, response: Response, request: Request, cluster: str) -> Response:
        """Freshness (``apiserver/freshness.py``): a ``Warning`` header for each cluster of the
        response's scope -- ``cluster`` (the path's), else every cluster the ``clusters`` search
        condition keeps -- that is not in sync. A watch's response has not started yet: its
        headers open the stream."""
        if self.freshness is None:
            return response
        stale = await self.freshness.stale()
        if not stale:
            return response
        if cluster:
            scope = SetFilter(include=(cluster,))
        else:
            try:
                scope = parse_search(
                    request.query_params.multi_items(), group="", version="", resource=""
                ).clusters
            except StatusError:  # conditions a get does not take: the scope is every cluster
                scope = SetFilter()
        for value in warnings_for(stale, scope.allows):
            response.headers.append("Warning", value)
        return response

    def _writable(self, route: ApiRoute) -> bool:
        """Writes are forwarded below one cluster when this API tier reaches the host."""
        return bool(route.cluster) and self.forwarding.members is not None

    def _discovery_root(
        self, rows: list[ServedResource], *, legacy: bool, accept: str, writable: bool
    ) -> Response:
        kind = negotiate_discovery(accept)
        if kind == "legacy":
            return json_response(discovery.api_versions(rows) if legacy else discovery.api_group_list(rows))
        return json_response(
            discovery.aggregated(rows, legacy=legacy, version=kind, writable=writable),
            content_type=discovery_content_type(kind),
        )

    def _objects(self, items: list[StoredObject], api_version: str) -> list[bytes]:
        return [
            it.object
            if it.version == api_version.rpartition("/")[2]
            else _rewrite_api_version(it.object, api_version)
            for it in items
        ]

    def _printer_columns(self, rtype: ServedResource, same: list[ServedResource]) -> str:
        if rtype.printer_columns:
            return rtype.printer_columns
        return next((r.printer_columns for r in same if r.printer_columns), "")

    async def _page(self, search: Search, request: Request) -> ListPage:
        """One page from the store, its continue token bound to this list (``continue_scope``: a
        token of another resource, collection, cluster path or namespace is a 400), restricted to
        what the caller may read (member-rbac)."""
        search = await self._visible(search, request)
        if search.continue_token is not None:
            check_continue_scope(search.continue_token, search)
        page = await self.store.list_objects(search)
        if page.next is not None:
            page = dataclasses.replace(
                page, next=dataclasses.replace(page.next, scope=continue_scope(search))
            )
        return page

    async def _visible(self, search: Search, request: Request) -> Search:
        """``search`` restricted to what the caller may read (member-rbac)."""
        if self.rbac is None or search.visibility is not None:
            return search
        spanned = search.group_resources or (GroupResource(search.group, search.resource),)
        grants = await self.rbac.grants(_caller(request), spanned)
        search = dataclasses.replace(search, visibility=narrowed(grants, search))
        return relations.guarded(search, self.rbac, _caller(request))

    async def _get_one(self, route: ApiRoute, request: Request) -> StoredObject:
        """The object a get names. Without a cluster, a name found in exactly one cluster is returned;
        a name found in several is a 400 naming those clusters — returning one of them would silently
        hide the others, and the seed tells users to name the cluster (``kubectl --cluster
        cluster-1 get ...``). Names that cannot exist are a 404 before the store is asked."""
        cluster, group, resource, name = route.cluster, route.group, route.resource, route.name
        gr = f"{resource}.{group}" if group else resource
        if cluster and not is_valid_name(cluster):
            raise NotFound(f'cluster "{cluster}" not found')
        if not is_valid_name(name) or (route.namespace and not is_valid_name(route.namespace)):
            raise NotFound(f'{gr} "{name}" not found')
        found = await self.store.get_objects(cluster, group, resource, route.namespace, name)
        if self.rbac is not None:
            found = await self._readable(found, route, _caller(request))
        if not found:
            raise NotFound(
                f'{gr} "{name}" not found', details={"name": name, "group": group, "kind": resource}
            )
        if len(found) > 1:
            clusters = ", ".join(o.cluster for o in found)
            raise BadRequest(
                f'{gr} "{name}" exists in several clusters ({clusters}): name the cluster, e.g.'
                f" kubectl --cluster {found[0].cluster} get {gr} {name}"
            )
        return found[0]

    async def _readable(self, found: list[StoredObject], route: ApiRoute, user: User) -> list[StoredObject]:
        """The objects of a get the caller may read. A caller who may not read that name in the
        path's cluster (or, without a cluster, in any) gets the 403 the member would answer,
        whether or not the object exists."""
        assert self.rbac is not None
        await self.rbac.refresh()
        ns, group, resource = route.namespace, route.group, route.resource
        clusters = [route.cluster] if route.cluster else list(self.rbac.clusters())
        if not any(self.rbac.access(user, c, group, resource).allows(ns, route.name) for c in clusters):
            where = f'in the namespace "{ns}"' if ns else "at the cluster scope"
            raise Forbidden(
                f'{resource}{"." + group if group else ""} "{route.name}" is forbidden: User "{user.name}"'
                f' cannot get resource "{resource}" in API group "{group}" {where}',
                details={"name": route.name, "group": group, "kind": resource},
            )
        return [o for o in found if self.rbac.access(user, o.cluster, group, resource).allows(ns, route.name)]

    async def _list(
        self,
        request: Request,
        route: ApiRoute,
        rtype: ServedResource,
        same: list[ServedResource],
        rendering: ObjectRendering,
    ) -> Response:
        search = self._route_search(request, route)
        if search.group_by:
            return await self._group_counts(search, request, rendering)
        if search.page_size is None and self.settings.apiserver.default_page_size > 0:
            search = dataclasses.replace(search, limit=self.settings.apiserver.default_page_size)
        page = await self._page(search, request)
        api_version = _gv(route.group, route.version)
        meta = _list_metadata(page)
        if rendering.kind == "table":
            options = table_options(request.query_params, rendering.meta_version)
            printer = choose_printer(route.group, route.resource, self._printer_columns(rtype, same))
            raw = self._objects(page.items, api_version) if options.include_object == "Object" else None
            body = build_table(page.items, printer, options, list_metadata=meta, raw_objects=raw)
            return json_response(body, content_type=table_content_type(rendering.meta_version))
        if rendering.kind == "partial" or (rendering.kind == "json" and search.only_metadata):
            return json_response(
                {
                    "kind": "PartialObjectMetadataList",
                    "apiVersion": f"meta.k8s.io/{rendering.meta_version}",
                    "metadata": meta,
                    "items": [_partial(it.object, rendering.meta_version) for it in page.items],
                }
            )
        body = list_bytes(
            kind=f"{rtype.kind}List",
            api_version=api_version,
            metadata=meta,
            items=self._objects(page.items, api_version),
        )
        return json_response(body)

    async def _group_counts(self, search: Search, request: Request, rendering: ObjectRendering) -> Response:
        """A group-by list (``apiserver/group_counts.py``): counts of what the caller may read."""
        visible = await self._visible(search, request)
        return await group_counts.respond(
            self.store,
            visible,
            rendering,
            request.query_params,
            list_scope=continue_scope(search),
            max_groups=self.settings.apiserver.max_groups,
        )

    def _route_search(self, request: Request, route: ApiRoute) -> Search:
        return parse_search(
            request.query_params.multi_items(),
            group=route.group,
            version=route.version,
            resource=route.resource,
            cluster=route.cluster,
            namespace=route.namespace,
            max_page_size=self.settings.apiserver.max_page_size,
        )

    async def _watch_resource(
        self,
        request: Request,
        route: ApiRoute,
        rtype: ServedResource,
        same: list[ServedResource],
        rendering: ObjectRendering,
    ) -> Response:
        api_version = _gv(route.group, route.version)
        if rendering.kind == "table":
            options = table_options(request.query_params, rendering.meta_version)
            printer = choose_printer(route.group, route.resource, self._printer_columns(rtype, same))

            def render(event: Event) -> bytes:
                item = event.item
                raw = self._objects([item], api_version) if options.include_object == "Object" else None
                meta = {"resourceVersion": str(item.revision)}
                return build_table([item], printer, options, list_metadata=meta, raw_objects=raw)

            content_type = table_content_type(rendering.meta_version)
        elif rendering.kind == "partial":

            def render(event: Event) -> bytes:
                return _encoder.encode(_partial(event.item.object, rendering.meta_version))

            content_type = JSON_CONTENT_TYPE
        else:

            def render(event: Event) -> bytes:
                return self._objects([event.item], api_version)[0]

            content_type = JSON_CONTENT_TYPE
        bookmark = {"kind": rtype.kind, "apiVersion": api_version}
        if rendering.kind == "partial":
            bookmark = {
                "kind": "PartialObjectMetadata",
                "apiVersion": f"meta.k8s.io/{rendering.meta_version}",
            }
        return await self._watch(request, self._route_search(request, route), render, bookmark, content_type)

    async def _watch(
        self,
        request: Request,
        search: Search,
        render: Callable[[Event], bytes],
        bookmark: dict[str, str],
        content_type: str,
    ) -> Response:
        """A watch: validated here (errors are Status answers), then streamed (see
        :mod:`apiserver.watching`; errors once streaming are ERROR events)."""
        if self.hub is None:
            raise MethodNotAllowed(f"watch is not supported by this store ({self.store_name})", details={})
        proxied = bool((request.scope.get("state") or {}).get(PROXIED_STATE_KEY))
        request_ = parse_watch(request.query_params, self.settings.apiserver, proxied=proxied)
        if search.owner_uid or search.owner_name:
            raise BadRequest("owner search conditions cannot be watched: list them instead")
        if search.group_by:
            raise BadRequest("group-by cannot be watched: list the group counts instead")
        if search.relation is not None:
            raise BadRequest("relation search conditions cannot be watched: list them instead")
        search = dataclasses.replace(
            search, limit=None, continue_token=None, offset=None, with_continue=False
        )
        search = await self._visible(search, request)
        stream = WatchStream(self.hub, self._page, search, request_, render, bookmark)
        await stream.prepare(request)
        return WatchResponse(stream, content_type)

    async def _get(
        self,
        request: Request,
        route: ApiRoute,
        rtype: ServedResource,
        same: list[ServedResource],
        rendering: ObjectRendering,
    ) -> Response:
        item = await self._get_one(route, request)
        api_version = _gv(route.group, route.version)
        (raw,) = self._objects([item], api_version)
        if rendering.kind == "table":
            options = table_options(request.query_params, rendering.meta_version)
            printer = choose_printer(route.group, route.resource, self._printer_columns(rtype, same))
            meta = {"resourceVersion": str(item.revision or item.resource_version)}
            body = build_table([item], printer, options, list_metadata=meta, raw_objects=[raw])
            return json_response(body, content_type=table_content_type(rendering.meta_version))
        if rendering.kind == "partial":
            return json_response(_partial(raw, rendering.meta_version))
        return json_response(raw)

    # ---- collection resources ---------------------------------------------------------------

    async def collections(self, request: Request) -> Response:
        _check_read(request)
        group, version = request.path_params["group"], request.path_params["version"]
        if (group, version) not in groups.COLLECTION_GROUP_VERSIONS:
            raise not_found()
        rendering = negotiate_object(request.headers.get("accept", ""))
        name = request.path_params.get("name", "")
        if not name:
            return groups.render_collection_list(await self.collection_defs.all(), group, version, rendering)
        collection = collection_store.expand(
            await self.collection_defs.get(name), collection_store.synced_pairs(await self.catalog.rows())
        )
        if is_watch(request.url.query):
            watch = await self._watch_collection(request, collection, group, version, rendering)
            return await self._warn_stale(watch, request, "")
        search = parse_search(
            request.query_params.multi_items(),
            group="",
            version="",
            resource="",
            max_page_size=self.settings.apiserver.max_page_size,
        )
        # A collection of wildcards only, of groups nothing is synced of, searches resource "": none.
        search = collection_store.member_search(collection, search)
        if search.group_by:
            counted = await self._group_counts(search, request, rendering)
            return await self._warn_stale(counted, request, "")
        page = await self._page(search, request)
        listed = groups.render_collection(
            collection, page, _list_metadata(page), group, version, rendering, dt.datetime.now(dt.UTC)
        )
        return await self._warn_stale(listed, request, "")

    async def _watch_collection(
        self,
        request: Request,
        collection: collection_store.Collection,
        group: str,
        version: str,
        rendering: ObjectRendering,
    ) -> Response:
        """A collection's objects, watched: each event's object is the member object (JSON) or a
        one-row collection Table."""
        search = parse_search(
            request.query_params.multi_items(),
            group="",
            version="",
            resource="",
            max_page_size=self.settings.apiserver.max_page_size,
        )
        search = collection_store.member_search(collection, search)
        if rendering.kind == "table":

            def render(event: Event) -> bytes:
                page = ListPage(items=[event.item], resource_version=str(event.item.revision))
                meta = {"resourceVersion": str(event.item.revision)}
                now = dt.datetime.now(dt.UTC)
                return bytes(
                    groups.render_collection(collection, page, meta, group, version, rendering, now).body
                )

            content_type = table_content_type(rendering.meta_version)
        else:

            def render(event: Event) -> bytes:
                return event.item.object

            content_type = JSON_CONTENT_TYPE
        bookmark = {"kind": "CollectionResource", "apiVersion": f"{group}/{version}"}
        return await self._watch(request, search, render, bookmark, content_type)

    # ---- the aggregated server's own group documents ----------------------------------------

    async def root_apis(self, request: Request) -> Response:
        _check_read(request)
        kind = negotiate_discovery(request.headers.get("accept", ""))
        if kind == "legacy":
            return json_response(groups.APIS)
        return json_response(groups.aggregated_apis(kind), content_type=discovery_content_type(kind))

    async def group_doc(self, request: Request) -> Response:
        _check_read(request)
        doc = groups.GROUPS.get(request.path_params["group"])
        if doc is None:
            raise not_found()
        return json_response(doc)

    async def group_version_doc(self, request: Request) -> Response:
        _check_read(request)
        doc = groups.RESOURCE_LISTS.get((request.path_params["group"], request.path_params["version"]))
        if doc is None:
            raise not_found()
        return json_response(doc)

    async def version(self, request: Request) -> Response:
        _check_read(request)
        return json_response(groups.version_info())

    async def health(self, request: Request) -> Response:
        return PlainTextResponse("ok")

    async def ready(self, request: Request) -> Response:
        """Ready when the store answers (a replica without its store should leave the Service)."""
        try:
            await self.store.ping()
        except StorageUnavailable as e:
            log.warning("not ready: the store does not answer: %s", e)
            return PlainTextResponse("store unavailable", status_code=503)
        return PlainTextResponse("ok")


def _caller_info(request: Request) -> UserInfo:
    """The identity the auth middleware established (anonymous without authentication)."""
    info: UserInfo = request.scope.get("state", {}).get("user") or ANONYMOUS
    return info


def _caller(request: Request) -> User:
    info = _caller_info(request)
    return User(info.name, frozenset(info.groups))


async def _status_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StatusError)
    return status_response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return status_response(not_found())
    if exc.status_code == 405:
        return status_response(MethodNotAllowed(f"{request.method} is not supported", details={}))
    err = StatusError(str(exc.detail))
    err.code = exc.status_code
    err.reason = "BadRequest" if exc.status_code == 400 else "InternalError"
    return status_response(err)


def storage_status(exc: StorageError) -> StatusError:
    """The Status a client sees for a storage error: an unknown cluster 404, a refused request 400,
    an unavailable store 503 (its details stay in our log), any other store failure 500."""
    if isinstance(exc, UnknownCluster):
        return NotFound(str(exc), details={"name": exc.name, "kind": "clusters"})
    if isinstance(exc, StorageRejected):
        return BadRequest(str(exc))
    if isinstance(exc, StorageUnavailable):
        return ServiceUnavailable("the store is unavailable, retry later")
    return StatusError("the store failed while serving the request")


async def _store_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StorageError)
    if not isinstance(exc, UnknownCluster | StorageRejected):
        log.warning("store error serving %s: %s", request.url.path, exc)
    return status_response(storage_status(exc))


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error serving %s", request.url.path, exc_info=exc)
    return status_response(StatusError("internal error while serving the request"))


ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def build_app(
    settings: Settings,
    store: StoreReader,
    *,
    catalog: Catalog | None = None,
    middleware: list[Any] | None = None,
    identities: PediaClusterIdentities | None = None,
    members: Members | None = None,
    writer: StoreWriter | None = None,
    freshness: Freshness | None = None,
    collections: collection_store.Collections | None = None,
) -> Starlette:
    """The ASGI app. ``middleware``: Starlette ``Middleware`` entries run inside the metrics one
    (authentication and authorisation, see :mod:`apiserver.auth`); ``identities``: the
    PediaClusters' identity mappings for member-rbac (None: the host's identity in every member);
    ``members`` and ``writer``: where writes go and where their answers are stored (None: writes
    are refused with a 405); ``freshness``: the stale clusters, named in ``Warning`` headers (None:
    none); ``collections``: the collections served (None: the configured ones only)."""
    api = Api(settings, store, catalog, identities, members, writer, freshness, collections)
    cp = "/apis/{group}/{version}/collectionresources"
    routes = [
        Route("/healthz", api.health, methods=ALL_METHODS),
        Route("/readyz", api.ready, methods=ALL_METHODS),
        Route("/livez", api.health, methods=ALL_METHODS),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
        Route("/version", api.version, methods=ALL_METHODS),
        Route("/openapi/v2", openapi.v2, methods=ALL_METHODS),
        Route("/openapi/v3", openapi.v3_index, methods=ALL_METHODS),
        Route("/openapi/v3/{path:path}", openapi.v3_group, methods=ALL_METHODS),
        Route("/apis", api.root_apis, methods=ALL_METHODS),
        Route(RESOURCES_PREFIX, api.resources, methods=ALL_METHODS),
        Route(RESOURCES_PREFIX + "/{rest:path}", api.resources, methods=ALL_METHODS),
        Route(cp, api.collections, methods=ALL_METHODS),
        Route(cp + "/{name}", api.collections, methods=ALL_METHODS),
        Route("/apis/{group}", api.group_doc, methods=ALL_METHODS),
        Route("/apis/{group}/{version}", api.group_version_doc, methods=ALL_METHODS),
    ]
    stack = [Middleware(MetricsMiddleware), *(middleware or [])]
    app = Starlette(
        routes=routes,
        middleware=stack,
        exception_handlers={
            StatusError: _status_error,
            HTTPException: _http_error,
            StorageError: _store_error,
            Exception: _unexpected,
        },
    )
    app.state.api = api
    return app
