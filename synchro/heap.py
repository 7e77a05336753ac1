"""Keep glibc from holding on to the synchro's freed list pages.

A list page is one buffer of a few megabytes (``list_page_size`` objects), allocated and freed once
per page. glibc serves such blocks with mmap, but by default it raises its mmap threshold to the
size of every mmapped block freed (up to 32 MiB): after the first page, pages come from the
malloc heap instead, between the small long-lived objects the sync creates meanwhile, and a heap
only gives memory back from its top. Measured with 10 clusters x 14,000 objects: 150 MiB of
freed pages stayed resident after the sync (``malloc_trim(0)`` released them, so they were free,
not leaked). Pinning the threshold at glibc's own initial value keeps every page an mmap of its
own, unmapped when freed, for the cost of one mmap/munmap (and a few mremap while it grows) per
page. The setting is process-wide; an all-in-one process's writer and API tier get it too, which
suits their large, short-lived buffers (SQL batches, responses) the same way.

What a list burst leaves behind in the malloc heaps (the funnel's events, a few KiB each, freed in
another order than allocated) is free but resident until the heap's top is free; after lists,
``release_free_heap_soon`` asks glibc to return it (``malloc_trim``: measured 20 MiB of 27 MiB
kept after 10 clusters x 14,000 objects), at most once per second while lists keep ending.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import sys
import weakref
from collections.abc import Callable

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3
"""mallopt() parameter number (glibc malloc.h)."""
PAGE_MMAP_THRESHOLD_BYTES = 128 * 1024
"""glibc's initial (and documented default) threshold: blocks at least this large are mmapped."""


def pin_mmap_threshold(threshold: int = PAGE_MMAP_THRESHOLD_BYTES) -> bool:
    """Fix glibc's mmap threshold (which also turns off its dynamic raising); False when the C
    library has no ``mallopt`` (not Linux, or not glibc) or refuses the value."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    ok = bool(mallopt(M_MMAP_THRESHOLD, threshold))
    if not ok:
        log.warning("mallopt(M_MMAP_THRESHOLD, %d) refused: freed list pages may stay resident", threshold)
    return ok


def _libc_malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = (ctypes.c_size_t,)
    trim.restype = ctypes.c_int
    return trim


_malloc_trim = _libc_malloc_trim()
_trim_pending: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()
TRIM_DELAY_SECONDS = 1.0


def release_free_heap_soon(delay: float = TRIM_DELAY_SECONDS) -> bool:
    """Return the malloc heaps' free memory to the OS ``delay`` seconds from now (one trim for
    every call made meanwhile). False when one is already pending or the C library has none."""
    if _malloc_trim is None:
        return False
    loop = asyncio.get_running_loop()
    if loop in _trim_pending:
        return False
    _trim_pending.add(loop)
    loop.call_later(delay, _trim, loop)
    return True


def _trim(loop: asyncio.AbstractEventLoop) -> None:
    _trim_pending.discard(loop)
    if _malloc_trim is not None:
        _malloc_trim(0)
