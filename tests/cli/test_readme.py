"""The top-level README stays true: its configuration rows are what the code says, its links exist."""

from __future__ import annotations

import re
from pathlib import Path

from cli.showconfig import reference_table

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def test_configuration_rows_match_the_settings() -> None:
    section = README.split("### Configuration", 1)[1].split("\n### ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    assert len(rows) >= 15
    generated = set(reference_table().splitlines())
    wrong = [row for row in rows if row not in generated]
    assert not wrong, "README rows that differ from `clusterpedia config --reference`:\n" + "\n".join(wrong)


def test_links_point_at_files_that_exist() -> None:
    links = re.findall(r"\]\(([^)#]+)\)", README)
    assert links
    missing = [link for link in links if not link.startswith("http") and not (ROOT / link).exists()]
    assert not missing


def test_quick_start_is_two_commands_and_ci_has_no_docker() -> None:
    quick = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = quick.split("```sh", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert commands == ["make demo", "make test"]
    assert "No Docker engine runs in this repository's CI" in " ".join(README.split())
