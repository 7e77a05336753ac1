"""harness.paths.go_program: a Go module under tests/ built once, rebuilt when its sources change."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from harness.paths import go_program

pytestmark = pytest.mark.e2e

MAIN = 'package main\n\nimport "fmt"\n\nfunc main() { fmt.Println("%s") }\n'


def test_built_once_per_version_of_the_sources(tmp_path: Path) -> None:
    src = tmp_path / "hello"
    src.mkdir()
    (src / "go.mod").write_text("module example.local/hello\n\ngo 1.22\n")
    (src / "main.go").write_text(MAIN % "one")
    cache = tmp_path / "cache"
    first = go_program(src, cache)
    assert subprocess.run([first], capture_output=True, text=True, check=True).stdout == "one\n"
    built = first.stat().st_mtime_ns
    assert go_program(src, cache) == first and first.stat().st_mtime_ns == built  # cached
    (src / "main.go").write_text(MAIN % "two")
    second = go_program(src, cache)
    assert second != first
    assert subprocess.run([second], capture_output=True, text=True, check=True).stdout == "two\n"
    (src / "main.go").write_text("package main\n\nfunc main() { undefined() }\n")
    with pytest.raises(RuntimeError, match=r"go build in .* failed"):
        go_program(src, cache)
