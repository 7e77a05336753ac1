import asyncio
from typing import Any

import msgspec
import pytest

from common.pediacluster import ResourceSelector
from common.types import GVR
from synchro.client import ApiError, UnexpectedAnswer, decode_answer
from synchro.discovery import (
    APIResource,
    Discovery,
    fetch_discovery,
    removals,
    resolve,
    spec_wants,
)


def res(
    name: str, kind: str, namespaced: bool = True, verbs: tuple[str, ...] = ("get", "list", "watch")
) -> APIResource:
    return APIResource(name, kind, namespaced, verbs, (name[:2],))


def selectors(spec: list[dict[str, Any]]) -> list[ResourceSelector]:
    return msgspec.convert(spec, list[ResourceSelector])


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
    targets, missing = resolve(disc(), selectors(spec))
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
    targets, missing = resolve(disc(), selectors(spec))
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
        disc(), selectors([{"group": "apps", "resources": ["deployments"], "versions": ["v1beta2"]}])
    )
    assert targets == [] and "v1beta2" in missing[0].message
    targets, _ = resolve(disc(), [], custom_groups=frozenset({"stable.example.com"}))
    assert {str(t.gvr) for t in targets} == {
        "crontabs.stable.example.com/v1",
        "olds.stable.example.com/v1alpha1",
    }


def test_spec_wants_merges_groups() -> None:
    assert spec_wants(
        selectors([{"group": "", "resources": ["pods"]}, {"group": "", "resources": ["pods", "nodes"]}])
    ) == [("", ["pods", "nodes"], [])]


class FakeDiscoveryClient:
    """The member's discovery endpoints (protocol edge): the bytes a member answers, decoded as the
    real client decodes them. One path answers 503 (``broken``); ``answers`` replaces documents."""

    def __init__(self, broken: str, answers: dict[str, bytes] | None = None) -> None:
        self.broken = broken
        self.answers = answers or {}

    async def get_typed(self, path: str, type_: type[Any]) -> Any:
        if path == self.broken:
            raise ApiError(503, "ServiceUnavailable", "the server is currently unable to handle the request")
        if path in self.answers:
            return decode_answer(path, self.answers[path], type_)
        documents: dict[str, Any] = {
            "/api": {"versions": ["v1"]},
            "/apis": {
                "groups": [
                    {"name": "apps", "versions": [{"version": "v1"}], "preferredVersion": {"version": "v1"}},
                    {"name": "metrics.example.com", "versions": [{"version": "v1"}]},
                ]
            },
            "/api/v1": {"resources": [res("configmaps", "ConfigMap")]},
            "/apis/apps/v1": {"resources": [res("deployments", "Deployment")]},
            "/apis/metrics.example.com/v1": {"resources": [res("samples", "Sample")]},
        }
        return decode_answer(path, msgspec.json.encode(documents[path]), type_)


SPEC = selectors(
    [
        {"group": "", "resources": ["configmaps"]},
        {"group": "metrics.example.com", "resources": ["samples"]},
    ]
)
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


# -- a hostile or broken member: its answers are data, a wrong shape is that cluster's error --------


@pytest.mark.parametrize(
    ("path", "answer", "message"),
    [
        ("/api", b"[]", "unexpected answer to GET /api: Expected `object`, got `array`"),
        ("/api", b'{"versions": "v1"}', "GET /api: Expected `array | null`, got `str` - at `$.versions`"),
        (
            "/apis",
            b'{"groups": [{"name": 7}]}',
            "GET /apis: Expected `str`, got `int` - at `$.groups[0].name`",
        ),
        (
            "/apis",
            b'{"groups": [{"versions": []}]}',
            "Object missing required field `name` - at `$.groups[0]`",
        ),
        ("/apis", b"<html>hello</html>", "unexpected answer to GET /apis: JSON is malformed"),
    ],
)
def test_a_hostile_core_discovery_is_an_error_of_that_cluster(path: str, answer: bytes, message: str) -> None:
    client = FakeDiscoveryClient("", {path: answer})
    with pytest.raises(UnexpectedAnswer) as info:
        asyncio.run(fetch_discovery(client, None))  # type: ignore[arg-type]
    assert message in str(info.value)
    assert isinstance(info.value, ApiError)  # handled where any error status of the member is


def test_a_hostile_group_version_is_unknown_and_the_rest_syncs() -> None:
    """verbs as a number, resources as a mapping: that group version failed (kept, not purged)."""
    client = FakeDiscoveryClient(
        "",
        {
            "/apis/metrics.example.com/v1": b'{"resources": [{"name": "samples", "verbs": 5}]}',
            "/apis/apps/v1": b'{"resources": {"name": "deployments"}}',
        },
    )
    d = asyncio.run(fetch_discovery(client, None))  # type: ignore[arg-type]
    assert (
        "Expected `array | null`, got `int` - at `$.resources[0].verbs`"
        in d.failed[("metrics.example.com", "v1")]
    )
    assert "Expected `array | null`, got `object` - at `$.resources`" in d.failed[("apps", "v1")]
    targets, _ = resolve(d, SPEC)
    assert [str(t.gvr) for t in targets] == ["configmaps/v1"]
    plan = removals(KNOWN, {("", "configmaps")}, d, SPEC, sync_all=False, missing_before=set())
    assert plan.purge == [] and "verbs" in plan.keep[("metrics.example.com", "samples")]


def test_unknown_fields_and_nulls_of_a_member_are_ignored() -> None:
    client = FakeDiscoveryClient(
        "",
        {
            "/api": b'{"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": null}',
            "/api/v1": b'{"resources": [{"name": "configmaps", "kind": "ConfigMap", "namespaced": true,'
            b' "verbs": ["list", "watch"], "shortNames": null, "storageVersionHash": "x", "future": {}}]}',
        },
    )
    d = asyncio.run(fetch_discovery(client, None))  # type: ignore[arg-type]
    targets, missing = resolve(d, SPEC[:1])
    assert [(str(t.gvr), t.short_names) for t in targets] == [("configmaps/v1", ())] and missing == []
