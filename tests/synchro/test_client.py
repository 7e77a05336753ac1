import asyncio
import gc
from collections.abc import AsyncIterator

import httpx
import msgspec
import pytest

from common.credentials import ClusterCredentials
from synchro.client import ApiError, KubeClient, MemberGone, MemberPage, error_from_status


def test_status_bodies_become_typed_errors() -> None:
    gone = error_from_status(
        0, b'{"kind":"Status","code":410,"reason":"Expired","message":"too old resource version"}'
    )
    assert isinstance(gone, MemberGone) and gone.reason == "Expired" and "too old" in gone.message
    http_gone = error_from_status(410, b'{"kind":"Status","code":410,"reason":"Gone","message":"x"}')
    assert isinstance(http_gone, MemberGone)
    denied = error_from_status(403, b'{"kind":"Status","code":403,"reason":"Forbidden","message":"no"}')
    assert type(denied) is ApiError and denied.code == 403 and str(denied) == "403 Forbidden: no"
    garbage = error_from_status(502, b"<html>bad gateway</html>")
    assert garbage.code == 502 and garbage.reason == "Bad Gateway" and "bad gateway" in garbage.message


# -- paged lists against a member's HTTP answers (the transport is the protocol edge) ----------------

PAGES = {
    "": b'{"metadata":{"resourceVersion":"10","continue":"p2"},"items":[{"metadata":{"name":"a"}}]}',
    "p2": b'{"metadata":{"resourceVersion":"10","continue":"p3"},"items":[{"metadata":{"name":"b"}}]}',
    "p3": b'{"metadata":{"resourceVersion":"10"},"items":[{"metadata":{"name":"c"}}]}',
}


class Member:
    """Answers list pages by continue token; a token in ``expired`` gets a 410 Status."""

    def __init__(self, expired: frozenset[str] = frozenset()) -> None:
        self.asked: list[str] = []
        self.expired = expired
        self.second_asked = asyncio.Event()

    async def handle(self, request: httpx.Request) -> httpx.Response:
        token = request.url.params.get("continue", "")
        self.asked.append(token)
        if len(self.asked) == 2:
            self.second_asked.set()
        if token in self.expired:
            status = b'{"kind":"Status","code":410,"reason":"Expired","message":"old"}'
            return httpx.Response(410, content=status)
        return httpx.Response(200, content=chunked(PAGES[token]))


async def chunked(body: bytes) -> AsyncIterator[bytes]:
    """A body that arrives in pieces, as a streamed answer does."""
    half = len(body) // 2
    yield body[:half]
    yield body[half:]


def client_for(member: Member) -> KubeClient:
    client = KubeClient(ClusterCredentials("https://member.invalid"))
    client._http = httpx.AsyncClient(base_url=client.url, transport=httpx.MockTransport(member.handle))
    return client


def names(page: MemberPage) -> list[str]:
    return [msgspec.json.decode(raw)["metadata"]["name"] for raw in page.items or ()]


def test_pages_come_in_order_and_the_next_is_fetched_while_one_is_consumed() -> None:
    member = Member()

    async def body() -> list[list[str]]:
        client = client_for(member)
        got = []
        async for page in client.list_pages("/api/v1/pods", page_size=1, prefetch=asyncio.Semaphore(1)):
            if not got:
                # page 1 is still being consumed, yet page 2 is already requested
                await asyncio.wait_for(member.second_asked.wait(), 10)
            got.append(names(page))
        await client.close()
        return got

    assert asyncio.run(body()) == [["a"], ["b"], ["c"]]
    assert member.asked == ["", "p2", "p3"]


def test_an_expired_continue_token_is_gone_and_a_stop_drops_the_prefetch() -> None:
    slots = asyncio.Semaphore(1)

    async def consume(member: Member, stop_after: int) -> list[list[str]]:
        client = client_for(member)
        got = []
        try:
            async for page in client.list_pages("/api/v1/pods", page_size=1, prefetch=slots):
                got.append(names(page))
                if len(got) == stop_after:
                    await asyncio.wait_for(member.second_asked.wait(), 10)
                    break
        finally:
            await client.close()
        return got

    with pytest.raises(MemberGone):
        asyncio.run(consume(Member(expired=frozenset({"p2"})), stop_after=99))
    # Stopping after page 1 while page 2's request already failed: no error, nothing left behind.
    assert asyncio.run(consume(Member(expired=frozenset({"p2"})), stop_after=1)) == [["a"]]
    assert not slots.locked()  # the read-ahead slot was given back


def test_without_a_free_read_ahead_slot_pages_are_fetched_one_at_a_time() -> None:
    member = Member()
    slots = asyncio.Semaphore(1)

    async def body() -> list[list[str]]:
        client = client_for(member)
        got = []
        await slots.acquire()  # another list holds the only slot
        async for page in client.list_pages("/api/v1/pods", page_size=1, prefetch=slots):
            for _ in range(50):
                await asyncio.sleep(0)  # room for a read-ahead request, if one had been sent
            got.append(names(page))
            assert len(member.asked) == len(got)
            if len(got) == 2:
                slots.release()  # freed: the next page may be read ahead
        await client.close()
        return got

    assert asyncio.run(body()) == [["a"], ["b"], ["c"]]


def test_list_responses_are_not_kept_alive_by_reference_cycles() -> None:
    """An httpx Response and its stream reference each other, so only the cyclic GC frees one: a
    response that held its body kept a whole list page alive until a (rare) full collection."""
    member = Member()

    async def body() -> int:
        client = client_for(member)
        count = 0
        async for page in client.list_pages("/api/v1/pods", page_size=1):
            count += len(page.items or ())
        await client.get_json("/version")  # the plain request path reads the same way
        await client.close()
        return count

    gc.collect()
    gc.disable()
    try:
        assert asyncio.run(body()) == 3
        bodies = [o for o in gc.get_objects() if isinstance(o, httpx.Response) and hasattr(o, "_content")]
    finally:
        gc.enable()
    assert bodies == []
