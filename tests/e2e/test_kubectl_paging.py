"""kubectl paging and bad input against the real API tier (no member clusters needed).

``kubectl get --chunk-size=7`` over 130+ objects in two clusters returns every object that exists
throughout exactly once while a writer keeps updating and adding objects; bad search conditions given
through kubectl come back as 4xx Status errors that kubectl prints with their message.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from common.storage import Store, open_store
from harness.paths import KUBECTL_VERSIONS, kubectl_binary
from tests.apiserver.storefill import add_objects, add_type
from tests.e2e.kubectl_support import ApiTier, kubectl_run

pytestmark = pytest.mark.e2e

PER_CLUSTER = 70
NAMESPACES = ("alpha", "beta", "gamma")


def configmap(name: str, ns: str, rv: int) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": ns,
            "resourceVersion": str(rv),
            "creationTimestamp": "2025-06-01T00:00:00Z",
            "labels": {"batch": "initial"},
        },
        "data": {"rv": str(rv)},
    }


@dataclass
class Served:
    store: Store
    api: ApiTier
    kubeconfig: Path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    workdir = tmp_path_factory.mktemp("paging")
    url = f"sqlite:///{workdir / 'store.db'}"
    store = open_store(url)
    store.migrate()
    for cluster in ("cluster-1", "cluster-2"):
        add_type(store, cluster, "", "v1", "configmaps", "ConfigMap", short_names=["cm"])
        objs = [configmap(f"cm-{i:03d}", NAMESPACES[i % 3], 10 + i) for i in range(PER_CLUSTER)]
        add_objects(store, cluster, "", "v1", "configmaps", objs)
    api = ApiTier(workdir, url).start()
    try:
        yield Served(store, api, api.kubeconfig(workdir / "kubeconfig", ["cluster-1", "cluster-2"]))
    finally:
        api.stop()
        store.close()


def _keep_writing(store: Store, stop: threading.Event, max_batches: int = 100) -> int:
    """Update existing objects (new resourceVersions) and add new ones until told to stop."""
    batches = 0
    rv = 10_000
    while not stop.is_set() and batches < max_batches:
        rv += 1
        i = batches % PER_CLUSTER
        add_objects(
            store, "cluster-1", "", "v1", "configmaps", [configmap(f"cm-{i:03d}", NAMESPACES[i % 3], rv)]
        )
        add_objects(
            store, "cluster-2", "", "v1", "configmaps", [configmap(f"new-{batches:03d}", "alpha", rv)]
        )
        batches += 1
        stop.wait(0.01)
    return batches


@pytest.mark.parametrize("version", KUBECTL_VERSIONS)
def test_chunked_list_returns_each_object_once_while_writes_continue(served: Served, version: str) -> None:
    stop = threading.Event()
    result: list[int] = []
    writer = threading.Thread(target=lambda: result.append(_keep_writing(served.store, stop)))
    writer.start()
    try:
        out = kubectl_run(
            kubectl_binary(version),
            served.kubeconfig,
            "get",
            "configmaps",
            "-A",
            "--chunk-size=7",
            "-o",
            "json",
        ).stdout
    finally:
        stop.set()
        writer.join(timeout=30)
    assert result and result[0] > 0, "the writer did not run during the list"
    items = json.loads(out)["items"]
    keys = Counter(
        (
            i["metadata"]["annotations"]["shadow.clusterpedia.io/cluster-name"],
            i["metadata"]["namespace"],
            i["metadata"]["name"],
        )
        for i in items
    )
    assert max(keys.values()) == 1, [k for k, n in keys.items() if n > 1]
    for cluster in ("cluster-1", "cluster-2"):
        for i in range(PER_CLUSTER):
            assert (cluster, NAMESPACES[i % 3], f"cm-{i:03d}") in keys


def test_chunked_table_with_search_conditions(served: Served) -> None:
    out = kubectl_run(
        kubectl_binary("1.32"),
        served.kubeconfig,
        "get",
        "cm",
        "-n",
        "beta",
        "--chunk-size=7",
        "-l",
        "search.clusterpedia.io/clusters=cluster-2,search.clusterpedia.io/orderby=name_desc",
    ).stdout
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["CLUSTER", "NAME", "DATA"]
    names = [line.split()[1] for line in lines[1:]]
    expected = sorted(
        (f"cm-{i:03d}" for i in range(PER_CLUSTER) if NAMESPACES[i % 3] == "beta"), reverse=True
    )
    assert names == expected
    assert {line.split()[0] for line in lines[1:]} == {"cluster-2"}


BAD = [
    (["-l", "search.clusterpedia.io/orderby=uid"], "BadRequest", "orderby"),
    (["-l", "search.clusterpedia.io/orderby=name;drop table resources"], "BadRequest", ""),
    (["-l", "search.clusterpedia.io/size=-1"], "BadRequest", "size"),
    (["-l", "search.clusterpedia.io/offset=99999999999999999999"], "BadRequest", "offset"),
    (["-l", "search.clusterpedia.io/clusters in (cluster-9)"], "NotFound", "cluster-9"),
    (["--field-selector", "metadata.name~=x"], "BadRequest", ""),
]


@pytest.mark.parametrize(("args", "reason", "words"), BAD)
def test_bad_search_conditions_are_4xx_with_a_message(
    served: Served, args: list[str], reason: str, words: str
) -> None:
    proc = kubectl_run(kubectl_binary("1.32"), served.kubeconfig, "get", "cm", "-A", *args, check=False)
    assert proc.returncode != 0
    assert f"Error from server ({reason})" in proc.stderr, proc.stderr
    assert words in proc.stderr


def test_unknown_cluster_and_unserved_verbs(served: Served) -> None:
    kubectl = kubectl_binary("1.32")
    kc = served.kubeconfig
    proc = kubectl_run(
        kubectl,
        kc,
        "get",
        "--raw",
        "/apis/clusterpedia.io/v1beta1/resources/clusters/nope/api/v1/configmaps",
        check=False,
    )
    assert proc.returncode != 0 and 'cluster "nope" not found' in proc.stderr, proc.stderr
    proc = kubectl_run(
        kubectl, kc, "--cluster", "cluster-1", "delete", "cm", "cm-000", "-n", "alpha", check=False
    )
    assert proc.returncode != 0 and "MethodNotAllowed" in proc.stderr
    # a watch is served (tests/e2e/test_watch_kubectl.py): the list, then the stream until the timeout
    proc = kubectl_run(kubectl, kc, "get", "cm", "-A", "--watch", "--request-timeout=3s", check=False)
    assert proc.returncode == 0 and "cm-000" in proc.stdout, proc.stderr
