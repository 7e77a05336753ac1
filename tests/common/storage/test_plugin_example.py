"""The sample third-party backend (examples/clusterpedia-jsonl-store), installed by `make venv`.

The shared suite runs on it like on every registered backend (the ``backend`` fixture); these tests
show what it adds to the memory store it builds on: a restart finds what was applied, a crash that
cut the last line short loses only that (never acknowledged) line, and a second process is refused.
"""

from __future__ import annotations

import asyncio
import fcntl
import subprocess
import sys
from pathlib import Path

import pytest

from common.events import PurgeCluster
from common.storage import StorageError, StorageUnavailable, backend_names, load_backend, open_store
from tests.common.storage.events import Objects
from tests.common.storage.test_writes import apply, live


def test_the_example_is_installed_and_registered() -> None:
    assert "jsonl" in backend_names()
    assert load_backend("jsonl:///tmp/x.jsonl").__module__ == "clusterpedia_jsonl"


def test_a_url_without_an_absolute_path_is_refused() -> None:
    with pytest.raises(ValueError, match="jsonl:///absolute/path"):
        open_store("jsonl://relative/store.jsonl")


def test_a_restart_replays_every_change(tmp_path: Path) -> None:
    url = f"jsonl://{tmp_path}/data/store.jsonl"
    a, b = Objects("cluster-a"), Objects("cluster-b")
    store = open_store(url)
    store.migrate()
    apply(store, *a.types(), *b.types())
    apply(store, a.upsert("x", 5), a.upsert("y", 6), a.upsert("z", 7), b.upsert("w", 1))
    apply(store, a.delete("y", 8), a.upsert("x", 9, epoch=9))
    apply(store, a.upsert("y", 7))  # older than the tombstone: not resurrected, before or after a restart
    apply(store, a.list_done(9))  # z was not in the list of epoch 9
    apply(store, PurgeCluster(b.cluster))
    before = live(store, a.cluster)
    assert before == {"x": 9}
    store.close()

    # Another process reads the file: what a restart finds.
    script = (
        "import asyncio, sys\n"
        "from common.storage import open_store\n"
        "from common.storage.query import Search\n"
        "s = open_store(sys.argv[1]); s.migrate()\n"
        "page = asyncio.run(s.list_objects(Search(group='apps', resource='deployments')))\n"
        "print(sorted((o.cluster, o.name, o.resource_version) for o in page.items))\n"
        "print(sorted({t.cluster for t in asyncio.run(s.resource_types())}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, url], capture_output=True, text=True, check=True, timeout=60
    ).stdout.splitlines()
    assert out == ["[('cluster-a', 'x', 9)]", "['cluster-a']"]

    reopened = open_store(url)
    reopened.migrate()
    try:
        assert live(reopened, a.cluster) == before
        assert live(reopened, b.cluster) == {}
        apply(reopened, a.upsert("y", 7))  # the tombstone came back with the replay
        assert live(reopened, a.cluster) == {"x": 9}
    finally:
        reopened.close()


def test_a_last_line_cut_short_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "store.jsonl"
    a = Objects("cluster-a")
    store = open_store(f"jsonl://{path}")
    apply(store, *a.types(), a.upsert("x", 5))
    store.close()
    whole = path.read_bytes()
    path.write_bytes(whole + whole[: len(whole) // 2])  # a crash in the middle of the next append

    store = open_store(f"jsonl://{path}")
    store.migrate()
    try:
        assert live(store, a.cluster) == {"x": 5}
        assert path.read_bytes() == whole
        apply(store, a.upsert("x", 6))
        assert path.read_bytes().count(b"\n") == 2
    finally:
        store.close()


def test_an_unreadable_line_in_the_middle_stops_the_store(tmp_path: Path) -> None:
    path = tmp_path / "store.jsonl"
    path.write_bytes(b"not a record\n[]\n")
    store = open_store(f"jsonl://{path}")
    try:
        with pytest.raises(StorageError, match="line 1 is not a change record"):
            store.migrate()
    finally:
        store.close()


def test_a_file_open_in_another_process_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "store.jsonl"
    with open(path, "ab") as other:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as the other process's store holds it
        store = open_store(f"jsonl://{path}")
        try:
            with pytest.raises(StorageUnavailable, match="open in another process"):
                asyncio.run(store.resource_types())
        finally:
            store.close()
