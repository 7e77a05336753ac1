"""The seed's recipe, verbatim, on a member of each Kubernetes version: apply
examples/clusterpedia_synchro_rbac.yaml, read token and CA with the seed's two commands (which
need `.secrets[0].name` on the ServiceAccount: Kubernetes >= 1.24 creates no token Secret, so the
example declares one), fill examples/pediacluster.yaml with them, and the synchro syncs with that
read-only identity through real RBAC."""

# ruff: noqa: E501  (the seed's commands stay verbatim)

from __future__ import annotations

import base64
import os
import subprocess
from typing import Any

import pytest
import yaml

from harness.cluster import Cluster
from tests.e2e.sync_support import (
    GR,
    ROOT,
    cluster_rows,
    install_crd,
    make_settings,
    pediacluster_status,
    ready_condition,
    start_synchro,
    start_writer,
    unique,
    wait_for,
    wait_store_matches,
)

pytestmark = pytest.mark.e2e

SEED_COMMANDS = """
set -e
kubectl apply -f examples/clusterpedia_synchro_rbac.yaml
SYNCHRO_TOKEN=$(kubectl get secret $(kubectl get serviceaccount clusterpedia-synchro -o jsonpath='{.secrets[0].name}') -o jsonpath='{.data.token}')
SYNCHRO_CA=$(kubectl get secret $(kubectl get serviceaccount clusterpedia-synchro -o jsonpath='{.secrets[0].name}') -o jsonpath='{.data.ca\\.crt}')
echo "$SYNCHRO_TOKEN"
echo "$SYNCHRO_CA"
"""


def seed_commands(member: Cluster, kubectl: str) -> tuple[str, str]:
    bindir = ROOT / ".pytest_cache" / f"kubectl-{unique('bin')}"
    bindir.mkdir(parents=True)
    (bindir / "kubectl").symlink_to(kubectl)
    env = {**os.environ, "KUBECONFIG": str(member.kubeconfig), "PATH": f"{bindir}:{os.environ['PATH']}"}
    try:

        def run() -> tuple[str, str] | None:
            out = subprocess.run(
                ["bash", "-c", SEED_COMMANDS], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
            )
            assert out.returncode == 0, out.stderr
            token, ca = out.stdout.splitlines()[-2:]  # after kubectl apply's own output
            # The token controller fills the Secret a moment after it is created.
            return (token, ca) if token and ca else None

        result: tuple[str, str] = wait_for(run, "the token Secret to be filled", timeout=60, interval=1)
        return result
    finally:
        (bindir / "kubectl").unlink()
        bindir.rmdir()


@pytest.mark.parametrize(("version", "kubectl_version"), [("current", "1.32"), ("older", "1.27")])
def test_seed_recipe(
    version: str,
    kubectl_version: str,
    member_cluster: Any,
    kubectl: Any,
    host_cluster: Cluster,
    sqlite_url: str,
) -> None:
    member: Cluster = member_cluster(f"rbac-{version}", version=version, controller_manager=True)
    token, ca = seed_commands(member, str(kubectl(kubectl_version)))

    example = yaml.safe_load((ROOT / "examples/pediacluster.yaml").read_text())
    name = f"cluster-{version}"
    example["metadata"]["name"] = name
    example["spec"].update(apiserverURL=member.server, tokenData=token, caData=ca)
    install_crd(host_cluster)
    host_cluster.apply(yaml.safe_dump(example))
    member.apply(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: default}\n"
        "spec: {replicas: 2, selector: {matchLabels: {a: web}},\n"
        "  template: {metadata: {labels: {a: web}}, spec: {containers: [{name: c, image: nginx}]}}}"
    )

    grs: list[GR] = [("apps", "v1", "deployments"), ("", "v1", "pods")]
    settings = make_settings(host_cluster, sqlite_url, f"memory://{unique('q')}")
    writer, synchro = start_writer(settings), start_synchro(settings, unique("w"))
    try:
        wait_store_matches(sqlite_url, lambda: cluster_rows(name, member, grs), [name])
        assert wait_for(lambda: len(cluster_rows(name, member, [("", "v1", "pods")])) == 2, "2 pods")
        wait_store_matches(sqlite_url, lambda: cluster_rows(name, member, grs), [name])
        cond = wait_for(
            lambda: (
                (c := ready_condition(pediacluster_status(host_cluster, name))).get("reason")
                not in (None, "Pending")
                and c
            ),
            "ready",
        )
        assert (cond["status"], cond["reason"]) == ("True", "Healthy")
        status = pediacluster_status(host_cluster, name)
        assert status["version"] == member.version
        # Read-only: the token cannot write (RBAC denies it).
        denied = subprocess.run(
            [
                str(kubectl(kubectl_version)),
                "--kubeconfig=/dev/null",
                f"--server={member.server}",
                f"--certificate-authority={member.ca_file}",
                f"--token={base64.b64decode(token).decode()}",
                "create",
                "configmap",
                "x",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert denied.returncode != 0 and "forbidden" in denied.stderr
    finally:
        synchro.stop()
        writer.stop()
        host_cluster.kubectl("delete", "pediacluster", name, "--wait=false")
