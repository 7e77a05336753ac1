"""Turning results into the stdout table and ``docs/performance.md``.

Each run saves its raw results as JSON (``<out>/bench-results/<size>.json``); the document is then
rebuilt from every size found there, so a ``small`` run (the one the test suite makes) never
erases the figures of a ``medium`` run. The hand-written analysis lives in ``bench/notes.md`` and
is copied in verbatim: regenerating the figures keeps it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from bench.stats import fmt_bytes, fmt_ms, fmt_rate

NOTES = Path(__file__).with_name("notes.md")
SIZE_ORDER = ("xl", "fleet", "large", "medium", "small")
STATEMENTS = {"insert": "multi-row INSERT", "upsert": "writer's guarded upsert", "copy": "COPY FROM STDIN"}
TARGETS = {
    "sync": 5000.0,
    "p99_selective_seconds": 0.050,
    "synchro_bytes_per_object": 200.0,
    "freshness_p99_seconds": 1.0,
}


def _f(x: Any) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured Markdown table (also readable as plain text)."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    line = "| " + " | ".join(h.ljust(widths[i]) for i, h in enumerate(headers)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = ["| " + " | ".join(c.ljust(widths[i]) for i, c in enumerate(row)) + " |" for row in rows]
    return "\n".join([line, sep, *body])


def _cmd(res: dict[str, Any], only: str, store: str = "") -> str:
    size = res["size"]
    args = f"--size {size} --only {only}"
    if store:
        args += f" --store {store}"
    return f"`make bench BENCH_ARGS='{args}'`"


def _upstream_rate(res: dict[str, Any]) -> float:
    return _f((res.get("upstream") or {}).get("rate"))


def _downstream_rate(res: dict[str, Any], store: str, statement: str = "insert") -> float:
    for d in res.get("downstream", []):
        if d["store"] == store and d["statement"] == statement:
            return _f(d["rate"])
    return math.nan


def _ratio(a: float, b: float) -> str:
    if math.isnan(a) or math.isnan(b) or b == 0:
        return "n/a"
    return f"{a / b:.2f}"


def _per_object_us(cpu: Any, count: int) -> str:
    value = _f(cpu)
    if math.isnan(value) or not count:
        return "n/a"
    return f"{value / count * 1e6:,.0f}"


def section_limits(res: dict[str, Any]) -> str:
    out = ["### Limits (the physical references)", ""]
    up = res.get("upstream") or {}
    if up:
        rows = []
        for label, entry in (
            ("upstream: member kube-apiserver, paged list (limit=500), 1 client", up),
            ("same, accepting gzip (httpx's default; the synchro's client)", up.get("gzip")),
        ):
            if entry:
                rows.append(
                    [
                        label,
                        str(entry["objects"]),
                        f"{entry['seconds']:.2f}",
                        fmt_rate(entry["rate"]),
                        f"{entry['bytes'] / entry['seconds'] / 2**20:.1f}",
                        _per_object_us(entry.get("server_cpu_seconds"), entry["objects"]),
                        _per_object_us(entry.get("client_cpu_seconds"), entry["objects"]),
                    ]
                )
        headers = [
            "reference",
            "objects",
            "seconds",
            "objects/s",
            "MiB/s",
            "member CPU µs/obj",
            "client µs/obj",
        ]
        out.append(table(headers, rows))
        out.append("")
    rows = [
        [
            d["store"],
            STATEMENTS.get(d["statement"], d["statement"]),
            str(d["rows"]),
            f"{d['seconds']:.2f}",
            fmt_rate(d["rate"]),
            _per_object_us(d.get("server_cpu_seconds"), d["rows"]) if d["store"] != "sqlite" else "-",
            _per_object_us(d.get("client_cpu_seconds"), d["rows"]),
        ]
        for d in res.get("downstream", [])
    ]
    if rows:
        headers = [
            "store",
            "statement (1,000 rows/txn)",
            "rows",
            "seconds",
            "rows/s",
            "server µs/row",
            "client µs/row",
        ]
        out.append(table(headers, rows))
        out.append("")
    out.append(f"Command: {_cmd(res, 'limits')}")
    return "\n".join(out)


def section_sync(res: dict[str, Any]) -> str:
    rows = []
    for s in res.get("sync", []):
        rows.append(
            [
                s["store"],
                s["queue"],
                str(s["clusters"]),
                str(s["objects"]),
                f"{s['seconds']:.1f}",
                fmt_rate(s["rate"]),
                _ratio(s["rate"], _upstream_rate(res)),
                _ratio(s["rate"], _downstream_rate(res, s["store"])),
            ]
        )
    if not rows:
        return ""
    return "\n".join(
        [
            "### Initial sync, end to end",
            "",
            "From PediaCluster creation to every object stored (live rows polled), tiers already running.",
            "",
            table(
                [
                    "store",
                    "queue",
                    "clusters",
                    "objects",
                    "seconds",
                    "objects/s",
                    "/ upstream",
                    "/ downstream",
                ],
                rows,
            ),
            "",
            f"Command: {_cmd(res, 'sync', '<store>')}",
        ]
    )


def section_cpu(res: dict[str, Any]) -> str:
    """CPU per object: robust on a shared machine, where wall-clock rates depend on the neighbours."""
    rows = []
    for s in res.get("sync", []):
        if "other_cpu_seconds" not in s:
            continue
        n = s["objects"] or 1
        cpu = {m["name"]: m.get("cpu_seconds", 0.0) for m in s["memory"]}
        synchro = cpu.get("synchro", cpu.get("all-in-one", math.nan))
        writer = sum(v for k, v in cpu.items() if k.startswith("writer"))
        other = s["other_cpu_seconds"]
        total = sum(cpu.values()) + sum(other.values())
        rows.append(
            [
                s["store"],
                str(s["clusters"]),
                str(n),
                f"{synchro / n * 1e6:,.0f}",
                f"{writer / n * 1e6:,.0f}" if writer else "(in all-in-one)",
                f"{other.get('kube-apiserver', math.nan) / n * 1e6:,.0f}",
                f"{other.get('etcd', math.nan) / n * 1e6:,.0f}",
                f"{other.get('database', math.nan) / n * 1e6:,.0f}" if other.get("database") else "-",
                f"{total / s['seconds']:.2f}" if s["seconds"] else "n/a",
                fmt_rate(n / synchro) if synchro else "n/a",
            ]
        )
    if not rows:
        return ""
    return "\n".join(
        [
            "### CPU per object during the initial sync",
            "",
            "CPU time (user + system, from /proc) of each process from PediaCluster creation to the last "
            "row, in microseconds per object. Unlike wall-clock rates it does not depend on what else the "
            "shared machine runs; `objects per synchro CPU-second` is what one synchro process could do "
            "with a core of its own.",
            "",
            table(
                [
                    "store",
                    "clusters",
                    "objects",
                    "synchro µs",
                    "writer µs",
                    "kube-apiserver µs",
                    "etcd µs",
                    "database µs",
                    "cores busy",
                    "objects per synchro CPU-s",
                ],
                rows,
            ),
        ]
    )


def section_memory(res: dict[str, Any]) -> str:
    rows = []
    for s in res.get("sync", []):
        for m in s["memory"]:
            growth = max(0, m["peak_bytes"] - m["base_bytes"])
            settled = m.get("settled_bytes") or 0
            kept = max(0, settled - m["base_bytes"])
            rows.append(
                [
                    s["store"],
                    str(s["clusters"]),
                    str(s["objects"]),
                    m["name"],
                    fmt_bytes(m["base_bytes"]),
                    fmt_bytes(m["peak_bytes"]),
                    f"{growth / s['objects']:,.0f}" if s["objects"] else "n/a",
                    fmt_bytes(settled) if settled else "n/a",
                    f"{kept / s['objects']:,.0f}" if s["objects"] and settled else "n/a",
                ]
            )
    if not rows:
        return ""
    return "\n".join(
        [
            "### Memory (peak RSS during the initial sync)",
            "",
            "Base = RSS of the idle tier just before the PediaClusters were created (0 objects); "
            "settled = RSS 3 s after the last row was stored. B/object = (RSS - base) / objects.",
            "In the memory-queue shape one `all-in-one` process holds synchro, writer and API tier.",
            "",
            table(
                [
                    "store",
                    "clusters",
                    "objects",
                    "process",
                    "base RSS",
                    "peak RSS",
                    "peak B/object",
                    "settled RSS",
                    "kept B/object",
                ],
                rows,
            ),
            "",
            f"Command: {_cmd(res, 'sync', '<store>')}",
        ]
    )


def section_freshness(res: dict[str, Any]) -> str:
    rows = []
    for f in res.get("freshness", []):
        rows.append(
            [
                f["store"],
                f["queue"],
                f"{f['rate']} x {f['clusters']}",
                fmt_rate(f["changes_per_second"]),
                fmt_rate(f["achieved_changes_per_second"]),
                f"{f['seen']}/{f['patches']}",
                fmt_ms(f["p50"]),
                fmt_ms(f["p99"]),
                fmt_ms(f["max"]),
                fmt_ms(_f(f.get("watch_p50"))),
                fmt_ms(_f(f.get("watch_p99"))),
            ]
        )
    if not rows:
        return ""
    return "\n".join(
        [
            "### Freshness under a sustained update load",
            "",
            "PATCH rate to the member x PediaClusters pointing at it = changes/s entering the pipeline; "
            "delay from the PATCH response to the row in the store (timed on the first cluster; "
            "50 ms poll resolution included). Reference: the same changes on a bare watch of the "
            "member's pods (what any watcher gets; the member is loaded by the PATCHes themselves).",
            "",
            table(
                [
                    "store",
                    "queue",
                    "patches/s x clusters",
                    "target changes/s",
                    "achieved",
                    "seen",
                    "p50",
                    "p99",
                    "max",
                    "bare watch p50",
                    "bare watch p99",
                ],
                rows,
            ),
            "",
            f"Command: {_cmd(res, 'freshness', '<store>')}",
        ]
    )


def section_queries(res: dict[str, Any]) -> str:
    lat = res.get("latency", [])
    if not lat:
        return ""
    out = ["### Query latency through the API tier (HTTPS, sequential, keep-alive)", ""]
    stores = sorted({x["store"] for x in lat}, key=lambda s: ("sqlite", "postgresql", "mysql").index(s))
    rows_by_store = {
        s: max((x["objects"] for x in res.get("sync", []) if x["store"] == s), default=0) for s in stores
    }
    for store in stores:
        out.append(f"**{store}** ({rows_by_store[store]:,} objects stored)")
        out.append("")
        rows = []
        queries = list(dict.fromkeys(x["query"] for x in lat if x["store"] == store))
        for q in queries:
            for accept in ("json", "table"):
                api = next(
                    (
                        x
                        for x in lat
                        if x["store"] == store
                        and x["query"] == q
                        and x["accept"] == accept
                        and x["target"] == "api"
                    ),
                    None,
                )
                mem = next(
                    (
                        x
                        for x in lat
                        if x["store"] == store
                        and x["query"] == q
                        and x["accept"] == accept
                        and x["target"] == "member"
                    ),
                    None,
                )
                if api is None:
                    continue
                err = f" ({api['errors']} errors)" if api["errors"] else ""
                rows.append(
                    [
                        q,
                        accept,
                        fmt_ms(api["p50"]) + err,
                        fmt_ms(api["p99"]),
                        fmt_bytes(api["bytes"]),
                        fmt_ms(mem["p50"]) if mem else "-",
                        fmt_ms(mem["p99"]) if mem else "-",
                    ]
                )
        out.append(
            table(["query", "Accept", "API p50", "API p99", "response", "member p50", "member p99"], rows)
        )
        out.append("")
    tp = res.get("throughput", [])
    if tp:
        out.append(
            "Requests/s for the whole mix (JSON and Table alternating), bounded duration per concurrency:"
        )
        out.append("")
        out.append(
            table(
                ["store", "concurrency", "requests", "req/s", "p50", "p99", "errors", "API CPU µs/request"],
                [
                    [
                        t["store"],
                        str(t["concurrency"]),
                        str(t["requests"]),
                        fmt_rate(t["rps"]),
                        fmt_ms(_f(t["p50"])),
                        fmt_ms(_f(t["p99"])),
                        str(t["errors"]),
                        _per_object_us(t.get("api_cpu_seconds"), t["requests"]),
                    ]
                    for t in tp
                ],
            )
        )
        out.append("")
    out.append(f"Command: {_cmd(res, 'queries', '<store>')}")
    return "\n".join(out)


def section_writers(res: dict[str, Any]) -> str:
    w = res.get("writers", [])
    if not w:
        return ""
    rows = [
        [
            x["store"],
            str(x["writers"]),
            str(x["events"]),
            fmt_rate(x["rate"]),
            f"{x['writer_cpu_seconds']:.1f}",
            f"{x['db_cpu_seconds']:.1f}",
            _per_object_us(x["writer_cpu_seconds"], x["events"]),
            _per_object_us(x["db_cpu_seconds"], x["events"]),
            f"{x['total_seconds']:.1f}",
        ]
        for x in w
    ]
    return "\n".join(
        [
            "### Writer scaling (Redis stream pre-filled, N `clusterpedia writer` processes)",
            "",
            "Rate between 5 % and 95 % of the rows stored; CPU seconds of all writers and of the "
            "database server processes over the whole drain.",
            "",
            table(
                [
                    "store",
                    "writers",
                    "events",
                    "rows/s",
                    "writer CPU s",
                    "DB CPU s",
                    "writer µs/row",
                    "DB µs/row",
                    "wall s",
                ],
                rows,
            ),
            "",
            f"Command: {_cmd(res, 'writers', '<store>')}",
        ]
    )


def section_profiles(res: dict[str, Any]) -> str:
    profiles = res.get("profiles", [])
    if not profiles:
        return ""
    out = ["### Profiles (py-spy, 100 Hz, busy threads)", ""]
    for p in profiles:
        if p.get("error"):
            out.append(f"- **{p['tier']}**: not profiled: {p['error']}")
            continue
        out.append(f"**{p['tier']}** ({p['samples']} samples). Self time:")
        out.append("")
        out.append(table(["function", "share"], [[k, f"{v:.0%}"] for k, v in p["self_top"][:8]]))
        out.append("")
        out.append("Inclusive, project code:")
        out.append("")
        out.append(table(["function", "share"], [[k, f"{v:.0%}"] for k, v in p["inclusive_top"][:8]]))
        out.append("")
    out.append(f"Command: {_cmd(res, 'profile', '<store>')}")
    return "\n".join(out)


def section_errors(res: dict[str, Any]) -> str:
    errs = res.get("errors", [])
    if not errs:
        return ""
    rows = [[e["scenario"], e["store"], e["error"][:160].replace("|", "/").replace("\n", " ")] for e in errs]
    return "\n".join(
        ["### Scenarios that failed in this run", "", table(["scenario", "store", "error"], rows)]
    )


def targets(results: Sequence[dict[str, Any]]) -> str:
    """The issue's targets against the biggest run that measured each."""
    rows = []
    syncs = [
        (r, s)
        for r in results
        for s in r.get("sync", [])
        if s["store"] == "postgresql" and s["clusters"] == 1
    ]
    if syncs:
        r, s = max(syncs, key=lambda rs: rs[1]["objects"])
        ok = s["rate"] >= TARGETS["sync"]
        synchro_cpu = next((m.get("cpu_seconds", 0.0) for m in s["memory"] if m["name"] == "synchro"), 0.0)
        capacity = f"; {fmt_rate(s['objects'] / synchro_cpu)} per synchro CPU-second" if synchro_cpu else ""
        rows.append(
            [
                "initial sync >= 5,000 objects/s per synchro (PostgreSQL)",
                f"{fmt_rate(s['rate'])} objects/s wall clock ({r['size']}, {s['objects']:,} objects)"
                + capacity,
                "reached" if ok else "not reached",
            ]
        )
    lats = [
        (r, x)
        for r in results
        for x in r.get("latency", [])
        if x["target"] == "api" and x["query"].startswith("selective") and x["accept"] == "json"
    ]
    if lats:
        parts, ok = [], True
        for r, x in lats:
            objects = max((s["objects"] for s in r.get("sync", []) if s["store"] == x["store"]), default=0)
            ok = ok and _f(x["p99"]) <= TARGETS["p99_selective_seconds"]
            parts.append(f"{fmt_ms(_f(x['p99']))} {x['store']} {objects:,} objects ({r['size']})")
        rows.append(
            [
                "p99 selective list <= 50 ms (at 1M objects)",
                "; ".join(parts),
                ("reached" if ok else "not reached") + " at these sizes; 1M not measured",
            ]
        )
    mem = [
        (r, s, m) for r in results for s in r.get("sync", []) for m in s["memory"] if m["name"] == "synchro"
    ]
    if mem:
        parts, ok = [], True
        for r in results:
            mine = [(s, m) for rr, s, m in mem if rr is r]
            if not mine:
                continue
            s, m = max(mine, key=lambda sm: sm[0]["objects"])
            kept = max(0, (m.get("settled_bytes") or m["peak_bytes"]) - m["base_bytes"]) / s["objects"]
            peak = max(0, m["peak_bytes"] - m["base_bytes"]) / s["objects"]
            ok = ok and kept <= TARGETS["synchro_bytes_per_object"]
            parts.append(
                f"{kept:,.0f} B/object kept, {peak:,.0f} at the peak ({s['store']}, {s['objects']:,} objects "
                f"in {s['clusters']} cluster(s), {r['size']})"
            )
        rows.append(
            [
                "synchro <= 200 bytes per synced object beyond a fixed base",
                "; ".join(parts),
                "reached" if ok else "not reached",
            ]
        )
    fresh = [(r, f) for r in results for f in r.get("freshness", []) if f["changes_per_second"] >= 500]
    if fresh:
        r, f = min(fresh, key=lambda rf: _f(rf[1]["p99"]))
        ok = _f(f["p99"]) <= TARGETS["freshness_p99_seconds"] and f["achieved_changes_per_second"] >= 450
        rows.append(
            [
                "freshness p99 <= 1 s at 500 changes/s",
                f"{fmt_ms(_f(f['p99']))} at {fmt_rate(f['achieved_changes_per_second'])} changes/s "
                f"({f['store']}, {r['size']})",
                "reached" if ok else "not reached",
            ]
        )
    if not rows:
        return ""
    return table(["target (issue 6)", "best measured", "status"], rows)


