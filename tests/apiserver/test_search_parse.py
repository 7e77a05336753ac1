"""Parsing kubectl requests into a Search: the good inputs the seed shows, and a table of bad ones
that must each be a 400 Status with a message that says what is wrong."""

from __future__ import annotations

import datetime as dt

import pytest

from apiserver.search import decode_continue, encode_continue, parse_search
from apiserver.types import (
    Continue,
    FieldRequirement,
    GroupResource,
    LabelRequirement,
    Operator,
    OrderBy,
    Search,
)
from common.errors import BadRequest

P = "search.clusterpedia.io/"


def parse(
    *pairs: tuple[str, str], cluster: str = "", namespace: str = "", max_page_size: int = 10000
) -> Search:
    return parse_search(
        list(pairs),
        group="apps",
        version="v1",
        resource="deployments",
        cluster=cluster,
        namespace=namespace,
        max_page_size=max_page_size,
    )


def test_seed_label_selector_conditions() -> None:
    s = parse(
        (
            "labelSelector",
            f"{P}clusters in (cluster-1, cluster-2),{P}namespaces in (kube-system,default),{P}orderby=name",
        )
    )
    assert s.clusters.include == ("cluster-1", "cluster-2")
    assert s.namespaces.include == ("kube-system", "default")
    assert s.orderby == (OrderBy("name"),)
    assert s.labels == ()
    assert (s.group, s.version, s.resource) == ("apps", "v1", "deployments")


def test_seed_url_query_conditions() -> None:
    s = parse(
        ("names", "pod-1,pod-2"),
        ("namespaces", "kube-system,default"),
        ("clusters", "cluster-1,cluster-2"),
        ("orderby", "name desc,namespace"),
        ("size", "100"),
        ("offset", "10"),
    )
    assert s.names.include == ("pod-1", "pod-2")
    assert s.namespaces.include == ("kube-system", "default")
    assert s.clusters.include == ("cluster-1", "cluster-2")
    assert s.orderby == (OrderBy("name", True), OrderBy("namespace"))
    assert (s.size, s.offset, s.limit) == (100, 10, None)
    assert s.offset_paging and s.page_size == 100


@pytest.mark.parametrize("op", ["=", "=="])
def test_equality_operators_and_exclusions(op: str) -> None:
    s = parse(
        ("labelSelector", f"{P}clusters{op}a,{P}names!=x,{P}namespaces notin (kube-system, kube-public)")
    )
    assert s.clusters.include == ("a",)
    assert s.names.include is None and s.names.exclude == ("x",)
    assert s.namespaces.exclude == ("kube-system", "kube-public")


def test_label_and_query_conditions_intersect() -> None:
    s = parse(("labelSelector", f"{P}clusters in (a,b,c)"), ("clusters", "b,c,d"))
    assert s.clusters.include == ("b", "c")


def test_orderby_label_forms() -> None:
    s = parse(("labelSelector", f"{P}orderby in (name_desc, namespace, created_at_desc, resource_version)"))
    assert s.orderby == (
        OrderBy("name", True),
        OrderBy("namespace"),
        OrderBy("created_at", True),
        OrderBy("resource_version"),
    )


def test_ordinary_labels_are_label_requirements() -> None:
    s = parse(
        ("labelSelector", "app=web,tier!=db,env in (a, b),zone notin (x),app.kubernetes.io/name,!legacy")
    )
    assert s.labels == (
        LabelRequirement("app", Operator.EQUALS, ("web",)),
        LabelRequirement("tier", Operator.NOT_EQUALS, ("db",)),
        LabelRequirement("env", Operator.IN, ("a", "b")),
        LabelRequirement("zone", Operator.NOT_IN, ("x",)),
        LabelRequirement("app.kubernetes.io/name", Operator.EXISTS, ()),
        LabelRequirement("legacy", Operator.DOES_NOT_EXIST, ()),
    )


