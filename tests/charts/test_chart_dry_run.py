"""Every documented value set of the chart is accepted by a real kube-apiserver.

`kubectl apply --dry-run=server` runs admission and validation (schemas, RBAC escalation checks
for the bindings to system:auth-delegator, APIService validation) without persisting anything.
The PediaCluster CRD is applied for real first, as `helm install` does with `crds/`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.cluster import Cluster
from tests.charts.chart import CHART, NAMESPACE, build_helm, documented_value_sets, render

pytestmark = pytest.mark.e2e

VALUE_SETS = documented_value_sets()


@pytest.fixture(scope="module")
def helm() -> Path:
    return build_helm()


def test_rendered_manifests_pass_server_side_dry_run(
    helm: Path, member_cluster: Callable[..., Cluster]
) -> None:
    cluster = member_cluster("chart-host")
    cluster.kubectl("create", "namespace", NAMESPACE)
    cluster.kubectl("apply", "-f", str(CHART / "crds"))
    cluster.wait_crd("pediaclusters.clusters.clusterpedia.io")
    for vs in VALUE_SETS:
        rendered = render(helm, vs.file)
        assert rendered.returncode == 0, rendered.stderr
        out = cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=rendered.stdout, check=False)
        assert out.returncode == 0, f"value set {vs.name}:\n{out.stderr}"
        lines = out.stdout.strip().splitlines()
        assert lines and all(
            re.search(r" (created|configured|unchanged) \(server dry run\)$", ln) for ln in lines
        )
        objects = sum(1 for ln in rendered.stdout.splitlines() if ln.startswith("kind: "))
        assert len(lines) == objects, f"value set {vs.name}: {len(lines)} of {objects} objects applied"
        assert any(ln.startswith("apiservice.apiregistration.k8s.io/v1beta1.clusterpedia.io") for ln in lines)
    # Dry run persisted nothing.
    left = cluster.kubectl("get", "deployments,apiservices", "-A", "-o", "name").stdout.split()
    assert "apiservice.apiregistration.k8s.io/v1beta1.clusterpedia.io" not in left
    assert not [name for name in left if name.startswith("deployment")]
