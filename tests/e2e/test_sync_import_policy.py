"""ClusterImportPolicies against a real host and member: the shipped Cluster API and labelled-Secret
policies import, update and delete PediaClusters (and their rows), a Cluster not Provisioned or a
hand-made PediaCluster of the same name is left alone, broken templates and missing references are
conditions on the policy, and of two synchro workers only one imports.

One host, one member, one writer and two synchro workers (threads) for the whole module; the tests
run in order and each leaves what it created deleted."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.cluster import Cluster
from tests.e2e.sync_support import (
    GR,
    ROOT,
    Tier,
    b64,
    cluster_rows,
    install_crd,
    make_settings,
    ready_condition,
    start_synchro,
    start_writer,
    store_rows,
    unique,
    wait_for,
    wait_store_matches,
)

pytestmark = pytest.mark.e2e

POLICY_CRD = ROOT / "charts/clusterpedia/crds/policy.clusterpedia.io_clusterimportpolicies.yaml"
CAPI_POLICY = ROOT / "examples/clusterimportpolicy-cluster-api.yaml"
SECRETS_POLICY = ROOT / "examples/clusterimportpolicy-kubeconfig-secrets.yaml"
GRS: list[GR] = [("", "v1", "configmaps"), ("", "v1", "pods"), ("apps", "v1", "deployments")]
KC_GRS: list[GR] = GRS[1:]  # what the labelled-Secret example syncs
NS = "capi-test"

# Only what the test needs of Cluster API's Cluster: the kind, and a status subresource for its phase.
CAPI_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: clusters.cluster.x-k8s.io}
spec:
  group: cluster.x-k8s.io
  scope: Namespaced
  names: {plural: clusters, singular: cluster, kind: Cluster}
  versions:
  - name: v1beta1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
"""


class Env:
    def __init__(self, host: Cluster, member: Cluster, store: str, synchros: dict[str, Tier]) -> None:
        self.host, self.member, self.store, self.synchros = host, member, store, synchros

    def pc(self, name: str) -> dict[str, Any] | None:
        out = self.host.kubectl("get", "pediaclusters", name, "-o", "json", "--ignore-not-found").stdout
        return json.loads(out) if out.strip() else None

    def policy_status(self, name: str) -> dict[str, Any]:
        return dict(
            self.host.get_json(f"clusterimportpolicies.policy.clusterpedia.io/{name}").get("status") or {}
        )

    def condition(self, policy: str, kind: str = "Ready") -> dict[str, Any]:
        for cond in self.policy_status(policy).get("conditions") or ():
            if cond.get("type") == kind:
                return dict(cond)
        return {}

    def source_state(self, policy: str, source: str) -> dict[str, Any]:
        for line in self.policy_status(policy).get("clusters") or ():
            if line.get("source") == source:
                return dict(line)
        return {}

    def wait_ready_and_synced(self, name: str, grs: list[GR] = GRS) -> None:
        wait_for(
            lambda: ready_condition((self.pc(name) or {}).get("status") or {}).get("status") == "True", name
        )
        wait_store_matches(self.store, lambda: cluster_rows(name, self.member, grs), [name])

    def wait_gone(self, name: str) -> None:
        wait_for(lambda: self.pc(name) is None, f"PediaCluster {name} deleted")
        wait_for(lambda: not store_rows(self.store, [name]), f"rows of {name} purged")


def token_kubeconfig(member: Cluster) -> str:
    """The member's admin token in a kubeconfig (the other kubeconfig uses a client certificate)."""
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "m",
                    "cluster": {"server": member.server, "certificate-authority-data": b64(member.ca_pem)},
                }
            ],
            "users": [{"name": "u", "user": {"token": member.token}}],
            "contexts": [{"name": "c", "context": {"cluster": "m", "user": "u"}}],
            "current-context": "c",
        }
    )


def capi_cluster(name: str) -> str:
    return json.dumps(
        {
            "apiVersion": "cluster.x-k8s.io/v1beta1",
            "kind": "Cluster",
            "metadata": {"name": name, "namespace": NS},
        }
    )


def kubeconfig_secret(name: str, namespace: str, kubeconfig: str, key: str, labels: dict[str, str]) -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "data": {key: b64(kubeconfig)},
        }
    )


