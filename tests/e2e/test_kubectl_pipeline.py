"""The whole product: PediaClusters on a real host, the real synchro and writer filling the store from
two real members, the API tier serving it, and kubectl's tables through Clusterpedia equal to each
member's own (the golden comparison, on what the pipeline stored rather than on test-written rows).
"""

from __future__ import annotations

import json
from collections import Counter
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


# ---- group-by counts (docs/search.md): kubectl's counts through Clusterpedia equal the members' own

GROUP_BY = "search.clusterpedia.io/group-by"
PHASES = {  # pods made in each member's default namespace, given these phases (no kubelet runs them)
    "cluster-1": ["Running", "Running", "Running", "Succeeded", "Failed"],
    "cluster-2": ["Running", "Failed", "Failed"],
}


def _member_counts(pipeline: Pipeline) -> Counter[tuple[str, str, str]]:
    """(cluster, namespace, phase) -> pods, as each member itself lists them."""
    return Counter(
        (name, pod["metadata"]["namespace"], pod.get("status", {}).get("phase", ""))
        for name, cluster in pipeline.members.items()
        for pod in cluster.get_json("pods", "-A")["items"]
    )


def _kubectl_counts(pipeline: Pipeline, selector: str, *args: str) -> tuple[list[str], list[list[str]]]:
    out = kubectl_run(
        kubectl_binary("1.32"),
        pipeline.kubeconfig,
        "--cluster",
        "clusterpedia",
        "get",
        "pods",
        "-l",
        selector,
        *args,
    )
    assert out.stderr == ""
    return parse_table(out.stdout)


def test_group_by_counts_equal_the_members_own(pipeline: Pipeline) -> None:
    for name, phases in PHASES.items():
        member = pipeline.members[name]
        for i, phase in enumerate(phases):
            pod = f"counted-{i}"
            member.apply(
                json.dumps(
                    {
                        "apiVersion": "v1",
                        "kind": "Pod",
                        "metadata": {"name": pod, "namespace": "default"},
                        "spec": {"containers": [{"name": "c", "image": "registry.example/c:1"}]},
                    }
                )
            )
            status = json.dumps({"status": {"phase": phase}})
            member.kubectl(
                "patch", "pod", pod, "-n", "default", "--subresource=status", "--type=merge", "-p", status
            )

    def per_cluster_namespace_phase() -> bool:
        want = _member_counts(pipeline)
        headers, rows = _kubectl_counts(pipeline, f"{GROUP_BY} in (cluster,namespace,status.phase)", "-A")
        # kubectl's -A adds its own NAMESPACE column first, from the group's namespace
        assert headers == ["NAMESPACE", "CLUSTER", "NAMESPACE", "STATUS.PHASE", "COUNT"]
        assert all(r[0] == r[2] for r in rows)
        got = Counter({(r[1], r[2], r[3]): int(r[4]) for r in rows})
        assert got == want, (got, want)
        return True

    wait_for(
        per_cluster_namespace_phase, "group-by counts equal to the members' own", timeout=60, interval=1.0
    )
    want = _member_counts(pipeline)
    assert {c for c, _, p in want if p in ("Failed", "Succeeded")} == {"cluster-1", "cluster-2"}

    headers, rows = _kubectl_counts(pipeline, f"{GROUP_BY}=cluster", "-A")
    assert headers == ["NAMESPACE", "CLUSTER", "COUNT"]
    per_cluster: Counter[str] = Counter()
    for (cluster, _, _), n in want.items():
        per_cluster[cluster] += n
    assert {r[1]: int(r[2]) for r in rows} == per_cluster

    # one namespace, grouped by phase (kubectl -n: no NAMESPACE column of its own), with a label
    # selector beside the group-by: counted pods carry no labels, so "!app" keeps only them
    headers, rows = _kubectl_counts(pipeline, f"{GROUP_BY} in (status.phase,cluster),!app", "-n", "default")
    assert headers == ["STATUS.PHASE", "CLUSTER", "COUNT"]
    expected = Counter((p, c) for c, phases in PHASES.items() for p in phases)
    assert {(r[0], r[1]): int(r[2]) for r in rows} == expected

    # JSON: the GroupCountList (kubectl's -o json cannot print it: it maps every item to a resource
    # its discovery knows, so JSON is read with --raw and the URL form)
    path = "/apis/clusterpedia.io/v1beta1/resources/api/v1/pods?groupBy=namespace"
    out = kubectl_run(
        kubectl_binary("1.32"), pipeline.kubeconfig, "--cluster", "clusterpedia", "get", "--raw", path
    )
    body = json.loads(out.stdout)
    assert (body["kind"], body["groupBy"]) == ("GroupCountList", ["namespace"])
    per_namespace: Counter[str] = Counter()
    for (_, ns, _), n in want.items():
        per_namespace[ns] += n
    assert {i["group"]["namespace"]: i["count"] for i in body["items"]} == per_namespace

    # a bad group field is kubectl's error with the server's message
    bad = kubectl_run(
        kubectl_binary("1.32"),
        pipeline.kubeconfig,
        "--cluster",
        "clusterpedia",
        "get",
        "pods",
        "-A",
        "-l",
        f"{GROUP_BY}=spec..x",
        check=False,
    )
    assert bad.returncode == 1 and 'invalid group field "spec..x"' in bad.stderr
