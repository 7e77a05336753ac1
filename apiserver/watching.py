"""Watch on the aggregated view: one change-feed reader per API process, fanned out to its watchers.

The store gives every write a global revision (``common.storage.base.ChangeFeed``). Each API
process runs one :class:`WatchHub` while it has watchers: every ``apiserver.watch_poll_seconds`` it
asks the store for its head revision and, when it moved, reads the rows written since (all
resources, in revision order, in pages) once, and hands them to the watchers of each resource. A
:class:`Watcher` filters them with the request's search (every condition and the caller's
visibility, the predicates the memory backend uses) and queues its events; the request's response
streams them. So the store's cost is one small query per poll per process, whatever the number of
watchers, and any replica serves any watch (DESIGN section 9).

Event types, as a watcher from revision R sees them. A row is read in its latest state only, so:

- a live row created after both R and the start of the batch it arrives in (its ``created_revision``)
  is ADDED, any other live row MODIFIED; a tombstone is DELETED with the object's last state, unless
  the object was created after R and the batch start as well (the client never saw it);
- with label or field selectors an object may stop matching: such a watcher keeps the keys of the
  objects it knows to match (listed when it starts), and an object that leaves the selection is
  DELETED (as kube-apiserver's watch cache does), one that enters it ADDED or MODIFIED.

A watcher that falls ``apiserver.watch_buffer_events`` behind is ended with 410 Expired (its client
relists), so a slow client never holds up the hub or the others; a position older than the store's
retained changes is 410 Expired too.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence

import msgspec
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from common.errors import BadRequest, Gone, StatusError
from common.settings import ApiserverSettings
from common.storage import StorageError
from common.storage.base import Change, ChangeFeed, Expired, ListPage, StoredObject
from common.storage.matching import condition
from common.storage.query import GroupResource, Search

log = logging.getLogger(__name__)

_encoder = msgspec.json.Encoder()

FEED_PAGE = 2000
"""Rows read from the change feed per query."""

Key = tuple[str, str, str, str, str]  # cluster, group, resource, namespace, name


@dataclasses.dataclass(frozen=True, slots=True)
class ChangeRow:
    """A change as the search predicates read a row (``common.storage.matching.MatchRow``)."""

    cluster: str
    api_group: str
    resource: str
    namespace: str
    name: str
    uid: str
    owner_uid: str
    created_at: dt.datetime | None
    deleted: bool
    labels: Mapping[str, str]
    object: bytes

    @classmethod
    def of(cls, change: Change) -> ChangeRow:
        o = change.object
        return cls(
            cluster=o.cluster,
            api_group=o.group,
            resource=o.resource,
            namespace=o.namespace,
            name=o.name,
            uid=change.uid,
            owner_uid=change.owner_uid,
            created_at=o.created_at,
            deleted=change.deleted,
            labels=change.labels,
            object=o.object,
        )


def key_of(item: StoredObject) -> Key:
    return (item.cluster, item.group, item.resource, item.namespace, item.name)


def tracks_matches(search: Search) -> bool:
    """Whether an object may enter or leave this search's selection while it exists (labels and
    fields change; cluster, namespace, name and creation time do not)."""
    return bool(search.labels or search.fields)


@dataclasses.dataclass(frozen=True, slots=True)
class Event:
    type: str  # ADDED, MODIFIED, DELETED
    item: StoredObject


class Watcher:
    """One watch request's filter, position and pending events (fed by the hub, on its loop)."""

    def __init__(
        self,
        search: Search,
        *,
        start: int,
        buffer: int,
        matched: set[Key] | None = None,
        exact_after: int = 0,
        seen: Mapping[Key, int] | None = None,
    ) -> None:
        """``start``: the revision the client is at (R). ``matched``: with label or field selectors,
        the keys known to match as of ``exact_after``. ``seen``: objects already sent (the initial
        events) at a revision above ``start``, not to be sent again at or below it."""
        self.search = search
        self.group_resources = search.group_resources or (GroupResource(search.group, search.resource),)
        self.start = start
        self.position = start
        self.buffer = buffer
        self.matched = matched
        self.exact_after = exact_after
        self.seen = dict(seen or {})
        self._test = condition(search, None, tombstones=True)
        self._events: list[Event] = []
        self._pending = 0
        self._held: list[tuple[list[tuple[Change, ChangeRow]], int, int]] | None = None
        self.ended: StatusError | None = None
        self.wakeup = asyncio.Event()

    # -- fed by the hub

    def hold(self) -> None:
        """Keep what the hub sends until :meth:`release` (while the watcher catches up)."""
        self._held = []

    def release(self) -> None:
        held, self._held = self._held or [], None
        for changes, batch_start, upto in held:
            self.feed(changes, batch_start, upto)

    def feed(self, changes: Sequence[tuple[Change, ChangeRow]], batch_start: int, upto: int) -> None:
        """The changes of one batch read after ``batch_start`` up to ``upto`` (this watcher's
        resources only, in revision order)."""
        if self.ended is not None:
            return
        if self._held is not None:
            self._held.append((list(changes), batch_start, upto))
            return
        self.catch_up(changes, batch_start, upto)

    def catch_up(self, changes: Sequence[tuple[Change, ChangeRow]], batch_start: int, upto: int) -> None:
        """Like :meth:`feed`, even while holding (the changes read for this watcher alone)."""
        if self.ended is not None:
            return
        events = []
        for change, row in changes:
            if change.revision <= self.position:
                continue
            event = self._event(change, row, max(batch_start, self.start))
            if event is not None:
                events.append(event)
        self.position = max(self.position, upto)
        if events:
            self._pending += len(events)
            if self._pending > self.buffer:
                self.end(Gone("the watch fell too far behind the changes: list again"))
                return
            self._events.extend(events)
            self.wakeup.set()  # (a bookmark reads the position when it is due: no wakeup for that)

    def _event(self, change: Change, row: ChangeRow, known: int) -> Event | None:
        item = change.object
        key = key_of(item)
        if self.seen and self.seen.get(key, 0) >= change.revision:
            return None
        new = change.created_revision > known
        matches = self._test(row)
        tracked = self.matched
        if change.deleted:
            if new:
                return None
            if tracked is not None:
                was = key in tracked or change.revision <= self.exact_after
                tracked.discard(key)
                return Event("DELETED", item) if was or matches else None
            return Event("DELETED", item) if matches else None
        if matches:
            if tracked is not None:
                tracked.add(key)
            return Event("ADDED" if new else "MODIFIED", item)
        if tracked is None or new:
            return None
        # It does not match (any more): the client has it if it matched before.
        if key in tracked or change.revision <= self.exact_after:
            tracked.discard(key)
            return Event("DELETED", item)
        return None

    def end(self, error: StatusError | None) -> None:
        """Stop this watch (``error``: the ERROR event to send last, e.g. 410 Expired)."""
        if self.ended is None:
            self.ended = error or StatusError("watch closed")
            self._events = []
            self._pending = 0
        self.wakeup.set()

    # -- read by the response

    def take(self) -> list[Event]:
        """Everything pending (possibly nothing)."""
        out, self._events = self._events, []
        self._pending = 0
        self.wakeup.clear()
        return out


