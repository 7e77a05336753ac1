"""ClusterImportPolicy specs: the shipped examples compile, and a policy that cannot be used names
the field. (The controller itself is tested against a real host: tests/e2e/test_sync_import_policy.py.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from synchro.importing import PolicyError, api_path, compile_policy

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("clusterimportpolicy-*.yaml"))


def test_there_are_the_three_shipped_policies() -> None:
    assert [p.name for p in EXAMPLES] == [
        "clusterimportpolicy-cluster-api.yaml",
        "clusterimportpolicy-karmada.yaml",
        "clusterimportpolicy-kubeconfig-secrets.yaml",
    ]


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_shipped_policies_compile(path: Path) -> None:
    policy = compile_policy(yaml.safe_load(path.read_text()))
    assert policy.creation is not None


def test_karmada_policy_renders_push_mode_credentials() -> None:
    policy = compile_policy(yaml.safe_load((ROOT / "examples/clusterimportpolicy-karmada.yaml").read_text()))
    source = {
        "metadata": {"name": "member1"},
        "spec": {
            "syncMode": "Push",
            "apiEndpoint": "https://172.18.0.3:6443",
            "secretRef": {"namespace": "karmada-cluster", "name": "member1"},
        },
    }
    env: dict[str, Any] = {"source": source, "references": {}, "policy": {"name": "karmada"}}
    ref = policy.references[0]
    assert (ref.namespace and ref.namespace.render(env), ref.name.render(env)) == (
        "karmada-cluster",
        "member1",
    )
    env["references"]["secret"] = {"data": {"token": "dG9rZW4=", "caBundle": "Y2E="}}
    assert policy.creation is not None and policy.creation.holds(env)
    assert policy.prefix + policy.name_template.render(env) == "karmada-member1"
    spec = policy.spec.render(env)
    assert (spec["apiserverURL"], spec["tokenData"], spec["caData"]) == (
        "https://172.18.0.3:6443",
        "dG9rZW4=",
        "Y2E=",
    )
    pull = {**source, "spec": {**source["spec"], "syncMode": "Pull"}}
    assert not policy.creation.holds({**env, "source": pull})


def policy(**spec: Any) -> dict[str, Any]:
    base = {"source": {"version": "v1", "resource": "secrets"}, "template": {"kubeconfig": "x"}}
    return {"metadata": {"name": "p"}, "spec": {**base, **spec}}


@pytest.mark.parametrize(
    ("spec", "reason", "message"),
    [
        ({"template": "text"}, "InvalidTemplate", "spec.template must be a mapping"),
        ({"nameTemplate": "{{ x"}, "InvalidTemplate", "spec.nameTemplate: '{{' at column 1 is not closed"),
        ({"creationCondition": "source ==="}, "InvalidTemplate", "spec.creationCondition: unexpected"),
        ({"source": {"version": "v1", "resource": "../x"}}, "InvalidPolicy", "spec.source.resource '../x'"),
        ({"source": {"resource": "secrets"}}, "InvalidPolicy", "spec.source.version '' is not"),
        (
            {"references": [{"key": "a", "version": "v1", "resource": "secrets", "nameTemplate": "n"}] * 2},
            "InvalidPolicy",
            "spec.references[1].key 'a' is not a unique identifier",
        ),
        ({"template": {"a": ["{{ open('/etc/passwd') }}"]}}, "InvalidTemplate", "spec.template.a[0]: in"),
    ],
)
def test_unusable_policies_name_the_field(spec: dict[str, Any], reason: str, message: str) -> None:
    with pytest.raises(PolicyError) as info:
        compile_policy(policy(**spec))
    assert info.value.reason == reason
    assert info.value.message.startswith(message), info.value.message


def test_api_paths() -> None:
    assert api_path("", "v1", "secrets", "ns", "n") == "/api/v1/namespaces/ns/secrets/n"
    assert api_path("cluster.x-k8s.io", "v1beta1", "clusters") == "/apis/cluster.x-k8s.io/v1beta1/clusters"
