"""bench/memory_store.py keeps working and measures what the store holds (not how much: that is
bench/notes.md's figure)."""

from __future__ import annotations

import asyncio

import pytest

from bench.memory_store import fill, main
from common.storage.query import Search


def test_a_fill_counts_every_object_and_at_least_its_json() -> None:
    store, measured = fill(1500, 60.0, traced=True)
    assert measured.objects == 1500
    assert measured.json_per_object > 1000  # the generator's pods: kilobytes of JSON each
    assert measured.per_object > measured.json_per_object  # the store keeps the JSON and a row around it
    page = asyncio.run(
        store.list_objects(Search(group="", resource="pods", limit=10, with_remaining_count=True))
    )
    assert len(page.items) == 10 and page.remaining_item_count == 1490


def test_the_command_prints_both_measures(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--objects", "1200"]) == 0
    out = capsys.readouterr().out
    assert "| RSS growth | 1,200 |" in out and "| tracemalloc (held after gc) | 1,200 |" in out
