"""One CRD group/kind served in different versions by two member clusters (v1 + v1alpha1 on the
current kube-apiserver, only v1alpha1 on the older one): each cluster syncs its preferred version
(or the one ``versions`` asks for), the status says which version is synced and stored, and the
store keeps each object in that version with the CRD's printer columns for the API tier."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select

from common.storage.sql.engine import make_engine
from common.storage.sql.schema import resource_types, resources
from harness.cluster import Cluster
from tests.e2e.sync_support import (
    GR,
    cluster_rows,
    install_crd,
    make_settings,
    pediacluster,
    pediacluster_status,
    ready_condition,
    start_synchro,
    start_writer,
    unique,
    wait_for,
    wait_store_matches,
)

pytestmark = pytest.mark.e2e


def widget_crd(versions: list[str], storage: str) -> str:
    def version(name: str) -> dict[str, Any]:
        return {
            "name": name,
            "served": True,
            "storage": name == storage,
            "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
            "additionalPrinterColumns": [
                {"name": f"Size-{name}", "type": "integer", "jsonPath": ".spec.size"}
            ],
        }

    return json.dumps(
        {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.multi.example.com"},
            "spec": {
                "group": "multi.example.com",
                "scope": "Namespaced",
                "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                "versions": [version(v) for v in versions],
            },
        }
    )


def widgets(api_version: str, count: int) -> str:
    return "\n---\n".join(
        f"apiVersion: {api_version}\nkind: Widget\n"
        f"metadata: {{name: w-{i}, namespace: default}}\nspec: {{size: {i}}}"
        for i in range(count)
    )


def synced_versions(host: Cluster, name: str) -> dict[str, Any]:
    status = pediacluster_status(host, name)
    if ready_condition(status).get("reason") != "Healthy":
        return {}
    for group in status.get("resources") or ():
        for res in group["resources"]:
            if res["resource"] == "widgets" and res["syncConditions"][0]["status"] == "Syncing":
                return dict(
                    res["syncConditions"][0], kind=res.get("kind"), version_of_cluster=status["version"]
                )
    return {}


def test_crd_served_in_different_versions(
    host_cluster: Cluster, member_cluster: Any, sqlite_url: str
) -> None:
    current: Cluster = member_cluster("mv-current")
    older: Cluster = member_cluster("mv-older", version="older")
    current.apply(widget_crd(["v1alpha1", "v1"], storage="v1"))
    older.apply(widget_crd(["v1alpha1"], storage="v1alpha1"))
    for member in (current, older):
        member.wait_crd("widgets.multi.example.com")
    current.apply(widgets("multi.example.com/v1", 5))
    older.apply(widgets("multi.example.com/v1alpha1", 3))

    install_crd(host_cluster)
    spec = {"multi.example.com": ["widgets"]}
    host_cluster.apply(pediacluster("mv-current", current, spec))
    host_cluster.apply(pediacluster("mv-older", older, spec))
    pinned = json.loads(pediacluster("mv-pinned", current, spec))
    pinned["spec"]["resources"][0]["versions"] = ["v1alpha1"]
    host_cluster.apply(json.dumps(pinned))

    settings = make_settings(host_cluster, sqlite_url, f"memory://{unique('q')}")
    writer, synchro = start_writer(settings), start_synchro(settings, unique("w"))
    try:
        for name, member, version in (
            ("mv-current", current, "v1"),
            ("mv-older", older, "v1alpha1"),
            ("mv-pinned", current, "v1alpha1"),
        ):
            grs: list[GR] = [("multi.example.com", version, "widgets")]
            wait_store_matches(sqlite_url, lambda m=member, n=name, g=grs: cluster_rows(n, m, g), [name])
            cond = wait_for(lambda n=name: synced_versions(host_cluster, n), f"{name} status")
            assert (cond["version"], cond["storageVersion"], cond["kind"]) == (version, version, "Widget")
            assert cond["objects"] == (3 if member is older else 5)
            assert cond["version_of_cluster"].startswith(f"v{member.version.lstrip('v')[:4]}")

        engine = make_engine(sqlite_url)
        with engine.connect() as conn:
            rows = conn.execute(
                select(resources.c.cluster, resources.c.version, resources.c.object).where(
                    resources.c.resource == "widgets"
                )
            ).all()
            types = {
                r.cluster: r
                for r in conn.execute(select(resource_types).where(resource_types.c.resource == "widgets"))
            }
        engine.dispose()
        for cluster, version, obj in rows:
            body = json.loads(obj)
            assert body["apiVersion"] == f"multi.example.com/{version}"
            assert body["metadata"]["annotations"]["shadow.clusterpedia.io/cluster-name"] == cluster
            assert "managedFields" not in body["metadata"]
        assert {c: (t.version, t.storage_version) for c, t in types.items()} == {
            "mv-current": ("v1", "v1"),
            "mv-older": ("v1alpha1", "v1alpha1"),
            "mv-pinned": ("v1alpha1", "v1alpha1"),
        }
        assert json.loads(types["mv-current"].printer_columns)[0]["name"] == "Size-v1"
        assert json.loads(types["mv-older"].printer_columns)[0]["name"] == "Size-v1alpha1"
    finally:
        synchro.stop()
        writer.stop()
        host_cluster.kubectl("delete", "pediaclusters", "--all", "--wait=false")