class WatchHub:
    """The change-feed reader of one API process (see the module docstring)."""

    def __init__(self, feed: ChangeFeed, *, poll_seconds: float = 0.1) -> None:
        self.feed = feed
        self.poll_seconds = poll_seconds
        self.position: int | None = None
        self._watchers: dict[GroupResource, set[Watcher]] = {}
        self._task: asyncio.Task[None] | None = None

    @property
    def watchers(self) -> int:
        return len({w for ws in self._watchers.values() for w in ws})

    async def window(self) -> tuple[int, int]:
        return await self.feed.window()

    async def subscribe(self, watcher: Watcher) -> None:
        """Start feeding ``watcher`` from its start revision: the changes between it and the hub's
        position are read for it alone (raises Gone when they are no longer kept)."""
        if self.position is None:
            self.position = (await self.feed.window())[1]
        behind = watcher.start < self.position
        if behind:
            watcher.hold()
        for gr in watcher.group_resources:
            self._watchers.setdefault(gr, set()).add(watcher)
        self._ensure_running()
        if not behind:
            return
        try:
            after, upto = watcher.start, self.position
            while after < upto:
                changes = await self.feed.changes(after, upto, list(watcher.group_resources), FEED_PAGE)
                if not changes:
                    break
                last = changes[-1].revision if len(changes) == FEED_PAGE else upto
                watcher.catch_up([(c, ChangeRow.of(c)) for c in changes], after, last)
                after = last
        except Expired as e:
            self.unsubscribe(watcher)
            raise Gone(f"too old resource version: {watcher.start} ({e})") from e
        except BaseException:
            self.unsubscribe(watcher)
            raise
        watcher.release()

    def unsubscribe(self, watcher: Watcher) -> None:
        for gr in watcher.group_resources:
            ws = self._watchers.get(gr)
            if ws is not None:
                ws.discard(watcher)
                if not ws:
                    del self._watchers[gr]

    def _ensure_running(self) -> None:
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            self._task = loop.create_task(self._run(), name="watch-hub")

    async def _run(self) -> None:
        failing_since: float | None = None
        while self._watchers:
            await asyncio.sleep(self.poll_seconds)
            try:
                await self.poll()
                failing_since = None
            except StorageError as e:
                if failing_since is None:
                    failing_since = time.monotonic()
                    log.warning("watch: reading the change feed failed (retrying): %s", e)
            except Exception:  # a bug: end the watches (their clients relist) rather than hang them
                log.exception("watch: handing out changes failed; open watches end with 410")
                for watcher in self._all():
                    watcher.end(Gone("the server could not follow the changes: list again"))
                self._watchers.clear()
        self.position = None  # no watchers: nothing to keep up with until the next one

    async def poll(self) -> None:
        """Read and hand out everything written since the last poll."""
        if self.position is None:
            self.position = (await self.feed.window())[1]
        floor, head = await self.feed.window()
        while self.position < head:
            try:
                changes = await self.feed.changes(self.position, head, None, FEED_PAGE)
            except Expired:
                self._expire_all(floor, head)
                return
            start = self.position
            upto = changes[-1].revision if len(changes) == FEED_PAGE else head
            self._dispatch(changes, start, upto)
            self.position = upto
        if floor > self.position:
            self._expire_all(floor, head)

    def _dispatch(self, changes: Sequence[Change], start: int, upto: int) -> None:
        """Each watcher gets the changes of its resources -- of its cluster and namespace only when
        its search names them, so a change is matched by the watchers that may want it, not by all."""
        by_scope: dict[tuple[GroupResource, str, str], list[tuple[Change, ChangeRow]]] = {}
        for c in changes:
            o = c.object
            gr = GroupResource(o.group, o.resource)
            if gr in self._watchers:
                pair = (c, ChangeRow.of(c))
                for scope in (
                    (gr, "", ""),
                    (gr, o.cluster, ""),
                    (gr, "", o.namespace),
                    (gr, o.cluster, o.namespace),
                ):
                    by_scope.setdefault(scope, []).append(pair)
        for watcher in self._all():
            cluster, namespace = watcher.search.single_cluster, watcher.search.namespace
            mine = _merged(by_scope.get((gr, cluster, namespace), []) for gr in watcher.group_resources)
            watcher.feed(mine, start, upto)

    def _expire_all(self, floor: int, head: int) -> None:
        """The store dropped changes the hub had not read (a purged cluster): every watch ends."""
        for watcher in self._all():
            watcher.end(Gone(f"the store removed changes this watch had not seen (to {floor}): list again"))
        self._watchers.clear()
        self.position = head

    def _all(self) -> list[Watcher]:
        return list({w: None for ws in self._watchers.values() for w in ws})

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def _merged(groups: Iterable[list[tuple[Change, ChangeRow]]]) -> list[tuple[Change, ChangeRow]]:
    lists = [g for g in groups if g]
    if len(lists) <= 1:
        return lists[0] if lists else []
    return sorted((x for g in lists for x in g), key=lambda x: x[0].revision)


