"""glibc malloc settings the synchro relies on (Linux/glibc: the images and CI run there)."""

import asyncio

from synchro import heap


def test_mmap_threshold_is_pinned() -> None:
    assert heap.pin_mmap_threshold()


def test_heap_trims_are_coalesced_per_loop() -> None:
    async def body() -> list[bool]:
        first = heap.release_free_heap_soon(delay=0.01)
        second = heap.release_free_heap_soon(delay=0.01)  # folded into the pending trim
        await asyncio.sleep(0.05)  # loop timers fire in order: the trim (due at 0.01) has run
        assert asyncio.get_running_loop() not in heap._trim_pending
        third = heap.release_free_heap_soon(delay=0.01)  # the first one ran: a new trim
        return [first, second, third]

    assert asyncio.run(body()) == [True, False, True]
    assert asyncio.run(body()) == [True, False, True]  # a new loop does not inherit the old one's