def test_field_selectors() -> None:
    s = parse(
        (
            "fieldSelector",
            "metadata.name=a,status.phase!=Running,spec.replicas==3,"
            "metadata.annotations['deployment.kubernetes.io/revision']=2,metadata.labels[\"app\"] in (x, y)",
        )
    )
    assert s.fields == (
        FieldRequirement(("metadata", "name"), Operator.EQUALS, ("a",)),
        FieldRequirement(("status", "phase"), Operator.NOT_EQUALS, ("Running",)),
        FieldRequirement(("spec", "replicas"), Operator.EQUALS, ("3",)),
        FieldRequirement(
            ("metadata", "annotations", "deployment.kubernetes.io/revision"), Operator.EQUALS, ("2",)
        ),
        FieldRequirement(("metadata", "labels", "app"), Operator.IN, ("x", "y")),
    )


def test_field_selector_escapes() -> None:
    s = parse(("fieldSelector", r"metadata.annotations['note']=a\,b\=c"))
    assert s.fields[0].values == ("a,b=c",)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2024-03-04T05:06:07Z", dt.datetime(2024, 3, 4, 5, 6, 7)),
        ("2024-03-04T05:06:07.123456789+02:00", dt.datetime(2024, 3, 4, 3, 6, 7, 123456)),
        ("2024-03-04", dt.datetime(2024, 3, 4)),
        ("1709528767", dt.datetime(2024, 3, 4, 5, 6, 7)),
        ("1709528767000", dt.datetime(2024, 3, 4, 5, 6, 7)),
    ],
)
def test_since_before_formats(raw: str, expected: dt.datetime) -> None:
    s = parse(("since", raw), ("labelSelector", f"{P}before={raw}"))
    assert s.since == expected and s.before == expected


def test_owner_conditions() -> None:
    s = parse(("ownerUID", "1f0e-aa"), ("ownerSeniority", "2"))
    assert (s.owner_uid, s.owner_seniority) == ("1f0e-aa", 2)
    s = parse(("ownerName", "web"), ("ownerGR", "deployments.apps"), ("ownerSeniority", "1"), cluster="c1")
    assert (s.owner_name, s.owner_gr, s.owner_seniority) == ("web", GroupResource("apps", "deployments"), 1)
    s = parse(("labelSelector", f"{P}owner-name=web,{P}owner-gr=replicasets.apps,{P}clusters=c1"))
    assert s.owner_gr == GroupResource("apps", "replicasets") and s.clusters.include == ("c1",)


def test_fuzzy_name_both_keys() -> None:
    assert parse(("labelSelector", "internalstorage.clusterpedia.io/fuzzy-name=dns")).fuzzy_name == "dns"
    assert parse(("labelSelector", f"{P}fuzzy-name=core")).fuzzy_name == "core"
    assert parse(("fuzzyName", "kube_")).fuzzy_name == "kube_"


def test_flags_and_kubectl_paging() -> None:
    s = parse(
        ("limit", "500"), ("withContinue", "true"), ("withRemainingCount", ""), ("onlyMetadata", "false")
    )
    assert (s.limit, s.with_continue, s.with_remaining_count, s.only_metadata) == (500, True, True, False)
    assert not s.offset_paging and s.page_size == 500
    assert parse(("limit", "0")).limit is None  # kube-apiserver: 0 means no limit
    assert parse(("labelSelector", f"{P}limit=5")).size == 5  # the original's synonym of size


def test_unknown_query_parameters_are_ignored() -> None:
    s = parse(("timeout", "32s"), ("resourceVersion", "0"), ("includeObject", "Object"), ("pretty", "true"))
    assert s == Search(group="apps", version="v1", resource="deployments")


def test_path_cluster_and_namespace() -> None:
    s = parse(cluster="cluster-1", namespace="kube-system")
    assert (s.single_cluster, s.namespace) == ("cluster-1", "kube-system")


def test_continue_token_round_trip() -> None:
    keyset = Continue(
        key=("c1", "default", "web", 12), order=("cluster", "namespace", "name", "-resource_version")
    )
    assert decode_continue(encode_continue(keyset)) == keyset
    offset = Continue(offset=30, resource_version="77")
    assert decode_continue(encode_continue(offset)) == offset
    assert parse(("continue", encode_continue(offset))).continue_token == offset