def render_line(kind: str, body: bytes) -> bytes:
    """One ``watch.Event`` as a JSON line; ``body`` is the encoded object."""
    return b'{"type":"' + kind.encode() + b'","object":' + body + b"}\n"


class TooLargeResourceVersion(StatusError):
    """504, as kube-apiserver answers a resourceVersion it has not reached (after waiting 3 s)."""

    code = 504
    reason = "Timeout"


INITIAL_EVENTS_END = "k8s.io/initial-events-end"
INITIAL_PAGE = 500
"""Objects read per page for a watch's initial events."""
TOO_LARGE_WAIT_SECONDS = 3.0


@dataclasses.dataclass(frozen=True, slots=True)
class WatchRequest:
    resource_version: str
    """"" or "0" (from the current state) or a revision."""
    initial_events: bool
    """Send the current objects as ADDED first (resourceVersion unset or "0", or sendInitialEvents)."""
    end_bookmark: bool
    """sendInitialEvents=true: a BOOKMARK annotated k8s.io/initial-events-end after them."""
    bookmarks: bool
    timeout_seconds: float
    bookmark_seconds: float
    buffer: int


def _bool(name: str, raw: str | None) -> bool | None:
    if raw is None:
        return None
    if raw.lower() in ("true", "1"):
        return True
    if raw.lower() in ("false", "0", ""):
        return False
    raise BadRequest(f"{name}: invalid value {raw!r}: expected true or false")