def holder_of(host: Cluster) -> str:
    lease = host.get_json("lease", "-n", "clusterpedia-system", "clusterimportpolicy-controller")
    return str(lease["spec"].get("holderIdentity") or "")


def set_phase(host: Cluster, name: str, phase: str) -> None:
    patch = json.dumps({"status": {"phase": phase}})
    host.kubectl(
        "-n",
        NS,
        "patch",
        "clusters.cluster.x-k8s.io",
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        patch,
    )


@pytest.fixture(scope="module")
def env(host_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory, sqlite_url: str) -> Iterator[Env]:
    member = Cluster("import-member", "current", workdir=tmp_path_factory.mktemp("import-member"))
    member.start()
    try:
        member.kubectl("create", "configmap", "imported-data", "--from-literal=a=b")
        member.kubectl("create", "deployment", "web", "--image=nginx")
        install_crd(host_cluster)
        host_cluster.kubectl("apply", "-f", str(POLICY_CRD))
        host_cluster.wait_crd("clusterimportpolicies.policy.clusterpedia.io")
        host_cluster.apply(CAPI_CRD)
        host_cluster.wait_crd("clusters.cluster.x-k8s.io")
        host_cluster.kubectl("create", "namespace", NS)
        host_cluster.kubectl("create", "namespace", "clusterpedia-system", check=False)
        settings = make_settings(
            host_cluster, sqlite_url, f"memory://{unique('q')}", import_interval_seconds=0.5
        )
        writer = start_writer(settings)
        synchros = {w: start_synchro(settings, w) for w in (unique("wa"), unique("wb"))}
        try:
            yield Env(host_cluster, member, sqlite_url, synchros)
        finally:
            for tier in synchros.values():
                if tier.thread.is_alive():
                    tier.stop()
            writer.stop()
            host_cluster.kubectl("delete", "clusterimportpolicies", "--all", "--wait=false")
            host_cluster.kubectl("delete", "pediaclusters", "--all", "--wait=false")
    finally:
        member.stop()


def test_cluster_api_policy_imports_updates_and_deletes(env: Env) -> None:
    host, member = env.host, env.member
    host.kubectl("apply", "-f", str(CAPI_POLICY))
    # A Cluster still provisioning, whose Secret exists already: seen, and not imported.
    host.apply(capi_cluster("c1"))
    host.apply(kubeconfig_secret("c1-kubeconfig", NS, member.kubeconfig.read_text(), "value", {}))
    line = wait_for(lambda: env.source_state("cluster-api", f"clusters.cluster.x-k8s.io/{NS}/c1"), "c1 seen")
    assert line["state"] == "Skipped" and "creation condition" in line["message"], line
    name = f"capi-{NS}-c1"
    assert env.pc(name) is None

    set_phase(host, "c1", "Provisioned")
    pc = wait_for(lambda: env.pc(name), f"PediaCluster {name}")
    assert pc["metadata"]["labels"]["policy.clusterpedia.io/import-policy"] == "cluster-api"
    assert pc["metadata"]["annotations"]["policy.clusterpedia.io/import-source"] == (
        f"clusters.cluster.x-k8s.io/{NS}/c1"
    )
    assert pc["spec"]["kubeconfig"] == b64(member.kubeconfig.read_text())
    assert pc["spec"]["resources"][0] == {"group": "apps", "resources": ["deployments"]}
    env.wait_ready_and_synced(name)
    wait_for(lambda: env.policy_status("cluster-api").get("readySummary") == "1/1", "READY 1/1")
    assert env.condition("cluster-api")["status"] == "True"
    table = host.kubectl("get", "clusterimportpolicies").stdout.splitlines()
    assert table[0].split() == ["NAME", "SOURCE", "IMPORTED", "READY", "AGE"], table
    assert table[1].split()[:4] == ["cluster-api", "clusters.cluster.x-k8s.io", "1", "1/1"], table

    # A rotated kubeconfig (now a token instead of a client certificate) reaches the PediaCluster.
    rotated = token_kubeconfig(member)
    host.apply(kubeconfig_secret("c1-kubeconfig", NS, rotated, "value", {}))
    wait_for(
        lambda: (env.pc(name) or {}).get("spec", {}).get("kubeconfig") == b64(rotated), "rotated kubeconfig"
    )
    member.kubectl("create", "configmap", "after-rotation", "--from-literal=a=b")
    env.wait_ready_and_synced(name)
    assert (name, "", "configmaps", "default", "after-rotation") in store_rows(env.store, [name])

    # A new name (here the prefix) moves the import: the new PediaCluster syncs, the old one goes.
    policy = yaml.safe_load(CAPI_POLICY.read_text())
    policy["spec"]["namePrefix"] = "moved-"
    host.apply(json.dumps(policy))
    env.wait_ready_and_synced(f"moved-{NS}-c1")
    env.wait_gone(name)
    host.kubectl("apply", "-f", str(CAPI_POLICY))
    env.wait_ready_and_synced(name)
    env.wait_gone(f"moved-{NS}-c1")

    # Deleting the Cluster deletes the PediaCluster through the finalizer: its rows go too.
    host.kubectl("-n", NS, "delete", "clusters.cluster.x-k8s.io", "c1")
    env.wait_gone(name)
    wait_for(lambda: env.policy_status("cluster-api").get("imported") == 0, "IMPORTED 0")