def _forged(body: str) -> str:
    import base64

    return base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")


BAD_INPUTS: list[tuple[list[tuple[str, str]], str]] = [
    # malformed selectors
    ([("labelSelector", "app in (a,b")], "unable to parse requirement"),
    ([("labelSelector", "app in ()")], "values set can't be empty"),
    ([("labelSelector", "=web")], "unable to parse requirement: found '=', expected: identifier"),
    ([("labelSelector", "app=web,")], "unable to parse requirement"),
    ([("labelSelector", "app web")], "unable to parse requirement"),
    ([("labelSelector", "-bad-key=1")], 'invalid label key "-bad-key"'),
    ([("labelSelector", "app=-bad-")], 'invalid label value "-bad-"'),
    ([("labelSelector", "replicas>3")], "operator '>' is not supported"),
    ([("labelSelector", f"{P}colors=red")], f'unknown search condition "{P}colors"'),
    ([("labelSelector", f"{P}clusters")], "needs a value"),
    ([("labelSelector", f"{P}size in (1,2)")], "supports only = and =="),
    ([("fieldSelector", "status.phase")], "expected one of =, ==, !=, in, notin"),
    ([("fieldSelector", "status..phase=x")], 'invalid field path "status..phase"'),
    ([("fieldSelector", "metadata.annotations[a]=x")], "expected a quoted key"),
    ([("fieldSelector", "status.phase=a=b")], 'unescaped "="'),
    ([("fieldSelector", "spec.x=1,")], "empty requirement"),
    # unknown fields and injection attempts in orderby
    ([("orderby", "color")], 'unknown orderby field "color"'),
    ([("orderby", "name; DROP TABLE resources")], 'unknown orderby field "name;"'),
    ([("orderby", "name desc desc")], 'invalid orderby "name desc desc"'),
    ([("orderby", "(select 1)")], 'unknown orderby field "(select'),
    ([("labelSelector", f"{P}orderby=created_at_sideways")], 'unknown orderby field "created_at_sideways"'),
    ([("orderby", "name,name desc")], 'orderby field "name" is given twice'),
    # injection attempts in names / namespaces / clusters / fuzzy / field paths
    ([("names", "x'; DROP TABLE resources; --")], "not a valid Kubernetes name"),
    ([("namespaces", "default OR 1=1")], "not a valid Kubernetes name"),
    ([("clusters", 'a"b')], "not a valid Kubernetes name"),
    ([("fuzzyName", "%' OR '1'='1")], "invalid fuzzyName"),
    ([("fieldSelector", "metadata.annotations['a\\'] OR 1=1 --']=x")], "invalid field path"),
    ([("fieldSelector", "status.phase');DROP TABLE resources;--=x")], "invalid field path"),
    # sizes
    ([("size", "-1")], 'invalid value "-1" for size: expected a non-negative integer'),
    ([("size", "10001")], "invalid value 10001 for size: must be at most 10000"),
    ([("limit", "99999999999999999999999")], "expected a non-negative integer"),
    ([("offset", "ten")], 'invalid value "ten" for offset'),
    ([("offset", "1e3")], "expected a non-negative integer"),
    ([("labelSelector", f"{P}size=-5")], "expected a non-negative integer"),
    ([("size", "1"), ("labelSelector", f"{P}size=2")], "given twice"),
    # times, owners, flags
    ([("since", "yesterday")], 'invalid value "yesterday" for since'),
    ([("before", "2024-13-45")], 'invalid value "2024-13-45" for before'),
    ([("ownerName", "web")], "ownerName needs exactly one cluster"),
    ([("ownerName", "web"), ("clusters", "a,b")], "ownerName needs exactly one cluster"),
    ([("ownerUID", "u1"), ("ownerName", "web"), ("clusters", "a")], "cannot be used together"),
    ([("ownerSeniority", "1")], "ownerSeniority needs ownerUID or ownerName"),
    ([("ownerUID", "u1"), ("ownerSeniority", "-1")], "expected a non-negative integer"),
    ([("ownerUID", "u1"), ("ownerSeniority", "99")], "must be at most 8"),
    ([("ownerGR", "deployments.apps")], "ownerGR needs ownerName"),
    (
        [("ownerName", "w"), ("ownerGR", "Deployments/apps"), ("clusters", "a")],
        'invalid ownerGR "Deployments/apps"',
    ),
    ([("ownerUID", "' OR 1=1")], "invalid ownerUID"),
    ([("withContinue", "maybe")], 'invalid value "maybe" for withContinue'),
    # bad continue tokens
    ([("continue", "not-a-token!")], "invalid continue token"),
    ([("continue", _forged("{}"))], "invalid continue token: unknown token version"),
    ([("continue", _forged('{"v":2,"s":"","o":["name"],"k":["a","b"]}'))], "invalid continue token: bad key"),
    ([("continue", _forged('{"v":2,"s":"","o":["object"],"k":["x"]}'))], "invalid continue token: bad key"),
    (
        [("continue", _forged('{"v":2,"s":"","o":["resource_version"],"k":["1; DROP"]}'))],
        "invalid continue token",
    ),
    ([("continue", _forged('{"v":2,"s":"","off":-3}'))], "invalid continue token: bad offset"),
    (
        [("continue", _forged('{"v":2,"s":"","off":3,"rv":"x"}'))],
        "invalid continue token: bad resourceVersion",
    ),
    ([("continue", _forged("[1,2]"))], "invalid continue token"),
    ([("continue", _forged('{"v":2,"s":7,"off":3}'))], "invalid continue token: bad scope"),
    ([("continue", _forged('{"v":1,"off":3}'))], "issued by an earlier version of this server"),
    (
        [("continue", _forged('{"v":2,"s":"","off":100000000000000000000}'))],
        "invalid continue token: bad offset",
    ),
    (
        [("continue", _forged('{"v":2,"s":"","o":["resource_version"],"k":[99999999999999999999999]}'))],
        "invalid continue token: bad key",
    ),
    # sizes of selectors (a store's expression limit must never surface as a 5xx)
    ([("labelSelector", ",".join(f"k{i}=v" for i in range(101)))], "too many selector requirements"),
    ([("names", ",".join(f"n{i}" for i in range(1001)))], "too many values"),
    ([("labelSelector", "k in (" + ",".join(f"v{i}" for i in range(1001)) + ")")], "too many values"),
]


