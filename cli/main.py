"""The ``clusterpedia`` command: one subcommand per tier, ``all-in-one``, ``config`` and ``version``.

Configuration comes from one typed Settings object (``common.settings``): flags override the
environment (``CLUSTERPEDIA_*``), which overrides the ``--config`` file, which overrides the
defaults. The defaults are the embedded shape (SQLite file, in-process queue), so
``clusterpedia all-in-one`` runs on a laptop with nothing else installed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib import metadata
from typing import Any

import msgspec

from cli import flags, running
from cli.showconfig import reference_table, render_settings
from common.observability import setup_logging
from common.settings import Settings, load_settings
from common.storage import url_scheme

TIER_SECTIONS = {
    "apiserver": ["apiserver"],
    "synchro": ["synchro"],
    "writer": ["writer"],
    "kube-state-metrics": ["kube_state_metrics"],
}
ALL_SECTIONS = ["apiserver", "synchro", "writer"]
UNUSED_TOP_LEVEL = {
    # reads only the store and serves its own port: no flag that it would ignore
    "kube-state-metrics": frozenset(
        {"queue", "queue_max_len", "kubeconfig", "metrics_port", "metrics_bind_host"}
    ),
}

DESCRIPTIONS = {
    "apiserver": "Serve the Kubernetes-compatible search API (aggregated into the host kube-apiserver).",
    "synchro": "Watch the member clusters named by PediaClusters and publish their objects to the queue.",
    "writer": "Consume the queue and write objects to the store in batches.",
    "kube-state-metrics": (
        "Serve kube-state-metrics series (kube_pod_status_phase, kube_deployment_status_replicas_available,"
        " kube_node_status_condition, ...) of every cluster, with a cluster label, from the store for"
        " Prometheus (docs/kube-state-metrics.md)."
    ),
    "all-in-one": (
        "Run every tier in one process tree: with the in-process queue (memory://, the default) "
        "the API server, the synchro and the writers share one process; with a redis:// queue each "
        "tier runs as a child process."
    ),
    "migrate": "Create (or check) the store's tables and exit; run it once before starting several tiers.",
    "config": "Print the effective settings as YAML (secrets masked) and exit.",
    "version": "Print the version and exit.",
}


def version_string() -> str:
    try:
        ver = metadata.version("clusterpedia-py")
    except metadata.PackageNotFoundError:
        ver = "unknown"
    return f"clusterpedia {ver} (python {sys.version.split()[0]})"


def _common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=None,
        help="YAML or JSON file with the keys `clusterpedia config` prints [env CLUSTERPEDIA_CONFIG]",
    )
    parser.add_argument(
        "--set",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="set any setting by its dotted key, value parsed as YAML "
        "(e.g. --set writer.batch_max_events=500); dedicated flags win over --set",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clusterpedia",
        description="Search many Kubernetes clusters at once with plain kubectl.",
        epilog="Run `clusterpedia <command> --help` for the flags of each command.",
    )
    parser.add_argument("--version", action="version", version=version_string())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    for tier, sections in TIER_SECTIONS.items():
        p = sub.add_parser(tier, help=DESCRIPTIONS[tier], description=DESCRIPTIONS[tier])
        _common_args(p)
        fields, prefixed = flags.fields_for(sections)
        unused = UNUSED_TOP_LEVEL.get(tier, frozenset())
        fields = [f for f in fields if f.section or f.name not in unused]
        flags.add_setting_flags(p, fields, prefixed=prefixed)

    p = sub.add_parser("all-in-one", help=DESCRIPTIONS["all-in-one"], description=DESCRIPTIONS["all-in-one"])
    _common_args(p)
    p.add_argument(
        "--writers",
        type=int,
        default=1,
        metavar="N",
        help="writer workers: threads with memory://, processes with redis:// (default 1)",
    )
    fields, prefixed = flags.fields_for(ALL_SECTIONS)
    flags.add_setting_flags(p, fields, prefixed=prefixed)

    p = sub.add_parser("migrate", help=DESCRIPTIONS["migrate"], description=DESCRIPTIONS["migrate"])
    _common_args(p)
    fields, prefixed = flags.fields_for([])
    flags.add_setting_flags(p, fields, prefixed=prefixed)

    p = sub.add_parser("config", help=DESCRIPTIONS["config"], description=DESCRIPTIONS["config"])
    _common_args(p)
    p.add_argument("--show-secrets", action="store_true", help="print passwords in URLs unmasked")
    p.add_argument(
        "--reference", action="store_true", help="print the reference of every setting as a Markdown table"
    )
    fields, prefixed = flags.fields_for(ALL_SECTIONS)
    flags.add_setting_flags(p, fields, prefixed=prefixed)

    sub.add_parser("version", help=DESCRIPTIONS["version"], description=DESCRIPTIONS["version"])
    return parser


def settings_from(ns: argparse.Namespace) -> tuple[Settings, dict[str, Any]]:
    overrides = flags.overrides_from(ns)
    return load_settings(config_file=ns.config, overrides=overrides), overrides


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    ns = parser.parse_args(argv)
    if ns.command == "version":
        print(version_string())
        return 0
    try:
        settings, overrides = settings_from(ns)
    except (argparse.ArgumentTypeError, msgspec.ValidationError, OSError, ValueError) as exc:
        parser.exit(2, f"clusterpedia {ns.command}: error: invalid configuration: {exc}\n")
    if ns.command == "config" and ns.reference:
        sys.stdout.write(reference_table())
        return 0
    if ns.command == "config":
        sys.stdout.write(render_settings(settings, show_secrets=ns.show_secrets))
        return 0

    tier = ns.command
    try:
        setup_logging(settings, tier)
    except ValueError as exc:
        parser.exit(2, f"clusterpedia {tier}: error: {exc}\n")
    if tier == "apiserver":
        return running.run_apiserver(settings)
    if tier == "synchro":
        return running.run_synchro(settings)
    if tier == "writer":
        return running.run_writer(settings)
    if tier == "migrate":
        return running.run_migrate(settings)
    if tier == "kube-state-metrics":
        try:
            return running.run_kube_state_metrics(settings)
        except (OSError, ValueError) as exc:
            parser.exit(2, f"clusterpedia {tier}: error: {exc}\n")
    if ns.writers < 1:
        parser.exit(2, "clusterpedia all-in-one: error: --writers must be at least 1\n")
    if settings.queue.startswith("memory:"):
        return running.run_all_in_one_process(settings, ns.writers)
    if url_scheme(settings.storage) == "memory":
        parser.exit(
            2,
            "clusterpedia all-in-one: error: --storage memory:// keeps the objects inside one process:"
            " use it with the in-process queue (--queue memory://)\n",
        )
    return running.run_all_in_processes(ns.config, overrides, settings, ns.writers)


if __name__ == "__main__":
    sys.exit(main())
