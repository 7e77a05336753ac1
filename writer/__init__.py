"""Writer tier: consume the event queue and keep the SQL store equal to the member clusters.

``run_writer(settings, stop_event)`` is the entry point (``writer.worker``); ``batching`` plans a
batch, ``applying`` executes it with the statements of ``common.storage.sql.upserts``.
"""

from writer.worker import Writer, run_writer

__all__ = ["Writer", "run_writer"]
