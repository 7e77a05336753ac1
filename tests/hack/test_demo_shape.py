"""`make demo STORAGE=...`: which tiers and URLs each shape asks for (nothing is started here).

tests/e2e/test_demo.py runs the demo itself; these check the choice of shape that precedes it.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from demo.control import parse
from demo.layout import DemoDir
from demo.supervisor import Supervisor


def urls(tmp_path: Path, storage: str, queue: str) -> tuple[str, str]:
    with contextlib.ExitStack() as stack:
        return Supervisor(DemoDir(tmp_path), storage, queue, 2).connection_urls(stack)


def test_memory_storage_is_one_all_in_one_process_with_the_in_process_queue(tmp_path: Path) -> None:
    ns = parse(["up", "--storage", "memory"])
    assert (ns.storage, ns.queue) == ("memory", "memory")
    assert urls(tmp_path, ns.storage, ns.queue) == ("memory://", "memory://")


def test_memory_storage_with_the_redis_queue_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse(["up", "--storage", "memory", "--queue", "redis"])
    assert exc.value.code == 2
    assert "use it with QUEUE=memory" in capsys.readouterr().err


def test_the_default_stays_sqlite_with_the_in_process_queue(tmp_path: Path) -> None:
    ns = parse(["up"])
    assert urls(tmp_path, ns.storage, ns.queue) == (
        f"sqlite:///{tmp_path.resolve() / 'clusterpedia.db'}",
        "memory://",
    )
