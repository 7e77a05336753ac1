"""``python -m bench`` (``make bench``): run the benchmark, print the table, rewrite the doc.

Options (``make bench BENCH_ARGS='...'``; the size also from ``BENCH_SIZE``)::

    --size small|medium|large|xl|fleet  data set per member and durations (default $BENCH_SIZE or small)
    --store sqlite,postgresql,mysql   stores to run on (default: all three; repeatable)
    --queue memory|redis          queue for the sync scenarios (default: memory on SQLite, else Redis)
    --only limits,sync,...        scenarios (limits, sync, freshness, queries, writers, profile)
    --objects N / --clusters 1,10  override the size's data set / PediaCluster counts
    --freshness-rates 20,500      override the size's PATCH rates (per second) of the freshness scenario
    --freshness-poll-ms 50        how often the freshness scenario polls the store (default 50, as the
                                  reference figures; 1 times the pipeline itself)
    --freshness-seconds 60        how long each freshness rate runs (overrides the size)
    --out DIR                     where bench-results/<size>.json and performance.md go (default docs)
    --no-doc                      keep the JSON only
    --render-only [--out DIR]     rebuild performance.md from the saved JSON, run nothing
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from dataclasses import asdict
from pathlib import Path

import msgspec

from bench.report import render_saved, render_stdout, save_and_render
from bench.runner import SCENARIOS, SIZES, Options, Results, command_line, run
from bench.services import REPO, STORES
from common.settings import env_value


def _csv(values: list[str], allowed: tuple[str, ...], what: str) -> list[str]:
    out: list[str] = []
    for value in values:
        for item in value.split(","):
            item = item.strip()
            if not item:
                continue
            if item not in allowed:
                raise SystemExit(f"bench: unknown {what} {item!r} (choose from {', '.join(allowed)})")
            if item not in out:
                out.append(item)
    return out


def parse(argv: list[str]) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__.splitlines()[0] if __doc__ else ""
    )
    parser.add_argument("--size", default=env_value("BENCH_SIZE", "small") or "small", choices=sorted(SIZES))
    parser.add_argument("--store", action="append", default=[], metavar="STORE[,STORE]")
    parser.add_argument("--queue", default="", choices=["", "memory", "redis"])
    parser.add_argument("--only", action="append", default=[], metavar="SCENARIO[,SCENARIO]")
    parser.add_argument("--out", default=str(REPO / "docs"), metavar="DIR")
    parser.add_argument("--no-doc", action="store_true")
    parser.add_argument("--keep-scratch", action="store_true", help="keep logs and profiles of the tiers")
    parser.add_argument("--objects", type=int, default=0, help="objects per member (overrides the size)")
    parser.add_argument(
        "--clusters", default="", metavar="N,M", help="PediaCluster counts (overrides the size)"
    )
    parser.add_argument(
        "--freshness-rates", default="", metavar="R,S", help="freshness PATCHes/s (overrides the size)"
    )
    parser.add_argument(
        "--freshness-poll-ms", type=float, default=50.0, metavar="MS", help="freshness poll interval"
    )
    parser.add_argument("--freshness-seconds", type=float, default=0.0, help="freshness run length")
    ns = parser.parse_args(argv)
    if not 0.5 <= ns.freshness_poll_ms <= 1000:
        raise SystemExit("bench: --freshness-poll-ms must be between 0.5 and 1000")
    size = SIZES[ns.size]
    if ns.objects:
        size = dataclasses.replace(size, objects=ns.objects, writer_events=min(ns.objects, 100_000))
    if ns.clusters:
        size = dataclasses.replace(size, clusters=tuple(int(c) for c in ns.clusters.split(",")))
    if ns.freshness_rates:
        rates = tuple(int(r) for r in ns.freshness_rates.split(","))
        size = dataclasses.replace(size, freshness_rates=rates)
    if ns.freshness_seconds:
        if not 1 <= ns.freshness_seconds <= 600:
            raise SystemExit("bench: --freshness-seconds must be between 1 and 600")
        size = dataclasses.replace(size, freshness_seconds=ns.freshness_seconds)
    stores = _csv(ns.store, STORES, "store") or list(STORES)
    only = tuple(_csv(ns.only, SCENARIOS, "scenario")) or SCENARIOS
    return Options(
        size=size,
        stores=stores,
        queue=ns.queue,
        only=only,
        out_dir=Path(ns.out),
        write_doc=not ns.no_doc,
        command=command_line(["--size", ns.size, *argv_without_size(argv)]),
        keep_scratch=ns.keep_scratch,
        freshness_poll_seconds=ns.freshness_poll_ms / 1000,
    )


def argv_without_size(argv: list[str]) -> list[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == "--size":
            skip = True
            continue
        if a.startswith("--size="):
            continue
        out.append(a)
    return out


def _clean(value: object) -> object:
    """NaN is not JSON: store it as null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def render(results: Results, opts: Options) -> None:
    data = _clean(asdict(results))
    assert isinstance(data, dict)
    data = msgspec.json.decode(msgspec.json.encode(data))
    print(render_stdout(data))
    doc = save_and_render(data, opts.out_dir, opts.write_doc)
    if doc is not None:
        print(f"\nwrote {doc}")


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if "--render-only" in args:
        # rebuild performance.md from the saved results (after editing bench/notes.md or report.py)
        out = Path(args[args.index("--out") + 1]) if "--out" in args else REPO / "docs"
        print(f"wrote {render_saved(out)}")
        return 0
    opts = parse(args)
    return run(opts, render)


if __name__ == "__main__":
    sys.exit(main())
