"""Keep harness clusters up for manual poking.

    .venv/bin/python -m harness up            # host + cluster-1 (current) + cluster-2 (older)
    .venv/bin/python -m harness up --no-hold  # start, print, stop (a quick check)

Prints each cluster's kubeconfig and a merged one (contexts named after the clusters), then waits
for Ctrl-C (or SIGTERM) and stops everything it started.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

import yaml

from harness import processes
from harness.cluster import Cluster, start_clusters


def _merged_kubeconfig(clusters: list[Cluster], path: Path) -> None:
    merged: dict[str, object] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [],
        "users": [],
        "contexts": [],
    }
    for c in clusters:
        config = yaml.safe_load(c.kubeconfig.read_text())
        for key in ("clusters", "users", "contexts"):
            section = merged[key]
            assert isinstance(section, list)
            section.extend(config[key])
    merged["current-context"] = clusters[0].name
    path.touch(mode=0o600)
    path.write_text(yaml.safe_dump(merged, sort_keys=False))


def up(args: argparse.Namespace) -> int:
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="clusterpedia-harness-"))
    if args.workdir and workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True, exist_ok=True)

    def _term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _term)
    clusters = [Cluster("host", "current", aggregation=True, workdir=workdir / "host")]
    for i in range(args.members):
        version = "current" if i % 2 == 0 else "older"
        clusters.append(
            Cluster(
                f"cluster-{i + 1}", version, controller_manager=True, workdir=workdir / f"cluster-{i + 1}"
            )
        )
    try:
        start_clusters(clusters)
        merged = workdir / "kubeconfig"
        _merged_kubeconfig(clusters, merged)
        for c in clusters:
            role = "host (aggregation layer)" if c.aggregation else "member (+controller-manager)"
            print(f"{c.name:<10} {c.version:<8} {c.server:<26} {role}\n           kubeconfig: {c.kubeconfig}")
        print(f"\nall contexts: export KUBECONFIG={merged}")
        print(f"  e.g. kubectl --context {clusters[-1].name} get ns")
        print(f"logs: {workdir}/*/*.log")
        if args.hold:
            print("\nup; press Ctrl-C to stop", flush=True)
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        print("\nstopping ...", flush=True)
    finally:
        for c in reversed(clusters):
            c.stop()
        processes.stop_all()
        if not args.keep_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_up = sub.add_parser("up", help="start a host and member clusters, wait for Ctrl-C, tear down")
    p_up.add_argument("--members", type=int, default=2, help="number of member clusters (default 2)")
    p_up.add_argument(
        "--hold", action=argparse.BooleanOptionalAction, default=True, help="wait for Ctrl-C (default)"
    )
    p_up.add_argument("--workdir", help="work directory (default: a new temporary one)")
    p_up.add_argument("--keep-workdir", action="store_true", help="leave certificates and logs behind")
    args = parser.parse_args(argv)
    if args.command == "up":
        return up(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