@pytest.mark.parametrize(("query", "message"), BAD_INPUTS, ids=[str(q) for q, _ in BAD_INPUTS])
def test_bad_inputs_are_400_with_a_clear_message(query: list[tuple[str, str]], message: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse(*query)
    status = info.value.status()
    assert status["code"] == 400 and status["reason"] == "BadRequest" and status["kind"] == "Status"
    assert message in status["message"], status["message"]


@pytest.mark.parametrize(("cluster", "namespace"), [("c'1", ""), ("", "ns;drop")])
def test_bad_path_segments_are_400(cluster: str, namespace: str) -> None:
    with pytest.raises(BadRequest):
        parse(cluster=cluster, namespace=namespace)


def test_huge_page_size_bound_is_configurable() -> None:
    assert parse(("size", "50"), max_page_size=50).size == 50
    with pytest.raises(BadRequest, match="must be at most 50"):
        parse(("size", "51"), max_page_size=50)


def test_a_huge_limit_is_clamped_like_kubectl_expects() -> None:
    """kube-apiserver never rejects a large limit (kubectl --chunk-size=20000); continue covers the rest."""
    assert parse(("limit", "51"), max_page_size=50).limit == 50
    assert parse(("limit", "20000")).limit == 10000


def test_cluster_path_and_clusters_condition() -> None:
    assert parse(("clusters", "c1"), cluster="c1").single_cluster == "c1"
    for query in (("clusters", "c2"), ("labelSelector", f"{P}clusters notin (c1)")):
        with pytest.raises(BadRequest, match="contradicts the cluster path"):
            parse(query, cluster="c1")
