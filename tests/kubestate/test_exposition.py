"""The exposition a collection writes: upstream kube-state-metrics' names, types, HELP texts, label
sets and values, plus ``cluster``; parsed with prometheus_client's parser. On the memory backend
(the storage suite of every backend is test_store_backends.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from pathlib import Path

import pytest

from common.storage import ListPage, ServedResource, Store, UnknownCluster, open_store
from common.storage.query import Search
from kubestate.families import RESOURCES, parse_quantity, select
from tests.kubestate.objects import fleet_events, pod, resource_types, upsert
from tests.kubestate.support import parse, run_collect, samples, value


@pytest.fixture
def store() -> Store:
    s = open_store(f"memory://ksm-{uuid.uuid4().hex}")
    s.migrate()
    ups, types = fleet_events()
    s.apply(ups, [], types)
    return s


def test_families_match_upstream(store: Store, tmp_path: Path) -> None:
    done, text = run_collect(store, tmp_path)
    fams = parse(text)
    expected = {f.name: f for r in RESOURCES for f in r.families}
    # prometheus_client names a counter family without its _total suffix
    assert set(fams) == {n.removesuffix("_total") for n in expected}
    for name, fam in expected.items():
        parsed = fams[name.removesuffix("_total")]
        assert parsed.type == fam.type
        assert parsed.documentation == fam.help
        for s in parsed.samples:
            assert set(s.labels) == {"cluster", *fam.labels}, (name, s.labels)
    assert fams["kube_pod_status_phase"].documentation == "The pods current phase."
    assert fams["kube_pod_container_status_restarts"].type == "counter"
    assert done.objects == 16 and done.skipped == 0 and not done.truncated
    assert done.series == len(samples(fams))


def test_values(store: Store, tmp_path: Path) -> None:
    _, text = run_collect(store, tmp_path)
    s = samples(parse(text))
    pod_a = {"namespace": "shop", "pod": "web-1-a", "uid": "uid-shop-web-1-a"}
    for cluster, restarts in (("east", 3), ("west", 4)):
        assert (
            value(
                s,
                "kube_pod_info",
                cluster=cluster,
                **pod_a,
                host_ip="10.0.0.1",
                pod_ip="10.1.0.5",
                node="node-a",
                created_by_kind="ReplicaSet",
                created_by_name="web-1",
                priority_class="",
                host_network="false",
            )
            == 1
        )
        for phase in ("Pending", "Succeeded", "Failed", "Running", "Unknown"):
            assert value(s, "kube_pod_status_phase", cluster=cluster, **pod_a, phase=phase) == (
                phase == "Running"
            )
        assert value(s, "kube_pod_status_ready", cluster=cluster, **pod_a, condition="true") == 1
        assert value(s, "kube_pod_status_ready", cluster=cluster, **pod_a, condition="false") == 0
        assert (
            value(s, "kube_pod_container_status_restarts_total", cluster=cluster, **pod_a, container="app")
            == restarts
        )
    c = len(s)
    # the pending pod: its phase, no ready condition, no container statuses
    pending = {"cluster": "east", "namespace": "shop", "pod": "web-1-b", "uid": "uid-shop-web-1-b"}
    assert value(s, "kube_pod_status_phase", **pending, phase="Pending") == 1
    assert not [k for k in s if k[0] == "kube_pod_status_ready" and ("pod", "web-1-b") in k[1]]

    dep = {"cluster": "west", "namespace": "shop", "deployment": "web"}
    assert value(s, "kube_deployment_spec_replicas", **dep) == 3
    assert value(s, "kube_deployment_status_replicas_available", **dep) == 3
    assert value(s, "kube_deployment_status_replicas_unavailable", **dep) == 0
    assert value(s, "kube_deployment_status_replicas_updated", **dep) == 3
    assert (
        value(
            s, "kube_deployment_status_replicas_available", cluster="east", namespace="shop", deployment="web"
        )
        == 2
    )
    sts = {"cluster": "east", "namespace": "shop", "statefulset": "db"}
    assert value(s, "kube_statefulset_replicas", **sts) == 2
    assert value(s, "kube_statefulset_status_replicas_ready", **sts) == 1
    assert value(s, "kube_statefulset_status_replicas_available", **sts) == 0
    ds = {"cluster": "east", "namespace": "kube-system", "daemonset": "agent"}
    assert value(s, "kube_daemonset_status_desired_number_scheduled", **ds) == 2
    assert value(s, "kube_daemonset_status_number_ready", **ds) == 1
    assert value(s, "kube_daemonset_status_number_misscheduled", **ds) == 0

    node = {"cluster": "west", "node": "node-a"}
    assert value(s, "kube_node_status_condition", **node, condition="Ready", status="true") == 1
    assert value(s, "kube_node_status_condition", **node, condition="Ready", status="false") == 0
    assert value(s, "kube_node_status_condition", **node, condition="MemoryPressure", status="false") == 1
    assert value(s, "kube_node_spec_unschedulable", **node) == 0
    alloc = "kube_node_status_allocatable"
    assert value(s, alloc, **node, resource="cpu", unit="core") == 3.8
    assert value(s, alloc, **node, resource="memory", unit="byte") == 16 * 2**30
    assert value(s, alloc, **node, resource="pods", unit="integer") == 110
    assert value(s, alloc, **node, resource="ephemeral_storage", unit="byte") == 100e9
    assert value(s, alloc, **node, resource="nvidia_com_gpu", unit="integer") == 2
    info = [k for k in s if k[0] == "kube_node_info" and ("cluster", "west") in k[1]]
    assert len(info) == 1 and dict(info[0][1])["internal_ip"] == "192.168.0.10"
    assert dict(info[0][1])["kubelet_version"] == "v1.32.0"

    assert value(s, "kube_namespace_status_phase", cluster="east", namespace="old", phase="Terminating") == 1
    assert value(s, "kube_namespace_status_phase", cluster="east", namespace="old", phase="Active") == 0
    assert c == len(s)


def test_hostile_values_are_escaped_and_bad_objects_skipped(tmp_path: Path) -> None:
    """A member controls every label value: quotes, backslashes and newlines stay inside their
    label; an object whose JSON does not fit the shape is left out (and counted), not fatal."""
    store = open_store(f"memory://ksm-{uuid.uuid4().hex}")
    evil = pod("ns", "evil", phase="Running")
    evil["spec"]["priorityClassName"] = 'a"b\\c\nd} 1\nkube_pod_info{x="y'
    broken = pod("ns", "broken")
    broken["status"] = {"phase": 7}
    store.apply(
        [upsert('c"1', "", "pods", broken), upsert('c"1', "", "pods", evil)],
        [],
        resource_types('c"1'),
    )
    done, text = run_collect(store, tmp_path, resources=select(["pods"]))
    s = samples(parse(text))
    info = [dict(k[1]) for k in s if k[0] == "kube_pod_info"]
    assert info == [
        {
            "cluster": 'c"1',
            "namespace": "ns",
            "pod": "evil",
            "uid": "uid-ns-evil",
            "host_ip": "",
            "pod_ip": "",
            "node": "node-a",
            "created_by_kind": "ReplicaSet",
            "created_by_name": "web-1",
            "priority_class": 'a"b\\c\nd} 1\nkube_pod_info{x="y',
            "host_network": "false",
        }
    ]
    assert done.objects == 1 and done.skipped == 1


def test_max_series_truncates(store: Store, tmp_path: Path) -> None:
    full, _ = run_collect(store, tmp_path)
    done, text = run_collect(store, tmp_path, max_series=20)
    assert done.truncated and 0 < done.series <= 20 < full.series
    fams = parse(text)  # still a valid exposition, every family present (some empty)
    assert len(samples(fams)) == done.series
    assert "kube_namespace_status_phase" in fams and not fams["kube_namespace_status_phase"].samples


def test_small_pages_give_the_same_output(store: Store, tmp_path: Path) -> None:
    _, one_page = run_collect(store, tmp_path)
    _, pages = run_collect(store, tmp_path, page_rows=1)
    assert pages == one_page


def test_select_refuses_unknown_resources() -> None:
    assert [r.key for r in select(["nodes", "pods"])] == ["pods", "nodes"]
    with pytest.raises(ValueError, match="unknown ingresses"):
        select(["pods", "ingresses"])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3800m", 3.8),
        ("16Gi", 16 * 2**30),
        ("110", 110),
        ("1e3", 1000),
        ("1.5k", 1500),
        ("500n", 5e-7),
        ("2Ki", 2048),
        ("many", None),
        ("", None),
        ("12Xi", None),
    ],
)
def test_parse_quantity(text: str, expected: float | None) -> None:
    assert parse_quantity(text) == expected


class CatalogAhead:
    """A reader whose catalog still names a cluster that is gone by the time it is listed (a
    PediaCluster deleted mid-collection): the store's own answers, one cluster added."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def resource_types(self) -> list[ServedResource]:
        served = await self.store.resource_types()
        ghost = dataclasses.replace(served[0], cluster="deleted-meanwhile")
        return [*served, ghost]

    async def list_objects(self, search: Search) -> ListPage:
        return await self.store.list_objects(search)


def test_a_cluster_gone_mid_collection_is_skipped(store: Store, tmp_path: Path) -> None:
    _, expected = run_collect(store, tmp_path)
    with pytest.raises(UnknownCluster):
        asyncio.run(store.list_objects(Search(resource="pods", single_cluster="deleted-meanwhile")))
    done, text = run_collect(CatalogAhead(store), tmp_path)  # type: ignore[arg-type]
    assert text == expected and done.objects == 16
