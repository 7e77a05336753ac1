"""A collection reads the same series from every storage backend (SQLite, PostgreSQL, MariaDB,
memory, and any installed plug-in): the fleet written through ``StoreWriter.apply`` comes out as
test_exposition.py checks it on the memory backend, in small keyset pages too, and a deleted
object's series go."""

from __future__ import annotations

import uuid
from pathlib import Path

from common.events import Delete
from common.storage import Store, open_store
from tests.kubestate.objects import fleet_events
from tests.kubestate.support import parse, run_collect, samples


def test_collection_equals_memory_reference(backend: Store, tmp_path: Path) -> None:
    ups, types = fleet_events()
    backend.apply(ups, [], types)
    reference = open_store(f"memory://ksm-ref-{uuid.uuid4().hex}")
    reference.apply(ups, [], types)

    _, expected = run_collect(reference, tmp_path)
    done, text = run_collect(backend, tmp_path, page_rows=3)
    assert samples(parse(text)) == samples(parse(expected))
    assert text == expected  # same order too: the store's (cluster, namespace, name) order
    assert done.objects == len(ups)

    backend.apply([], [Delete("east", "", "v1", "pods", "shop", "web-1-a", 2)], [])
    _, after = run_collect(backend, tmp_path, page_rows=3)
    gone = {k for k in samples(parse(text)) if ("pod", "web-1-a") in k[1] and ("cluster", "east") in k[1]}
    assert gone and not gone & set(samples(parse(after)))
    assert len(samples(parse(after))) == len(samples(parse(text))) - len(gone)