def render_markdown(results: Sequence[dict[str, Any]]) -> str:
    ordered = sorted(results, key=lambda r: SIZE_ORDER.index(r["size"]) if r["size"] in SIZE_ORDER else 9)
    main = ordered[0]
    facts = main.get("facts", {})
    out = [
        "# Performance",
        "",
        "Generated by `python -m bench` (`make bench`) from the results in `docs/bench-results/`; the "
        "analysis at the end is kept in `bench/notes.md`. Every figure names the command that "
        "reproduces it. Sizes: `BENCH_SIZE=small` (3,500 objects per member, run by the test suite), "
        "`medium` (14,000), `large` (100,000), `xl` (100,000 behind 10 PediaClusters: 1,000,000 "
        "rows), `fleet` (3,500 behind 100 PediaClusters).",
        "",
        "```",
        "make bench BENCH_SIZE=medium                      # every scenario on SQLite, PostgreSQL, MariaDB",
        "make bench BENCH_ARGS='--size small --store postgresql --only sync,freshness'",
        "make bench BENCH_ARGS='--render-only'             # rebuild this file from docs/bench-results/",
        "```",
        "",
        "A run starts one member kube-apiserver (harness/), fills it with the generator "
        "(bench/generate.py), measures the limits, then per store starts the tiers as their own "
        "processes (`clusterpedia all-in-one` on SQLite with the in-process queue; `clusterpedia "
        "synchro`, `writer` and `apiserver` on Redis for PostgreSQL and MariaDB), creates 1 then N "
        "PediaClusters pointing at the member and measures; it stops everything it started. "
        "Databases are fresh per run (harness store helpers), loopback only, every load loop bounded "
        "in time and count.",
        "",
        "## Machine",
        "",
        table(["fact", "value"], [[k, str(v)] for k, v in facts.items()]),
        "",
        "## Targets",
        "",
        "Computed from the saved runs below only. Targets measured later by hand, by their own commands, "
        "are in the analysis at the end (issue 16, session 7: initial sync 4,236-4,626 objects/s, "
        "selective list p99 8.9 ms at 1M rows, freshness p99 72-74 ms at 500 changes/s).",
        "",
        targets(ordered),
        "",
    ]
    for res in ordered:
        gen = res.get("generator") or {}
        out += [
            f"## Size `{res['size']}`",
            "",
            f"Run: `{res['command']}` on {res.get('facts', {}).get('date', '?')}, "
            f"{res['seconds'] / 60:.1f} min.",
            "",
        ]
        if gen:
            out += [
                f"Data set: {gen['objects']:,} objects in one member kube-apiserver "
                f"({gen['deployments']:,} Deployments, {gen['replicasets']:,} ReplicaSets, "
                f"{gen['pods']:,} Pods "
                f"with controller ownerReferences, {gen['namespaces']} namespaces, "
                f"{gen['mean_bytes']:,.0f} B mean JSON as sent), created in {gen['seconds']:.1f}s "
                f"({fmt_rate(gen['rate'])} objects/s, 32 concurrent POSTs).",
                "",
            ]
        for sec in (
            section_limits,
            section_sync,
            section_cpu,
            section_memory,
            section_freshness,
            section_queries,
            section_writers,
            section_profiles,
            section_errors,
        ):
            text = sec(res)
            if text:
                out += [text, ""]
    if NOTES.exists():
        out += [NOTES.read_text().rstrip(), ""]
    return "\n".join(out)


def render_stdout(res: dict[str, Any]) -> str:
    parts = [f"== clusterpedia-py benchmark, size {res['size']} ({res['seconds'] / 60:.1f} min) =="]
    for sec in (
        section_limits,
        section_sync,
        section_cpu,
        section_memory,
        section_freshness,
        section_queries,
        section_writers,
        section_errors,
    ):
        text = sec(res)
        if text:
            parts += ["", text]
    return "\n".join(parts)


def save_and_render(results: dict[str, Any], out_dir: Path, write_doc: bool) -> Path | None:
    data_dir = out_dir / "bench-results"
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / f"{results['size']}.json").write_bytes(
        msgspec.json.format(msgspec.json.encode(results)) + b"\n"
    )
    if not write_doc:
        return None
    return render_saved(out_dir)


def render_saved(out_dir: Path) -> Path:
    """Rebuild ``performance.md`` from every ``bench-results/*.json`` under ``out_dir``."""
    all_results = [
        msgspec.json.decode(p.read_bytes()) for p in sorted((out_dir / "bench-results").glob("*.json"))
    ]
    doc = out_dir / "performance.md"
    doc.write_text(render_markdown(all_results))
    return doc
