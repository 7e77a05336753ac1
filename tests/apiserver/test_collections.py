"""Custom collection resources: CollectionResourceDefinitions of the host served beside the
configured collections. Validation of the (hostile) objects is pure; the served behaviour runs the
app over the memory store with the host's definition list at the protocol edge (``HostReader``).
The end-to-end version, kubectl against a real host, is tests/e2e/test_kubectl_collections.py."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import pytest

from apiserver.app import build_app
from apiserver.collections import (
    DEFINITIONS,
    MAX_COLLECTION_MEMBERS,
    MAX_CUSTOM_COLLECTIONS,
    Collection,
    Collections,
    custom_collections,
    expand,
    parse_definition,
)
from apiserver.pediaclusters import PediaClusterDirectory
from apiserver.types import GroupResource
from common.settings import ApiserverSettings, Settings
from common.storage import open_store
from tests.apiserver.storefill import add_objects, add_type

C = "/apis/pedia.clusterpedia.io/v1alpha1/collectionresources"


def definition(name: Any, *groups: tuple[Any, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "policy.clusterpedia.io/v1alpha1",
        "kind": "CollectionResourceDefinition",
        "metadata": {"name": name},
        "spec": {"resources": [{"group": g, "resources": r} for g, r in groups]},
    }


def test_a_definition_is_a_collection() -> None:
    got = parse_definition(definition("net", ("", ["services"]), ("networking.k8s.io", ["ingresses"])))
    assert got == Collection(
        "net", (GroupResource("", "services"), GroupResource("networking.k8s.io", "ingresses"))
    )
    assert got.resource_names == ["services", "ingresses.networking.k8s.io"]
    # no group is the core group; duplicates collapse; a wildcard covers the group's named resources
    no_group = {"metadata": {"name": "x"}, "spec": {"resources": [{"resources": ["pods", "pods"]}]}}
    assert parse_definition(no_group).resources == (GroupResource("", "pods"),)
    star = parse_definition(definition("s", ("apps", ["deployments", "*"]), ("", ["pods"])))
    assert star.resources == (GroupResource("apps", "*"), GroupResource("", "pods"))
    assert star.resource_names == ["*.apps", "pods"]


@pytest.mark.parametrize(
    ("obj", "reason"),
    [
        ("junk", "not an object"),
        ({"spec": {}}, "metadata.name is not a string"),
        (definition("Bad_Name", ("", ["pods"])), "metadata.name is not a DNS label"),
        (definition("x" * 64, ("", ["pods"])), "metadata.name is not a DNS label"),
        ({"metadata": {"name": "x"}}, "spec.resources is not a non-empty list"),
        (definition("x"), "spec.resources is not a non-empty list"),
        (definition("x", ("", [])), "spec.resources[0].resources is not a non-empty list"),
        (definition("x", ("", "pods")), "spec.resources[0].resources is not a non-empty list"),
        (definition("x", (7, ["pods"])), "spec.resources[0].group is not a string"),
        (definition("x", ("Apps;drop", ["pods"])), "spec.resources[0].group 'Apps;drop' is not an API group"),
        (definition("x", ("", ["pods", 3])), "spec.resources[0].resources[1] is not a string"),
        (
            definition("x", ("", ["pods.apps"])),
            "spec.resources[0].resources[0] 'pods.apps' is not a resource",
        ),
        (
            definition("x", ("", ["p" * 64])),
            f"spec.resources[0].resources[0] '{'p' * 64}' is not a resource name",
        ),
        (
            definition("x", ("", [f"r{i}" for i in range(MAX_COLLECTION_MEMBERS + 1)])),
            f"more than {MAX_COLLECTION_MEMBERS} resources",
        ),
    ],
)
def test_a_bad_definition_says_why(obj: Any, reason: str) -> None:
    with pytest.raises(ValueError, match="^" + reason.replace("[", r"\[").replace("]", r"\]")):
        parse_definition(obj)


def test_configured_names_win_and_the_number_is_bounded() -> None:
    items = [
        definition("workloads", ("", ["pods"])),
        definition("b", ("", ["pods"])),
        definition("a", ("", ["services"])),
        definition("BAD", ("", ["pods"])),
        {"metadata": "junk"},
    ]
    got, problems = custom_collections({"items": items}, ["workloads"])
    assert [c.name for c in got] == ["a", "b"]
    assert problems == [
        "CollectionResourceDefinition 'BAD' ignored: metadata.name is not a DNS label (lowercase letters,"
        " digits, '-'; at most 63)",
        "CollectionResourceDefinition #4 ignored: metadata.name is not a string",
        "CollectionResourceDefinition 'workloads' ignored: a collection of that name is configured"
        " (apiserver.collections) or defined twice",
    ]
    many = [definition(f"c{i:04d}", ("", ["pods"])) for i in range(MAX_CUSTOM_COLLECTIONS + 2)]
    got, problems = custom_collections({"items": many}, [])
    assert len(got) == MAX_CUSTOM_COLLECTIONS and len(problems) == 2
    assert problems[-1].endswith(f"more than {MAX_CUSTOM_COLLECTIONS} custom collections")
    assert custom_collections({"items": "junk"}, []) == ([], [])


def test_a_wildcard_expands_to_the_synced_resources_of_its_group() -> None:
    c = Collection("x", (GroupResource("apps", "*"), GroupResource("", "pods")))
    synced = {("apps", "statefulsets"), ("apps", "deployments"), ("batch", "jobs"), ("", "pods")}
    assert expand(c, synced).resources == (
        GroupResource("apps", "deployments"),
        GroupResource("apps", "statefulsets"),
        GroupResource("", "pods"),
    )
    assert expand(Collection("y", (GroupResource("none", "*"),)), synced).resources == ()
    plain = Collection("z", (GroupResource("", "pods"),))
    assert expand(plain, synced) is plain


class Definitions:
    """The host's CollectionResourceDefinition LIST; ``items`` None: the host is down; ``missing``:
    the CRD is not installed (404)."""

    def __init__(self, items: list[Any] | None) -> None:
        self.items = items
        self.missing = False
        self.paths: list[str] = []

    async def get_json(self, path: str) -> Any:
        self.paths.append(path)
        if self.missing:
            request = httpx.Request("GET", "https://host" + path)
            raise httpx.HTTPStatusError("404", request=request, response=httpx.Response(404, request=request))
        if self.items is None:
            raise httpx.ConnectError("host down")
        return {"items": self.items}


@pytest.fixture(scope="module")
def host() -> Definitions:
    return Definitions([])


@pytest.fixture(scope="module")
def app(host: Definitions) -> Any:
    store = open_store("memory://collections-app")
    for cluster in ("c1", "c2"):
        add_type(store, cluster, "", "v1", "configmaps", "ConfigMap")
        add_type(store, cluster, "", "v1", "services", "Service")
        add_type(store, cluster, "apps", "v1", "deployments", "Deployment")
        for resource, kind in (("configmaps", "ConfigMap"), ("services", "Service")):
            objs = [
                {"kind": kind, "metadata": {"name": f"{kind.lower()}-{i}", "namespace": "a"}}
                for i in range(3)
            ]
            add_objects(store, cluster, "", "v1", resource, objs)
        add_objects(
            store,
            cluster,
            "apps",
            "v1",
            "deployments",
            [{"kind": "Deployment", "metadata": {"name": "d", "namespace": "b"}}],
        )
    settings = Settings(
        storage="memory://collections-app", apiserver=ApiserverSettings(authorization_mode="host-only")
    )
    reader = PediaClusterDirectory(host, refresh_seconds=0, path=DEFINITIONS, missing_is_empty=True)
    return build_app(settings, store, collections=Collections(settings.apiserver, reader))


def get(app: Any, path: str, accept: str = "application/json") -> httpx.Response:
    async def go() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://t") as c:
            return await c.get(path, headers={"accept": accept})

    return asyncio.run(go())


def names(app: Any) -> list[str]:
    resp = get(app, C)
    assert resp.status_code == 200, resp.text
    return [it["metadata"]["name"] for it in resp.json()["items"]]


def test_a_definition_is_listed_and_served_with_every_condition(app: Any, host: Definitions) -> None:
    host.items = [definition("basics", ("", ["services", "configmaps"]))]
    assert names(app) == ["basics", "workloads"]
    table = get(app, C, "application/json;as=Table;v=v1;g=meta.k8s.io").json()
    assert [r["cells"] for r in table["rows"]] == [
        ["basics", "services,configmaps"],
        ["workloads", "deployments.apps,daemonsets.apps,statefulsets.apps"],
    ]
    body = get(app, f"{C}/basics").json()
    assert body["kind"] == "CollectionResource"
    assert body["resourceTypes"] == [
        {"group": "", "resource": "services"},
        {"group": "", "resource": "configmaps"},
    ]
    assert len(body["items"]) == 12
    only = get(app, f"{C}/basics?clusters=c2&names=service-1").json()["items"]
    assert [(i["kind"], i["metadata"]["name"]) for i in only] == [("Service", "service-1")]
    first = get(app, f"{C}/basics?limit=5").json()
    assert len(first["items"]) == 5 and first["metadata"]["continue"]
    rest = get(app, f"{C}/basics?limit=100&continue={first['metadata']['continue']}").json()
    cluster = "shadow.clusterpedia.io/cluster-name"
    seen = [
        (i["metadata"]["annotations"][cluster], i["kind"], i["metadata"]["name"])
        for i in first["items"] + rest["items"]
    ]
    assert len(set(seen)) == 12
    rows = get(app, f"{C}/basics?clusters=c1", "application/json;as=Table;v=v1;g=meta.k8s.io").json()["rows"]
    assert {tuple(r["cells"][:4]) for r in rows} == {
        ("c1", "", "v1", "ConfigMap"),
        ("c1", "", "v1", "Service"),
    }


def test_a_wildcard_collection_follows_what_is_synced(app: Any, host: Definitions) -> None:
    host.items = [definition("everything-core", ("", ["*"])), definition("nothing", ("batch", ["*"]))]
    body = get(app, f"{C}/everything-core?clusters=c1").json()
    assert body["resourceTypes"] == [
        {"group": "", "resource": "configmaps"},
        {"group": "", "resource": "services"},
    ]
    assert len(body["items"]) == 6
    assert get(app, f"{C}/nothing").json()["items"] == []


def test_bad_definitions_are_left_out_with_a_logged_reason(
    app: Any, host: Definitions, caplog: pytest.LogCaptureFixture
) -> None:
    host.items = [
        definition("good", ("", ["services"])),
        definition("workloads", ("", ["configmaps"])),
        definition("evil", ("x' OR 1=1 --", ["pods"])),
        {"metadata": {"name": "half"}, "spec": {"resources": [{"group": "", "resources": [None]}]}},
    ]
    with caplog.at_level(logging.WARNING, logger="apiserver.collections"):
        assert names(app) == ["good", "workloads"]
        assert names(app) == ["good", "workloads"]
    logged = [r.getMessage() for r in caplog.records if r.name == "apiserver.collections"]
    assert len(logged) == 3  # each reason once, however many requests
    assert any("'evil' ignored: spec.resources[0].group" in m for m in logged)
    assert any("'workloads' ignored: a collection of that name is configured" in m for m in logged)
    # the configured workloads are not redefined
    assert get(app, f"{C}/workloads").json()["resourceTypes"][0] == {
        "group": "apps",
        "resource": "deployments",
    }
    resp = get(app, f"{C}/evil")
    assert resp.status_code == 404
    assert resp.json()["message"] == 'collectionresources.pedia.clusterpedia.io "evil" not found'


def test_a_deleted_definition_goes_and_the_host_being_down_keeps_the_last(
    app: Any, host: Definitions
) -> None:
    host.items = [definition("basics", ("", ["services"]))]
    assert names(app) == ["basics", "workloads"]
    host.items = None
    assert names(app) == ["basics", "workloads"]
    host.items = []
    assert names(app) == ["workloads"]
    assert get(app, f"{C}/basics").status_code == 404
    host.items = [definition("basics", ("", ["services"]))]
    host.missing = True  # the CRD is removed: no definitions
    try:
        assert names(app) == ["workloads"]
    finally:
        host.missing = False
    assert host.paths[-1] == DEFINITIONS


def test_without_a_host_only_the_configured_collections(app: Any) -> None:
    app = build_app(
        Settings(
            storage="memory://collections-app", apiserver=ApiserverSettings(authorization_mode="host-only")
        ),
        open_store("memory://collections-app"),
    )
    assert names(app) == ["workloads"]


def test_a_configured_collection_may_take_a_whole_group(app: Any) -> None:  # app: the store filled
    settings = Settings(
        storage="memory://collections-app",
        apiserver=ApiserverSettings(
            authorization_mode="host-only", collections={"core": ["*", "deployments.apps"]}
        ),
    )
    app = build_app(settings, open_store("memory://collections-app"))
    body = get(app, f"{C}/core?clusters=c2").json()
    assert body["resourceTypes"] == [
        {"group": "", "resource": "configmaps"},
        {"group": "", "resource": "services"},
        {"group": "apps", "resource": "deployments"},
    ]
    assert len(body["items"]) == 7
    table = get(app, C, "application/json;as=Table;v=v1;g=meta.k8s.io").json()
    assert [r["cells"] for r in table["rows"]] == [["core", "*,deployments.apps"]]
