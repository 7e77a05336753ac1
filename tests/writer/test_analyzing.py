"""When the writer refreshes the planner's statistics (``writer/analyzing.py``), on a counting clock."""

from __future__ import annotations

from writer.analyzing import BUSY_INTERVAL_SECONDS, FRACTION, MIN_ROWS, StatisticsPolicy


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_due_once_enough_rows_changed_and_the_writer_caught_up() -> None:
    policy = StatisticsPolicy(Clock())
    policy.wrote(MIN_ROWS - 1)
    assert not policy.due(caught_up=True)
    policy.wrote(1)
    assert policy.due(caught_up=True)
    assert not policy.due(caught_up=False)  # behind the queue: not before the interval


def test_while_behind_at_most_once_per_interval() -> None:
    clock = Clock()
    policy = StatisticsPolicy(clock)
    policy.wrote(MIN_ROWS * 10)
    clock.now += BUSY_INTERVAL_SECONDS - 1
    assert not policy.due(caught_up=False)
    clock.now += 1
    assert policy.due(caught_up=False)
    policy.refreshed(MIN_ROWS * 10)
    policy.wrote(MIN_ROWS * 10)
    assert not policy.due(caught_up=False)
    assert policy.due(caught_up=True)  # the burst is over: at once


def test_a_large_table_waits_for_a_fraction_of_its_rows() -> None:
    policy = StatisticsPolicy(Clock())
    rows = 1_000_000
    policy.wrote(MIN_ROWS)
    policy.refreshed(rows)
    policy.wrote(int(FRACTION * rows) - 1)
    assert not policy.due(caught_up=True)
    policy.wrote(1)
    assert policy.due(caught_up=True)


def test_a_store_that_keeps_its_own_statistics_is_not_asked_again() -> None:
    policy = StatisticsPolicy(Clock())
    policy.wrote(MIN_ROWS)
    policy.refreshed(None)
    policy.wrote(MIN_ROWS * 100)
    assert not policy.due(caught_up=True)


def test_a_failed_refresh_is_retried_only_after_as_many_more_rows() -> None:
    policy = StatisticsPolicy(Clock())
    policy.wrote(MIN_ROWS)
    policy.failed()
    assert not policy.due(caught_up=True)
    policy.wrote(MIN_ROWS)
    assert policy.due(caught_up=True)


def test_rows_written_while_a_refresh_runs_count_towards_the_next() -> None:
    policy = StatisticsPolicy(Clock())
    policy.wrote(MIN_ROWS)
    counted = policy.started()
    policy.wrote(MIN_ROWS - 1)  # beside the refresh
    policy.refreshed(0, counted)
    assert not policy.due(caught_up=True)
    policy.wrote(1)
    assert policy.due(caught_up=True)
