"""``make bench BENCH_SIZE=small`` end to end, to keep the benchmark working (not for timing).

It runs the real command (``python -m bench --size small``) against real components: a member
kube-apiserver from the harness, PostgreSQL, MariaDB, SQLite and Redis, and the project's tiers as
child processes. It asserts what the benchmark must have measured, never how fast: every
scenario ran without error, every object reached every store, every timed change was seen, every
query answered, and the report names every figure.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
SMALL_OBJECTS = 3_500  # bench.runner.SIZES["small"]: 500 Deployments x (1 + 1 ReplicaSet + 5 Pods)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = tmp_path_factory.mktemp("bench")
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--size", "small", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=570,
        check=False,
    )
    print(proc.stdout[-20000:])
    print(proc.stderr[-5000:], file=sys.stderr)
    return proc, out


def _results(out: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((out / "bench-results" / "small.json").read_text())
    return data


@pytest.mark.bench
@pytest.mark.timeout(600)
def test_small_benchmark_measures_every_scenario(
    small_run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    proc, out = small_run
    res = _results(out)
    assert res["errors"] == [], res["errors"]
    assert proc.returncode == 0

    gen = res["generator"]
    assert gen["objects"] == SMALL_OBJECTS
    assert gen["pods"] == 5 * gen["replicasets"] == 5 * gen["deployments"]
    assert 3_000 <= gen["mean_bytes"] <= 8_000
    assert res["upstream"]["objects"] == SMALL_OBJECTS

    assert {(d["store"], d["statement"]) for d in res["downstream"]} == {
        (s, st) for s in ("sqlite", "postgresql", "mysql") for st in ("insert", "upsert")
    } | {("postgresql", "copy")}
    assert all(d["rate"] > 0 for d in res["downstream"])
    synced = {(s["store"], s["clusters"]): s for s in res["sync"]}
    assert set(synced) == {(s, c) for s in ("sqlite", "postgresql", "mysql") for c in (1, 4)}
    for (_, clusters), s in synced.items():
        assert s["objects"] == clusters * SMALL_OBJECTS
        assert s["rate"] > 0
        assert all(m["peak_bytes"] >= m["base_bytes"] > 0 for m in s["memory"])
    assert {m["name"] for m in synced[("postgresql", 1)]["memory"]} >= {"synchro", "writer-0", "apiserver"}
    assert {m["name"] for m in synced[("sqlite", 1)]["memory"]} == {"all-in-one"}

    assert len(res["freshness"]) == 3 * 2
    for f in res["freshness"]:
        assert f["lost"] == 0 and f["seen"] == f["patches"] > 0, f

    assert res["latency"] and all(x["errors"] == 0 and x["n"] > 0 for x in res["latency"])
    assert {x["target"] for x in res["latency"]} == {"api", "member"}
    assert {x["accept"] for x in res["latency"]} == {"json", "table"}
    for store in ("sqlite", "postgresql", "mysql"):  # issue 16's point read and offset page, per store
        asked = {x["query"].split(" (")[0].split(":")[0] for x in res["latency"] if x["store"] == store}
        assert {"get one deployment by name", "offset page", "count"} <= asked, asked
    assert {(t["store"], t["concurrency"]) for t in res["throughput"]} == {
        (s, c) for s in ("sqlite", "postgresql", "mysql") for c in (1, 8, 32)
    }
    assert all(t["requests"] > 0 and t["errors"] == 0 for t in res["throughput"])

    assert {(w["store"], w["writers"]) for w in res["writers"]} == {
        (s, n) for s in ("postgresql", "mysql") for n in (1, 2, 4)
    }
    assert {p["tier"] for p in res["profiles"]} == {"synchro", "writer", "apiserver"}


@pytest.mark.bench
@pytest.mark.timeout(600)
def test_small_benchmark_writes_the_report(small_run: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    proc, out = small_run
    doc = (out / "performance.md").read_text()
    for heading in (
        "## Machine",
        "## Targets",
        "## Size `small`",
        "### Limits",
        "### Initial sync, end to end",
        "### Memory",
        "### Freshness",
        "### Query latency",
        "### Writer scaling",
        "### Profiles",
    ):
        assert heading in doc
    assert "make bench BENCH_ARGS='--size small --only sync --store <store>'" in doc
    assert "### Initial sync, end to end" in proc.stdout
    assert "get one deployment by name" in proc.stdout and "offset page: size 100 at offset" in proc.stdout
