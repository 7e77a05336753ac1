"""Writer tier: consume the event queue and keep the store equal to the member clusters.

``run_writer(settings, stop_event)`` is the entry point (``writer.worker``); ``batching`` plans a
batch, the store (``common.storage``, opened by URL) applies it.
"""

from writer.worker import Writer, run_writer

__all__ = ["Writer", "run_writer"]
