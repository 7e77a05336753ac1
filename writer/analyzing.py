"""When the writer refreshes the store's query-planner statistics (``StoreWriter.refresh_statistics``).

A query plan is only as good as the statistics it is made from. PostgreSQL's autovacuum takes them
(ANALYZE) once a table has changed by 10% and its naptime (a minute) has passed, so during and
right after an initial sync the planner works from statistics taken when the table held a few
hundred rows, often of other resources: the first page of all pods then took 1,071 ms instead of
4 ms until autovacuum came by (50,000 pods, bench/notes.md, issue 16). SQLite never takes them on
its own. So the writer, which knows how much it wrote, asks the store to refresh them:

* once the rows written since the last refresh reach ``MIN_ROWS`` and ``FRACTION`` of the table's
  rows at the last refresh (the growth that makes the old distribution wrong), and
* as soon as the writer has caught up with the queue (a batch smaller than the largest: the burst,
  such as an initial sync, is over), or while it keeps up with a burst no more often than every
  ``BUSY_INTERVAL_SECONDS``.

A table that doubles in one sync is thus analyzed at its end (plus once every interval meanwhile),
a steady trickle of changes about as often as autovacuum would, an idle store never.

The refresh runs in a thread of its own, beside the writes (``writer.worker``): a VACUUM (ANALYZE)
of a 35,000-row table with 3,500 changed rows takes ~0.45 s, an ANALYZE ~0.3 s, and every change
arriving meanwhile waited for it when the writer ran it itself (freshness p99 1.3 s at 500
changes/s, bench/notes.md, session 7). Neither blocks writes to the table.
"""

from __future__ import annotations

import time
from collections.abc import Callable

MIN_ROWS = 1_000
"""Fewer changed rows than this never make statistics wrong enough to matter."""

FRACTION = 0.1
"""Changed rows, as a fraction of the table at the last refresh, that call for a new one (as
PostgreSQL's ``autovacuum_analyze_scale_factor``)."""

BUSY_INTERVAL_SECONDS = 30.0
"""While the writer is behind the queue, refresh at most this often."""


class StatisticsPolicy:
    """Counts the rows the writer changed and says when the statistics are due (pure but the clock)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._changed = 0
        self._table_rows = 0
        self._last = clock()
        self.enabled = True
        """False once the store said it keeps its statistics itself."""

    def wrote(self, rows: int) -> None:
        self._changed += rows

    def due(self, *, caught_up: bool) -> bool:
        if not self.enabled or self._changed < max(MIN_ROWS, FRACTION * self._table_rows):
            return False
        return caught_up or self._clock() - self._last >= BUSY_INTERVAL_SECONDS

    def started(self) -> int:
        """A refresh starts (it runs beside the writes): the changed rows it will account for."""
        self._last = self._clock()
        return self._changed

    def refreshed(self, table_rows: int | None, counted: int | None = None) -> None:
        """The store refreshed them (``table_rows``: its estimate of the rows now), or keeps them
        itself (None: the policy turns off). ``counted``: what ``started`` returned; rows written
        while the refresh ran count towards the next one."""
        if table_rows is None:
            self.enabled = False
            return
        self._changed = max(0, self._changed - counted) if counted is not None else 0
        self._table_rows = table_rows
        self._last = self._clock()

    def failed(self, counted: int | None = None) -> None:
        """The refresh failed: try again after as many more changed rows (never in a loop)."""
        self._changed = max(0, self._changed - counted) if counted is not None else 0
        self._last = self._clock()