def test_conflicts_missing_references_and_broken_templates_are_conditions(env: Env) -> None:
    host, member = env.host, env.member
    # A hand-made PediaCluster holds the name the policy would give c2: it is never overwritten.
    taken = f"capi-{NS}-c2"
    hand_made = {
        "apiVersion": "clusters.clusterpedia.io/v1alpha1",
        "kind": "PediaCluster",
        "metadata": {"name": taken},
        "spec": {
            "kubeconfig": b64(member.kubeconfig.read_text()),
            "resources": [{"group": "", "resources": ["configmaps"]}],
        },
    }
    host.apply(json.dumps(hand_made))
    host.apply(capi_cluster("c2"))
    host.apply(kubeconfig_secret("c2-kubeconfig", NS, token_kubeconfig(member), "value", {}))
    set_phase(host, "c2", "Provisioned")
    cond = wait_for(
        lambda: (c := env.condition("cluster-api", "Conflict")).get("status") == "True" and c, "conflict"
    )
    assert f"PediaCluster {taken} exists and was made by hand: it is left alone" in cond["message"], cond
    assert env.condition("cluster-api")["reason"] == "Conflict"
    pc = env.pc(taken)
    assert pc is not None and "policy.clusterpedia.io/import-policy" not in (
        pc["metadata"].get("labels") or {}
    )
    assert pc["spec"] == hand_made["spec"]

    # A Provisioned Cluster whose kubeconfig Secret is missing: a clear condition, nothing imported.
    host.apply(capi_cluster("c3"))
    set_phase(host, "c3", "Provisioned")
    c3 = f"clusters.cluster.x-k8s.io/{NS}/c3"
    line = wait_for(lambda: (s := env.source_state("cluster-api", c3)).get("state") == "Waiting" and s, "c3")
    missing = f"reference kubeconfig (secrets {NS}/c3-kubeconfig) not found"
    assert line["message"] == missing, line
    ready = env.condition("cluster-api")
    assert ready["status"] == "False" and f"{c3}: {missing}" in ready["message"], ready
    assert env.pc(f"capi-{NS}-c3") is None

    # Broken templates: conditions on their own policy, while the other policy goes on.
    broken = {
        "apiVersion": "policy.clusterpedia.io/v1alpha1",
        "kind": "ClusterImportPolicy",
        "metadata": {"name": "broken"},
        "spec": {
            "source": {"group": "cluster.x-k8s.io", "version": "v1beta1", "resource": "clusters"},
            "nameTemplate": "{{ source.metadata.name | nope }}",
            "template": {"kubeconfig": "{{ source.spec.missing }}"},
        },
    }
    host.apply(json.dumps(broken))
    cond = wait_for(
        lambda: (c := env.condition("broken")).get("reason") == "InvalidTemplate" and c, "InvalidTemplate"
    )
    assert cond["status"] == "False", cond
    assert cond["message"].startswith(
        "spec.nameTemplate: in '{{ source.metadata.name | nope }}': unknown function 'nope'"
    ), cond
    broken["spec"].pop("nameTemplate")
    broken["spec"]["namePrefix"] = "broken-"
    host.apply(json.dumps(broken))
    prefix = f"clusters.cluster.x-k8s.io/{NS}/c2: spec.template.kubeconfig"
    cond = wait_for(
        lambda: (c := env.condition("broken")).get("message", "").startswith(prefix) and c, prefix
    )
    assert "'{{ source.spec.missing }}' is null (a missing field or reference?)" in cond["message"], cond
    assert env.pc("broken-c2") is None
    widgets = {"group": "example.com", "version": "v1", "resource": "widgets"}
    unserved = {**broken, "metadata": {"name": "unserved"}, "spec": {**broken["spec"], "source": widgets}}
    host.apply(json.dumps(unserved))
    cond = wait_for(
        lambda: (c := env.condition("unserved")).get("reason") == "SourceUnavailable" and c, "unserved"
    )
    assert "the host serves no widgets.example.com in version v1" in cond["message"], cond

    # Once the Secret exists, c3 is imported; the other problems stay where they are.
    host.apply(kubeconfig_secret("c3-kubeconfig", NS, token_kubeconfig(member), "value", {}))
    env.wait_ready_and_synced(f"capi-{NS}-c3")
    assert env.condition("cluster-api", "Conflict")["status"] == "True"

    host.kubectl("delete", "clusterimportpolicies", "broken", "unserved")
    host.kubectl("-n", NS, "delete", "clusters.cluster.x-k8s.io", "c2", "c3")
    host.kubectl("delete", "pediacluster", taken, "--wait=false")
    env.wait_gone(f"capi-{NS}-c3")
    env.wait_gone(taken)
    wait_for(lambda: env.condition("cluster-api", "Conflict").get("status") == "False", "conflict resolved")


