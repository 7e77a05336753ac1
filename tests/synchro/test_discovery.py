import asyncio
from typing import Any

from common.types import GVR
from synchro.client import ApiError
from synchro.discovery import Discovery, fetch_discovery, removals, resolve, spec_wants


def res(
    name: str, kind: str, namespaced: bool = True, verbs: tuple[str, ...] = ("get", "list", "watch")
) -> dict[str, Any]:
    return {
        "name": name,
        "kind": kind,
        "namespaced": namespaced,
        "verbs": list(verbs),
        "shortNames": [name[:2]],
    }


def disc() -> Discovery:
    d = Discovery()
    d.versions = {"": ["v1"], "apps": ["v1"], "stable.example.com": ["v1", "v1alpha1"]}
    d.resources = {
        ("", "v1"): [
            res("pods", "Pod"),
            res("pods/log", "Pod"),
            res("nodes", "Node", False),
            res("bindings", "Binding", verbs=("create",)),
        ],
        ("apps", "v1"): [res("deployments", "Deployment"), res("deployments/scale", "Scale")],
        ("stable.example.com", "v1"): [res("crontabs", "CronTab")],
        ("stable.example.com", "v1alpha1"): [res("crontabs", "CronTab"), res("olds", "Old")],
    }
    return d


def test_seed_resources_preferred_version() -> None:
    spec = [{"group": "apps", "resources": ["deployments"]}, {"group": "", "resources": ["pods"]}]
    targets, missing = resolve(disc(), spec)
    assert missing == []
    assert [(t.gvr, t.kind, t.namespaced) for t in targets] == [
        (GVR("apps", "v1", "deployments"), "Deployment", True),
        (GVR("", "v1", "pods"), "Pod", True),
    ]
    assert targets[1].short_names == ("po",)


def test_versions_wildcard_and_missing() -> None:
    spec = [
        {"group": "stable.example.com", "resources": ["crontabs", "olds"], "versions": ["v1alpha1"]},
        {"group": "", "resources": ["*"]},
        {"group": "apps", "resources": ["replicasets"]},
        {"group": "nope.io", "resources": ["things"]},
    ]
    targets, missing = resolve(disc(), spec)
    assert {str(t.gvr) for t in targets} == {
        "crontabs.stable.example.com/v1alpha1",
        "olds.stable.example.com/v1alpha1",
        "pods/v1",
        "nodes/v1",
    }
    assert [(m.group, m.resource) for m in missing] == [("apps", "replicasets"), ("nope.io", "things")]
    assert "replicasets" in missing[0].message and "not served" in missing[1].message


def test_unserved_version_and_custom_groups() -> None:
    targets, missing = resolve(
        disc(), [{"group": "apps", "resources": ["deployments"], "versions": ["v1beta2"]}]
    )
    assert targets == [] and "v1beta2" in missing[0].message
    targets, _ = resolve(disc(), [], custom_groups=frozenset({"stable.example.com"}))
    assert {str(t.gvr) for t in targets} == {
        "crontabs.stable.example.com/v1",
        "olds.stable.example.com/v1alpha1",
    }


def test_spec_wants_merges_groups() -> None:
    assert spec_wants(
        [{"group": "", "resources": ["pods"]}, {"group": "", "resources": ["pods", "nodes"]}]
    ) == [("", ["pods", "nodes"], [])]


class FakeDiscoveryClient:
    """The member's discovery endpoints (protocol edge); one group version answers 503."""

    def __init__(self, broken: str) -> None:
        self.broken = broken

    async def get_json(self, path: str) -> dict[str, Any]:
        if path == self.broken:
            raise ApiError(503, "ServiceUnavailable", "the server is currently unable to handle the request")
        if path == "/api":
            return {"versions": ["v1"]}
        if path == "/apis":
            return {
                "groups": [
                    {"name": "apps", "versions": [{"version": "v1"}], "preferredVersion": {"version": "v1"}},
                    {"name": "metrics.example.com", "versions": [{"version": "v1"}]},
                ]
            }
        group_version = {
            "/api/v1": [res("configmaps", "ConfigMap")],
            "/apis/apps/v1": [res("deployments", "Deployment")],
            "/apis/metrics.example.com/v1": [res("samples", "Sample")],
        }
        return {"resources": group_version[path]}


SPEC = [
    {"group": "", "resources": ["configmaps"]},
    {"group": "metrics.example.com", "resources": ["samples"]},
]
KNOWN = [("", "configmaps"), ("metrics.example.com", "samples")]


def test_failed_group_discovery_is_unknown_not_missing() -> None:
    """A 503 from /apis/<group>/<version> must not purge that group's synced data."""
    client = FakeDiscoveryClient("/apis/metrics.example.com/v1")
    d = asyncio.run(fetch_discovery(client, None))  # type: ignore[arg-type]
    assert set(d.failed) == {("metrics.example.com", "v1")}
    assert "503" in d.failed_groups()["metrics.example.com"]
    targets, _ = resolve(d, SPEC)
    wanted = {(t.gvr.group, t.gvr.resource) for t in targets}
    plan = removals(KNOWN, wanted, d, SPEC, sync_all=False, missing_before=set())
    assert plan.purge == []
    assert "503" in plan.keep[("metrics.example.com", "samples")]
    # Failing again, even after it was once seen missing, still purges nothing.
    plan = removals(
        KNOWN, wanted, d, SPEC, sync_all=False, missing_before={("metrics.example.com", "samples")}
    )
    assert plan.purge == [] and plan.missing_once == {("metrics.example.com", "samples")}


def test_purge_needs_two_successful_discoveries_or_a_spec_change() -> None:
    client = FakeDiscoveryClient("")
    d = asyncio.run(fetch_discovery(client, None))  # type: ignore[arg-type]
    d.resources[("metrics.example.com", "v1")] = []  # served group, resource gone (e.g. CRD deleted)
    targets, _ = resolve(d, SPEC)
    wanted = {(t.gvr.group, t.gvr.resource) for t in targets}
    first = removals(KNOWN, wanted, d, SPEC, sync_all=False, missing_before=set())
    assert first.purge == [] and first.missing_once == {("metrics.example.com", "samples")}
    second = removals(KNOWN, wanted, d, SPEC, sync_all=False, missing_before=first.missing_once)
    assert second.purge == [("metrics.example.com", "samples")]
    # Removed from the spec: purged at once, served or not.
    targets, _ = resolve(d, SPEC[:1])
    dropped = removals(
        KNOWN,
        {(t.gvr.group, t.gvr.resource) for t in targets},
        d,
        SPEC[:1],
        sync_all=False,
        missing_before=set(),
    )
    assert dropped.purge == [("metrics.example.com", "samples")]