def parse_watch(
    query: Mapping[str, str], settings: ApiserverSettings, *, proxied: bool = False
) -> WatchRequest:
    """The watch parameters of a request, validated as kube-apiserver validates them (400s).
    ``proxied``: the host's aggregator proxied it, and would cut it after its request timeout
    (``apiserver.watch_proxied_timeout_seconds``)."""
    rv = query.get("resourceVersion", "")
    if rv and not rv.isdigit():
        raise BadRequest(f"resourceVersion: Invalid value: {rv!r}: not a resourceVersion this server issued")
    match = query.get("resourceVersionMatch", "")
    send_initial = _bool("sendInitialEvents", query.get("sendInitialEvents"))
    bookmarks = bool(_bool("allowWatchBookmarks", query.get("allowWatchBookmarks")))
    if send_initial is not None:
        if match != "NotOlderThan":
            raise BadRequest(
                "resourceVersionMatch: Forbidden: sendInitialEvents requires setting resourceVersionMatch"
                " to NotOlderThan"
            )
        if send_initial and not bookmarks:
            raise BadRequest(
                "allowWatchBookmarks: Forbidden: sendInitialEvents requires allowWatchBookmarks=true"
            )
    elif match:
        raise BadRequest(
            "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden for watch unless"
            " sendInitialEvents is provided"
        )
    raw_timeout = query.get("timeoutSeconds")
    if raw_timeout is not None:
        try:
            timeout = float(int(raw_timeout))
        except ValueError:
            raise BadRequest(f"timeoutSeconds: invalid value {raw_timeout!r}: expected seconds") from None
        if timeout < 0:
            raise BadRequest("timeoutSeconds: must not be negative")
    else:
        timeout = settings.min_request_timeout_seconds * (1.0 + random.random())
    if proxied and settings.watch_proxied_timeout_seconds > 0:
        timeout = min(timeout, settings.watch_proxied_timeout_seconds)
    return WatchRequest(
        resource_version=rv,
        initial_events=send_initial if send_initial is not None else rv in ("", "0"),
        end_bookmark=bool(send_initial),
        bookmarks=bookmarks,
        timeout_seconds=timeout,
        bookmark_seconds=settings.watch_bookmark_seconds,
        buffer=settings.watch_buffer_events,
    )


PageReader = Callable[[Search, Request], Awaitable[ListPage]]


