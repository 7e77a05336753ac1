"""The shared storage suite, group-by counts (``StoreReader.count_groups``) on every registered backend.

The objects of the reader suite (test_reads: widgets with labels, phases, replicas, a JSON null, a
tombstone; an owner chain of deployments, replicasets and pods) are written once per store; every
group-by is checked against a plain-Python count of the same objects (the oracle), with the other
search conditions and the caller's grants applied, and each group's count against the list its
values stand for.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from apiserver.collections import collection_search
from apiserver.types import GroupCount, Search
from common.settings import ApiserverSettings
from common.storage import StorageRejected, Store, UnknownCluster
from common.storage.grouping import json_text
from common.storage.query import Grant
from tests.common.storage.test_reads import (
    CLUSTERS,
    DATA,
    GROUP,
    LIVE_WIDGETS,
    RESOURCE,
    T0,
    VISIBILITY_CASES,
    Obj,
    list_sync,
    register_types,
    search,
    write,
)

P = "search.clusterpedia.io/"


@pytest.fixture(scope="module")
def store(backend: Store) -> Store:
    register_types(
        backend,
        CLUSTERS,
        [
            (GROUP, RESOURCE, "Widget"),
            ("apps", "deployments", "Deployment"),
            ("apps", "replicasets", "ReplicaSet"),
            ("", "pods", "Pod"),
        ],
    )
    write(backend, [o.event() for o in DATA])
    return backend


def groups(store: Store, s: Search, max_groups: int = 1000) -> list[GroupCount]:
    return asyncio.run(store.count_groups(s, max_groups))


def _value(o: Obj, field: str) -> str:
    columns = {"cluster": o.cluster, "namespace": o.namespace, "name": o.name, "kind": o.kind}
    columns |= {"group": o.group, "resource": o.resource}
    if field in columns:
        return columns[field]
    value: Any = {"metadata": {"labels": o.labels(), "name": o.name}, **o.body}
    for seg in field.split("."):
        value = value.get(seg) if isinstance(value, dict) else None
    return json_text(value)


def oracle(fields: list[str], pred: Callable[[Obj], bool] = lambda o: True) -> list[GroupCount]:
    counts = Counter(tuple(_value(o, f) for f in fields) for o in LIVE_WIDGETS if pred(o))
    return [GroupCount(k, n) for k, n in sorted(counts.items())]


@pytest.mark.parametrize(
    ("pairs", "fields", "pred"),
    [
        ([("groupBy", "cluster")], ["cluster"], None),
        ([("labelSelector", f"{P}group-by=namespace")], ["namespace"], None),
        ([("groupBy", "cluster,namespace")], ["cluster", "namespace"], None),
        ([("labelSelector", f"{P}group-by in (status.phase, cluster)")], ["status.phase", "cluster"], None),
        # a JSON null and a missing field group together as "", as a field selector reads them
        ([("groupBy", "spec.nodeName")], ["spec.nodeName"], None),
        ([("groupBy", "spec.replicas,spec.paused")], ["spec.replicas", "spec.paused"], None),
        ([("groupBy", "metadata.labels['tier']")], ["metadata.labels.tier"], None),
        ([("labelSelector", f"{P}group-by=metadata.labels.app")], ["metadata.labels.app"], None),
        ([("groupBy", "metadata.name")], ["name"], None),
        ([("groupBy", "kind,group,resource")], ["kind", "group", "resource"], None),
        # combined with every other condition
        (
            [("groupBy", "status.phase"), ("clusters", "cluster-2")],
            ["status.phase"],
            lambda o: o.cluster == "cluster-2",
        ),
        (
            [("labelSelector", f"{P}group-by=cluster,{P}namespaces notin (default),app in (web, db)")],
            ["cluster"],
            lambda o: o.namespace != "default" and o.labels().get("app") in ("web", "db"),
        ),
        (
            [("groupBy", "namespace"), ("labelSelector", "!tier"), ("fieldSelector", "status.phase=Running")],
            ["namespace"],
            lambda o: "tier" not in o.labels() and o.body["status"]["phase"] == "Running",
        ),
        (
            [("groupBy", "cluster"), ("names", "w-1,w-2"), ("fuzzyName", "-")],
            ["cluster"],
            lambda o: o.name in ("w-1", "w-2"),
        ),
        (
            [("groupBy", "cluster"), ("since", "2024-01-10"), ("before", "2024-01-20")],
            ["cluster"],
            lambda o: "2024-01-10" <= o.created_at.isoformat() < "2024-01-20",
        ),
        ([("groupBy", "cluster"), ("labelSelector", "nope=x")], ["cluster"], lambda o: False),
    ],
)
def test_group_counts(
    store: Store, pairs: list[tuple[str, str]], fields: list[str], pred: Callable[[Obj], bool] | None
) -> None:
    s = search(*pairs)
    got = groups(store, s)
    assert got == oracle(fields, pred or (lambda o: True))
    assert sum(g.count for g in got) == len(list_sync(store, s).items)


def test_each_group_counts_the_list_its_values_select(store: Store) -> None:
    """The count of (cluster, status.phase) = v is the length of the list with those conditions."""
    for g in groups(store, search(("groupBy", "cluster,status.phase"))):
        cluster, phase = g.values
        listed = list_sync(store, search(("clusters", cluster), ("fieldSelector", f"status.phase={phase}")))
        assert len(listed.items) == g.count


def test_path_cluster_and_namespace(store: Store) -> None:
    s = search(("groupBy", "name"), cluster="cluster-1", namespace="kube-system")
    assert groups(store, s) == oracle(
        ["name"], lambda o: o.cluster == "cluster-1" and o.namespace == "kube-system"
    )


def test_owner_conditions(store: Store) -> None:
    s = search(
        ("groupBy", "cluster"), ("ownerUID", "d-web"), ("ownerSeniority", "1"), resource="pods", group=""
    )
    assert groups(store, s) == [GroupCount(("cluster-1",), 3)]


@pytest.mark.parametrize(("grants", "pred"), VISIBILITY_CASES)
def test_only_what_the_caller_may_read_is_counted(
    store: Store, grants: tuple[Grant, ...], pred: Callable[[Obj], bool]
) -> None:
    s = dataclasses.replace(search(("groupBy", "cluster,namespace")), visibility=grants)
    assert groups(store, s) == oracle(["cluster", "namespace"], pred)


def test_collection_groups_by_resource(store: Store) -> None:
    settings = ApiserverSettings(collections={"things": ["widgets.example.com", "deployments.apps", "pods"]})
    parsed = search(("groupBy", "cluster,group,resource"), resource="", group="")
    got = groups(store, collection_search(settings, "things", parsed))
    objects = [o for o in DATA if not o.deleted and o.resource in (RESOURCE, "deployments", "pods")]
    expected = Counter((o.cluster, o.group, o.resource) for o in objects)
    assert got == [GroupCount(k, n) for k, n in sorted(expected.items())]


def test_too_many_groups_is_refused(store: Store) -> None:
    s = search(("groupBy", "cluster,namespace,name"))
    assert len(groups(store, s, max_groups=len(LIVE_WIDGETS))) == len(LIVE_WIDGETS)
    with pytest.raises(StorageRejected, match=r"more than 5 groups: narrow it"):
        groups(store, s, max_groups=5)


def test_unknown_cluster(store: Store) -> None:
    with pytest.raises(UnknownCluster, match='cluster "cluster-9" not found'):
        groups(store, search(("groupBy", "namespace"), ("clusters", "cluster-1,cluster-9")))
    with pytest.raises(UnknownCluster):
        groups(store, search(("groupBy", "namespace"), cluster="cluster-9"))


def test_a_bracketed_path_with_dots_and_a_slash(store: Store) -> None:
    s = search(("groupBy", "metadata.annotations['note.example.com/x'],cluster"), ("clusters", "cluster-1"))
    expected = Counter(
        (o.body["metadata"]["annotations"]["note.example.com/x"], o.cluster)
        for o in LIVE_WIDGETS
        if o.cluster == "cluster-1"
    )
    assert groups(store, s) == [GroupCount(k, n) for k, n in sorted(expected.items())]


def test_edge_values_group_as_field_selectors_compare_them(store: Store) -> None:
    """A missing value, a JSON null and "" are one group; the string "null", numbers, booleans and
    escaped strings are their own, spelled as a field selector compares them."""
    values: list[Any] = ["", None, "null", 0, 0.5, False, True, 'a"b\\c', "Running", "ünï"]
    objects = [
        Obj("cluster-1", "edges.example.com", "edges", "Edge", "ns", f"e-{i}", f"edge-{i}", 1, T0, body=body)
        for i, body in enumerate([{"spec": {"v": v}} for v in values] + [{"spec": {}}, {}])
    ]
    register_types(store, CLUSTERS, [("edges.example.com", "edges", "Edge")])
    write(store, [o.event() for o in objects])
    s = search(("groupBy", "spec.v"), group="edges.example.com", resource="edges")
    assert groups(store, s) == [
        GroupCount(("",), 4),
        GroupCount(("0",), 1),
        GroupCount(("0.5",), 1),
        GroupCount(("Running",), 1),
        GroupCount(('a"b\\c',), 1),
        GroupCount(("false",), 1),
        GroupCount(("null",), 1),
        GroupCount(("true",), 1),
        GroupCount(("ünï",), 1),
    ]
    # the bound counts groups, not the spellings a store reads them in (on MySQL/MariaDB a missing
    # value, null and "" are three JSON texts of one group: read again, exactly, at the bound)
    assert len(groups(store, s, max_groups=9)) == 9
    with pytest.raises(StorageRejected, match="more than 8 groups"):
        groups(store, s, max_groups=8)
    for g in groups(store, s):
        (value,) = g.values
        escaped = value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")
        listed = search(("fieldSelector", f"spec.v={escaped}"), group="edges.example.com", resource="edges")
        assert len(list_sync(store, listed).items) == g.count, value
