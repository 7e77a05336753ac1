from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CRD = "clusters.clusterpedia.io_pediaclusters.yaml"
POLICY_CRD = "policy.clusterpedia.io_clusterimportpolicies.yaml"
COLLECTIONS_CRD = "policy.clusterpedia.io_collectionresourcedefinitions.yaml"


@pytest.mark.parametrize("crd", [CRD, POLICY_CRD, COLLECTIONS_CRD])
def test_examples_copy_equals_chart_crd(crd: str) -> None:
    assert (ROOT / "examples/crds" / crd).read_bytes() == (
        ROOT / "charts/clusterpedia/crds" / crd
    ).read_bytes()


def test_seed_example_fits_the_schema_fields() -> None:
    crd = yaml.safe_load((ROOT / "charts/clusterpedia/crds" / CRD).read_text())
    version = crd["spec"]["versions"][0]
    spec_props = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    example = yaml.safe_load((ROOT / "examples/pediacluster.yaml").read_text())
    assert example["apiVersion"] == f"{crd['spec']['group']}/{version['name']}"
    assert set(example["spec"]) <= set(spec_props)
    assert {
        "kubeconfig",
        "secretRef",
        "syncAllCustomResources",
        "insecureSkipTLSVerify",
        "namespaces",
    } <= set(spec_props)
    assert [c["name"] for c in version["additionalPrinterColumns"] if not c.get("priority")] == [
        "Ready",
        "Version",
        "Resources",
        "Age",
    ]
