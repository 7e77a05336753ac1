from typing import Any

from common.types import GVR
from synchro.discovery import Discovery, resolve, spec_wants


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
