"""Collecting from a store and parsing the exposition with prometheus_client's own parser."""

from __future__ import annotations

import asyncio
from pathlib import Path

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from common.storage import StoreReader
from kubestate.collector import Collection, collect
from kubestate.families import RESOURCES, ResourceMetrics

Sample = tuple[str, tuple[tuple[str, str], ...]]


def run_collect(
    reader: StoreReader,
    directory: Path,
    *,
    resources: tuple[ResourceMetrics, ...] = RESOURCES,
    page_rows: int = 1000,
    max_series: int = 0,
) -> tuple[Collection, str]:
    done = asyncio.run(collect(reader, resources, directory, page_rows=page_rows, max_series=max_series))
    return done, done.path.read_text()


def parse(text: str) -> dict[str, Metric]:
    """Strict: every line must parse, and no family may appear twice (split families are invalid)."""
    out: dict[str, Metric] = {}
    for family in text_string_to_metric_families(text):
        assert family.name not in out, f"family {family.name} appears twice"
        out[family.name] = family
    return out


def samples(families: dict[str, Metric]) -> dict[Sample, float]:
    out: dict[Sample, float] = {}
    for family in families.values():
        for s in family.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            assert key not in out, f"duplicate series {key}"
            out[key] = s.value
    return out


def value(all_samples: dict[Sample, float], name: str, **labels: str) -> float:
    return all_samples[(name, tuple(sorted(labels.items())))]
