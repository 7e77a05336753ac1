"""Group-by counts through the HTTP surface (every storage backend): the JSON list and the Table
kubectl prints, paging with limit and continue, collections, and every refusal as a Status.

What the counts are on each store is tests/common/storage/test_grouping.py; kubectl against real
members is tests/e2e/test_kubectl_insight.py.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from apiserver.app import build_app
from common.settings import ApiserverSettings, Settings
from common.storage import Store
from tests.apiserver.storefill import add_objects, add_type

R = "/apis/clusterpedia.io/v1beta1/resources"
PODS = f"{R}/api/v1/pods"
TABLE = (
    "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,"
    "application/json"
)
GB = "search.clusterpedia.io/group-by"

PHASES = {  # cluster -> namespace -> phases of its pods
    "cluster-1": {"default": ["Running", "Running", "Pending"], "kube-system": ["Running"]},
    "cluster-2": {"default": ["Succeeded"], "kube-system": ["Running", "Running"]},
}


def pod(name: str, ns: str, phase: str, app: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": {"app.kubernetes.io/name": app}},
        "spec": {"nodeName": "node-1"},
        "status": {"phase": phase},
    }


@pytest.fixture(scope="module")
def store(backend: Store) -> Store:
    for cluster, namespaces in PHASES.items():
        add_type(backend, cluster, "", "v1", "pods", "Pod")
        add_type(backend, cluster, "apps", "v1", "deployments", "Deployment")
        pods = [
            pod(f"p-{i}", ns, phase, "web" if i % 2 else "db")
            for ns, phases in namespaces.items()
            for i, phase in enumerate(phases)
        ]
        add_objects(backend, cluster, "", "v1", "pods", pods)
        deployment = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "d", "namespace": "a"},
        }
        add_objects(backend, cluster, "apps", "v1", "deployments", [deployment])
    return backend


@pytest.fixture(scope="module")
def app(store: Store, backend_url: str) -> Any:
    settings = ApiserverSettings(authorization_mode="host-only", max_groups=5)
    return build_app(Settings(storage=backend_url, apiserver=settings), store)


def call(app: Any, path: str, accept: str = "") -> httpx.Response:
    async def go() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://t") as c:
            return await c.get(path, headers={"accept": accept} if accept else {})

    return asyncio.run(go())


def counts(fields: tuple[str, ...]) -> list[tuple[tuple[str, ...], int]]:
    found: dict[tuple[str, ...], int] = {}
    for cluster, namespaces in PHASES.items():
        for ns, phases in namespaces.items():
            for phase in phases:
                values = {"cluster": cluster, "namespace": ns, "status.phase": phase}
                key = tuple(values[f] for f in fields)
                found[key] = found.get(key, 0) + 1
    return sorted(found.items())


def test_json_list_shape(app: Any) -> None:
    resp = call(app, f"{PODS}?groupBy=cluster,status.phase")
    assert resp.status_code == 200 and resp.headers["content-type"] == "application/json"
    body = resp.json()
    assert (body["kind"], body["apiVersion"], body["metadata"]) == (
        "GroupCountList",
        "clusterpedia.io/v1beta1",
        {},
    )
    assert body["groupBy"] == ["cluster", "status.phase"]
    assert body["items"] == [
        {
            "kind": "GroupCount",
            "apiVersion": "clusterpedia.io/v1beta1",
            "group": {"cluster": cluster, "status.phase": phase},
            "count": n,
        }
        for (cluster, phase), n in counts(("cluster", "status.phase"))
    ]


def test_table_from_the_label_selector(app: Any) -> None:
    selector = quote(f"{GB} in (namespace,cluster)")
    resp = call(app, f"{PODS}?labelSelector={selector}&limit=500", TABLE)
    assert resp.headers["content-type"] == "application/json;as=Table;v=v1;g=meta.k8s.io"
    table = resp.json()
    assert table["kind"] == "Table"
    assert [(c["name"], c["type"]) for c in table["columnDefinitions"]] == [
        ("namespace", "string"),
        ("cluster", "string"),
        ("Count", "integer"),
    ]
    assert [(tuple(r["cells"][:2]), r["cells"][2]) for r in table["rows"]] == counts(("namespace", "cluster"))
    # kubectl -A prints the row object's namespace in its own NAMESPACE column
    assert [r["object"]["metadata"] for r in table["rows"]] == [
        {"namespace": ns} for (ns, _), _ in counts(("namespace", "cluster"))
    ]
    bare = call(app, f"{PODS}?groupBy=cluster&includeObject=None&noHeaders=true", TABLE).json()
    assert bare["columnDefinitions"] == [] and all("object" not in r for r in bare["rows"])


def test_conditions_and_paths_apply(app: Any) -> None:
    body = call(app, f"{R}/clusters/cluster-1/api/v1/namespaces/default/pods?groupBy=status.phase").json()
    assert [(i["group"]["status.phase"], i["count"]) for i in body["items"]] == [
        ("Pending", 1),
        ("Running", 2),
    ]
    label = quote("metadata.labels['app.kubernetes.io/name']")
    body = call(app, f"{PODS}?groupBy={label}&fieldSelector=status.phase%3DRunning").json()
    assert body["groupBy"] == ["metadata.labels['app.kubernetes.io/name']"]
    assert [(i["group"][body["groupBy"][0]], i["count"]) for i in body["items"]] == [("db", 3), ("web", 2)]


def test_limit_and_continue_page_the_groups(app: Any) -> None:
    everything = [k for k in counts(("cluster", "namespace", "status.phase")) if k[0][0] == "cluster-1"]
    query = f"{PODS}?groupBy=cluster,namespace,status.phase&clusters=cluster-1&limit=2&withRemainingCount=1"
    seen: list[tuple[tuple[str, ...], int]] = []
    token = ""
    for _ in range(len(everything)):
        body = call(app, query + (f"&continue={token}" if token else "")).json()
        seen.extend((tuple(i["group"].values()), i["count"]) for i in body["items"])
        token = body["metadata"].get("continue", "")
        if not token:
            assert "remainingItemCount" not in body["metadata"]
            break
        assert body["metadata"]["remainingItemCount"] == len(everything) - len(seen)
    assert seen == everything


def test_collections_count_per_resource(app: Any) -> None:
    body = call(
        app, "/apis/clusterpedia.io/v1beta1/collectionresources/workloads?groupBy=cluster,resource"
    ).json()
    assert [(tuple(i["group"].values()), i["count"]) for i in body["items"]] == [
        (("cluster-1", "deployments"), 1),
        (("cluster-2", "deployments"), 1),
    ]
    table = call(
        app, "/apis/pedia.clusterpedia.io/v1alpha1/collectionresources/workloads?groupBy=kind", TABLE
    ).json()
    assert [r["cells"] for r in table["rows"]] == [["Deployment", 2]]


def _token(app: Any, query: str) -> str:
    token: str = call(app, f"{PODS}?{query}").json()["metadata"]["continue"]
    return token


@pytest.mark.parametrize(
    ("query", "accept", "code", "message"),
    [
        ("groupBy=cluster&size=2", "", 400, "size cannot be combined with group-by"),
        (
            "groupBy=cluster&offset=1&orderby=name",
            "",
            400,
            "offset, orderby cannot be combined with group-by",
        ),
        ("groupBy=cluster&withContinue=true", "", 400, "withContinue cannot be combined"),
        ("groupBy=cluster&onlyMetadata=true", "", 400, "onlyMetadata cannot be combined"),
        ("groupBy=cluster&includeObject=Object", TABLE, 400, "includeObject=Object cannot be combined"),
        (
            "groupBy=cluster",
            "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io",
            406,
            "no object metadata",
        ),
        ("groupBy=cluster&watch=true", "", 400, "group-by cannot be watched"),
        ("groupBy=", "", 400, "empty group field"),
        ("groupBy=cluster,,namespace", "", 400, "empty group field"),
        ("groupBy=status.phase,status.phase", "", 400, 'group field "status.phase" is given twice'),
        ("groupBy=a,b,c,d,e,f,g,h,i", "", 400, "at most 8 group fields"),
        ("groupBy=spec..x", "", 400, 'invalid group field "spec..x"'),
        (f"groupBy={quote(chr(39) + '; DROP TABLE resources; --')}", "", 400, "invalid group field"),
        (quote("groupBy=metadata.labels['x' OR 1=1 --']", safe="="), "", 400, "invalid group field"),
        (f"labelSelector={quote(GB + '!=cluster')}", "", 400, "supports only =, == and in"),
        (f"labelSelector={quote(GB)}", "", 400, "needs a value"),
        (f"labelSelector={quote(GB + '=metadata.labels[app]')}", "", 400, "use the URL query groupBy"),
        (f"labelSelector={quote(GB + '=cluster')}&groupBy=namespace", "", 400, "group-by is given twice"),
        ("groupBy=cluster,namespace,name", "", 400, "more than 5 groups: narrow it"),
        ("groupBy=cluster&clusters=cluster-9", "", 404, 'cluster "cluster-9" not found'),
    ],
)
def test_refusals_are_status_objects(app: Any, query: str, accept: str, code: int, message: str) -> None:
    resp = call(app, f"{PODS}?{query}", accept)
    body = resp.json()
    assert (resp.status_code, body["kind"], body["code"]) == (code, "Status", code), body
    assert message in body["message"]


def test_continue_tokens_do_not_cross_between_lists_and_groups(app: Any) -> None:
    groups_token = _token(app, "groupBy=cluster&limit=1")
    list_token = _token(app, "limit=1")
    other_groups = call(app, f"{PODS}?groupBy=namespace&limit=1&continue={groups_token}").json()
    assert other_groups["code"] == 400 and "not issued for these group counts" in other_groups["message"]
    mixed = call(app, f"{PODS}?groupBy=cluster&limit=1&continue={list_token}").json()
    assert mixed["code"] == 400 and "not issued for these group counts" in mixed["message"]
    listed = call(app, f"{PODS}?limit=1&continue={groups_token}").json()
    assert listed["code"] == 400 and "issued for a different list" in listed["message"]
    assert call(app, f"{PODS}?groupBy=cluster&limit=1&continue={groups_token}").json()["items"] == [
        {
            "kind": "GroupCount",
            "apiVersion": "clusterpedia.io/v1beta1",
            "group": {"cluster": "cluster-2"},
            "count": 3,
        }
    ]
