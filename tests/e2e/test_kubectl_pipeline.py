"""The whole product: PediaClusters on a real host, the real synchro and writer filling the store from
two real members, the API tier serving it, and kubectl's tables through Clusterpedia equal to each
member's own (the golden comparison, on what the pipeline stored rather than on test-written rows).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.cluster import Cluster
from harness.paths import kubectl_binary
from tests.e2e.kubectl_support import (
    CRD,
    GADGETS,
    GOLDEN_KINDS,
    WIDGETS,
    WORKLOADS,
    ApiTier,
    assert_golden,
    kubectl_run,
    parse_table,
)
from tests.e2e.sync_support import (
    GR,
    Key,
    cluster_rows,
    install_crd,
    make_settings,
    pediacluster,
    start_synchro,
    start_writer,
    wait_for,
    wait_store_matches,
)

pytestmark = pytest.mark.e2e

SYNCED: list[GR] = [
    ("", "v1", "pods"),
    ("", "v1", "services"),
    ("", "v1", "configmaps"),
    ("", "v1", "namespaces"),
    ("", "v1", "secrets"),
    ("apps", "v1", "deployments"),
    ("example.com", "v1", "widgets"),
    ("example.com", "v1alpha1", "gadgets"),
]
SPEC_GROUPS = {
    "": ["pods", "services", "configmaps", "namespaces", "secrets"],
    "apps": ["deployments"],
    "example.com": ["widgets", "gadgets"],
}


@dataclass
class Pipeline:
    members: dict[str, Cluster]
    kubeconfig: Path


@pytest.fixture(scope="module")
def pipeline(
    host_cluster: Cluster,
    two_member_clusters: tuple[Cluster, Cluster],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Pipeline]:
    workdir = tmp_path_factory.mktemp("pipeline")
    store_url = f"sqlite:///{workdir / 'store.db'}"
    members = {c.name: c for c in two_member_clusters}
    for cluster in members.values():
        cluster.apply(WORKLOADS)
        cluster.apply(CRD)
        cluster.wait_crd("widgets.example.com")
        cluster.apply(WIDGETS)
        crd, gadget = GADGETS.split("---")
        cluster.apply(crd)
        cluster.wait_crd("gadgets.example.com")
        cluster.apply(gadget)
    install_crd(host_cluster)
    for name, cluster in members.items():
        host_cluster.apply(pediacluster(name, cluster, SPEC_GROUPS))
    settings = make_settings(host_cluster, store_url, "memory://")
    writer = start_writer(settings)
    synchro = start_synchro(settings)
    api: ApiTier | None = None
    try:

        def expected() -> dict[Key, int]:
            out: dict[Key, int] = {}
            for name, cluster in members.items():
                out.update(cluster_rows(name, cluster, SYNCED))
            return out

        wait_store_matches(store_url, expected, members, timeout=120)
        api = ApiTier(workdir, store_url).start()
        yield Pipeline(members, api.kubeconfig(workdir / "kubeconfig", list(members)))
    finally:
        if api is not None:
            api.stop()
        synchro.stop()
        writer.stop()


@pytest.mark.parametrize("kind", GOLDEN_KINDS)
def test_synced_objects_print_like_the_members(pipeline: Pipeline, kind: str) -> None:
    for wide in (False, True):
        # The members' controllers may still be updating a status (the store follows within a
        # moment), so a difference is retried before it counts.
        def golden(wide: bool = wide) -> bool:
            assert_golden(pipeline.kubeconfig, pipeline.members, kind, "1.32", wide=wide)
            return True

        wait_for(golden, f"{kind} (wide={wide}) printed like the members", timeout=30, interval=1.0)


def test_discovery_shows_what_the_pipeline_synced(pipeline: Pipeline) -> None:
    out = kubectl_run(
        kubectl_binary("1.27"), pipeline.kubeconfig, "--cluster", "clusterpedia", "api-resources"
    ).stdout
    _, rows = parse_table(out)
    assert sorted((r[0], r[-3]) for r in rows) == sorted(
        [
            ("configmaps", "v1"),
            ("deployments", "apps/v1"),
            ("gadgets", "example.com/v1alpha1"),
            ("namespaces", "v1"),
            ("pods", "v1"),
            ("secrets", "v1"),
            ("services", "v1"),
            ("widgets", "example.com/v1"),
        ]
    )
    short = {r[0]: r[1] for r in rows}
    assert (short["pods"], short["deployments"], short["widgets"]) == ("po", "deploy", "wg")


def test_secret_values_are_not_stored(pipeline: Pipeline) -> None:
    """The synchro stores Secrets with their values emptied (synchro.redact_secret_values, the
    default): through Clusterpedia a Secret shows its keys (kubectl's DATA column) but no value."""
    member = next(iter(pipeline.members.values()))
    name = next(iter(pipeline.members))
    member.kubectl(
        "create", "secret", "generic", "db-password", "--from-literal=password=hunter2", "-n", "default"
    )

    def fetched() -> dict[str, object]:
        out = kubectl_run(
            kubectl_binary("1.32"),
            pipeline.kubeconfig,
            "--cluster",
            name,
            "get",
            "secret",
            "db-password",
            "-n",
            "default",
            "-o",
            "json",
            check=False,
        )
        return json.loads(out.stdout) if out.returncode == 0 else {}

    obj = wait_for(fetched, "the Secret through Clusterpedia")
    assert obj["data"] == {"password": ""}
    assert obj["metadata"]["annotations"]["clusterpedia.io/redacted"] == "values"
    _, rows = parse_table(
        kubectl_run(
            kubectl_binary("1.32"), pipeline.kubeconfig, "--cluster", name, "get", "secret", "db-password"
        ).stdout
    )
    assert rows[0][-2] == "1"  # DATA: the key count, as the member prints it
