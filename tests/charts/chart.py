"""Rendering the chart with the helm that hack/build-helm.sh builds, for the chart tests."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness.paths import helm_binary

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "clusterpedia"
RELEASE = "clusterpedia"
NAMESPACE = "clusterpedia-system"


def build_helm() -> Path:
    """Build (or reuse) helm with hack/build-helm.sh; the harness knows where it lands."""
    out = subprocess.run(
        ["bash", str(ROOT / "hack" / "build-helm.sh")],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    assert out.returncode == 0, f"hack/build-helm.sh failed:\n{out.stderr}"
    path = helm_binary()
    assert path.is_file(), f"hack/build-helm.sh succeeded but {path} is missing"
    return path


@dataclass(frozen=True)
class ValueSet:
    name: str
    file: str | None  # relative to the chart; None: the defaults


def documented_value_sets() -> list[ValueSet]:
    """The rows of the README's "Value sets" table: | name | `ci/x.yaml` or (none) | purpose |."""
    text = (CHART / "README.md").read_text()
    section = text.split("## Value sets", 1)[1].split("\n## ", 1)[0]
    sets: list[ValueSet] = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or cells[0] in ("Value set", "") or set(cells[0]) <= {"-"}:
            continue
        match = re.fullmatch(r"`(ci/[\w.-]+\.yaml)`", cells[1])
        sets.append(ValueSet(cells[0], match.group(1) if match else None))
    return sets


def render(helm: Path, values_file: str | None = None, *extra: str) -> subprocess.CompletedProcess[str]:
    argv = [str(helm), "template", RELEASE, str(CHART), "--namespace", NAMESPACE]
    if values_file:
        argv += ["-f", str(CHART / values_file)]
    return subprocess.run([*argv, *extra], capture_output=True, text=True, timeout=120, check=False)


def render_objects(helm: Path, values_file: str | None = None, *extra: str) -> list[dict[str, Any]]:
    out = render(helm, values_file, *extra)
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}