def test_labelled_secrets_and_one_importer_among_two_workers(env: Env) -> None:
    host, member = env.host, env.member
    host.kubectl("apply", "-f", str(SECRETS_POLICY))
    label = {"clusterpedia.io/import": "kubeconfig"}
    host.apply(
        kubeconfig_secret("team-a", "clusterpedia-system", member.kubeconfig.read_text(), "kubeconfig", label)
    )
    host.apply(
        kubeconfig_secret(
            "unlabelled", "clusterpedia-system", member.kubeconfig.read_text(), "kubeconfig", {}
        )
    )
    env.wait_ready_and_synced("kc-team-a", KC_GRS)
    uid = env.pc("kc-team-a")["metadata"]["uid"]  # type: ignore[index]
    assert env.pc("kc-unlabelled") is None

    # Exactly one worker holds the controller's Lease; stopping it hands the work to the other,
    # which neither re-creates nor duplicates what was imported.
    first = holder_of(host)
    assert first in env.synchros, first
    env.synchros[first].stop()
    second = next(w for w in env.synchros if w != first)
    wait_for(lambda: holder_of(host) == second, "the other worker leads")
    host.apply(
        kubeconfig_secret("team-b", "clusterpedia-system", token_kubeconfig(member), "kubeconfig", label)
    )
    env.wait_ready_and_synced("kc-team-b", KC_GRS)
    env.wait_ready_and_synced("kc-team-a", KC_GRS)
    assert env.pc("kc-team-a")["metadata"]["uid"] == uid  # type: ignore[index]
    imported = host.get_json("pediaclusters", "-l", "policy.clusterpedia.io/import-policy=kubeconfig-secrets")
    assert sorted(i["metadata"]["name"] for i in imported["items"]) == ["kc-team-a", "kc-team-b"]

    # Removing the label (or the Secret) removes the PediaCluster and its rows.
    host.kubectl("-n", "clusterpedia-system", "label", "secret", "team-a", "clusterpedia.io/import-")
    env.wait_gone("kc-team-a")
    host.kubectl("-n", "clusterpedia-system", "delete", "secret", "team-b")
    env.wait_gone("kc-team-b")
    # Deleting a policy deletes what it imported.
    host.apply(
        kubeconfig_secret("team-c", "clusterpedia-system", member.kubeconfig.read_text(), "kubeconfig", label)
    )
    wait_for(lambda: env.pc("kc-team-c"), "kc-team-c")
    host.kubectl("delete", "clusterimportpolicy", "kubeconfig-secrets")
    env.wait_gone("kc-team-c")


def test_shipped_policies_are_valid_objects(env: Env) -> None:
    for path in sorted(Path(ROOT / "examples").glob("clusterimportpolicy-*.yaml")):
        out = env.host.kubectl("apply", "--dry-run=server", "-f", str(path)).stdout
        assert "created" in out or "configured" in out or "unchanged" in out, (path, out)