class WatchResponse(StreamingResponse):
    """A streamed watch: the events as chunks, in the request's own task, with one more task that
    notices the client leaving (an idle watch sends nothing for minutes); the watcher is unregistered
    however the response ends. (Starlette's streaming runs two tasks in an anyio task group: this
    keeps an idle watch smaller, see bench/watch.py.)"""

    def __init__(self, stream: WatchStream, media_type: str) -> None:
        super().__init__(stream.events(), media_type=media_type)
        self.stream = stream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        listener: asyncio.Task[None] | None = None
        try:
            await send(
                {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
            )
            listener = asyncio.get_running_loop().create_task(self._until_disconnect(receive))
            async for chunk in self.body_iterator:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                if self.stream.gone:
                    return
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            if listener is not None:
                listener.cancel()
            self.stream.close()

    async def _until_disconnect(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self.stream.disconnected()


class WatchStream:
    """One watch response: the initial events or the position to start from, then the watcher's
    events, bookmarks and the end (timeout, or an ERROR event)."""

    def __init__(
        self,
        hub: WatchHub,
        read_page: PageReader,
        search: Search,
        params: WatchRequest,
        render: Callable[[Event], bytes],
        bookmark: Mapping[str, str],
    ) -> None:
        self.hub = hub
        self.read_page = read_page
        self.search = search
        self.params = params
        self.render = render
        self.bookmark = dict(bookmark)
        self.start = 0
        self.expired: Gone | None = None
        self.watcher: Watcher | None = None
        self.gone = False
        self.begun = time.monotonic()  # timeoutSeconds counts from here, initial events included

    async def prepare(self, request: Request) -> None:
        """What comes before the response starts: the start position (a Status answer if it is
        not served) and, for a watch from a resourceVersion, the registered watcher — so the
        client's first byte means every later change reaches it."""
        self._request = request
        if self.params.initial_events and self.params.resource_version in ("", "0"):
            return
        floor, head = await self.hub.window()
        if self.params.resource_version in ("", "0"):
            start = head
        else:
            start = int(self.params.resource_version)
            deadline = time.monotonic() + TOO_LARGE_WAIT_SECONDS
            while start > head:
                if time.monotonic() >= deadline:
                    cause = {"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}
                    raise TooLargeResourceVersion(
                        f"Too large resource version: {start}, current: {head}", details={"causes": [cause]}
                    )
                await asyncio.sleep(0.1)
                floor, head = await self.hub.window()
        if self.params.initial_events:
            # sendInitialEvents from a resourceVersion (a reflector's watch-list after its first
            # sync): the current state, not older than it, then the changes after that state
            return
        self.start = start
        if start < floor:
            self.expired = Gone(f"too old resource version: {start} ({floor})")
            return
        matched, exact_after = await self._matching_keys() if tracks_matches(self.search) else (None, 0)
        watcher = Watcher(
            self.search, start=start, buffer=self.params.buffer, matched=matched, exact_after=exact_after
        )
        try:
            await self.hub.subscribe(watcher)
        except Gone as e:
            self.expired = e
            return
        self.watcher = watcher

    def disconnected(self) -> None:
        """The client left: end the watch (its stream returns at its next step)."""
        self.gone = True
        if self.watcher is not None:
            self.watcher.end(None)

    def close(self) -> None:
        """Unregister the watcher (the response ended, or never started)."""
        if self.watcher is not None:
            self.hub.unsubscribe(self.watcher)

    def _bookmark(self, position: int, *, end: bool = False) -> bytes:
        meta: dict[str, object] = {"resourceVersion": str(position)}
        if end:
            meta["annotations"] = {INITIAL_EVENTS_END: "true"}
        return render_line("BOOKMARK", _encoder.encode({**self.bookmark, "metadata": meta}))

    async def _initial(self, matched: set[Key] | None, seen: dict[Key, int]) -> AsyncIterator[bytes]:
        """The current objects as ADDED events, page by page; sets ``self.start`` to the revision
        the first page was read at (later pages may hold newer rows: ``seen`` records them)."""
        search = dataclasses.replace(self.search, limit=INITIAL_PAGE)
        first = True
        while True:
            page = await self.read_page(search, self._request)
            if first:
                self.start = int(page.resource_version or 0)
                first = False
            lines = []
            for item in page.items:
                key = key_of(item)
                if matched is not None:
                    matched.add(key)
                if item.revision > self.start:
                    seen[key] = item.revision
                lines.append(render_line("ADDED", self.render(Event("ADDED", item))))
            if lines:
                yield b"".join(lines)
            if page.next is None:
                return
            search = dataclasses.replace(search, continue_token=page.next)

    async def _matching_keys(self) -> tuple[set[Key], int]:
        """The keys matching the search now, and the revision read at (a selector watcher's start)."""
        keys: set[Key] = set()
        search = dataclasses.replace(self.search, limit=5000, only_metadata=True)
        at = 0
        while True:
            page = await self.read_page(search, self._request)
            at = at or int(page.resource_version or 0)
            keys.update(key_of(item) for item in page.items)
            if page.next is None:
                return keys, at
            search = dataclasses.replace(search, continue_token=page.next)

    async def events(self) -> AsyncIterator[bytes]:
        params = self.params
        if self.expired is not None:
            yield render_line("ERROR", _encoder.encode(self.expired.status()))
            return
        if self.watcher is None:  # the current state first, then the changes after it
            matched: set[Key] | None = set() if tracks_matches(self.search) else None
            seen: dict[Key, int] = {}
            async for chunk in self._initial(matched, seen):
                yield chunk
            watcher = Watcher(self.search, start=self.start, buffer=params.buffer, matched=matched, seen=seen)
            try:
                await self.hub.subscribe(watcher)
            except Gone as e:
                yield render_line("ERROR", _encoder.encode(e.status()))
                return
            self.watcher = watcher
            if params.end_bookmark:
                yield self._bookmark(watcher.start, end=True)
        async for chunk in self._follow(self.watcher):
            yield chunk

    async def _follow(self, watcher: Watcher) -> AsyncIterator[bytes]:
        params = self.params
        now = time.monotonic()
        deadline = self.begun + params.timeout_seconds
        next_bookmark = now + params.bookmark_seconds
        while True:
            events = watcher.take()
            if events:
                yield b"".join(render_line(e.type, self.render(e)) for e in events)
            if watcher.ended is not None:
                if isinstance(watcher.ended, Gone):
                    yield render_line("ERROR", _encoder.encode(watcher.ended.status()))
                return
            now = time.monotonic()
            if now >= deadline:
                return
            if params.bookmarks and now >= next_bookmark:
                yield self._bookmark(watcher.position)
                next_bookmark = now + params.bookmark_seconds
            until = min(deadline, next_bookmark) if params.bookmarks else deadline
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, until - now)):  # no task per wait
                    await watcher.wakeup.wait()
