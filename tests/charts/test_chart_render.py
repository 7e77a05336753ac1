"""`helm template` of charts/clusterpedia for every value set its README documents.

The rendered objects are checked against the rest of the project: container args parse with the
real `clusterpedia` parser, the config file holds only real settings, the APIServices point at the
API Service, the generated caBundle verifies the serving certificate for the name the aggregator
checks, and bundled databases exist exactly when no external one is configured.
"""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from cli.flags import overrides_from, setting_fields
from cli.main import build_parser
from common.settings import load_settings
from tests.charts.chart import (
    CHART,
    NAMESPACE,
    RELEASE,
    ROOT,
    ValueSet,
    build_helm,
    by_kind,
    documented_value_sets,
    render,
    render_objects,
)

VALUE_SETS = documented_value_sets()
FULLNAME = RELEASE  # the release name contains the chart name


@pytest.fixture(scope="module")
def helm() -> Path:
    return build_helm()


def test_readme_documents_every_value_file() -> None:
    documented = {v.file for v in VALUE_SETS if v.file}
    on_disk = {f"ci/{p.name}" for p in (CHART / "ci").glob("*.yaml")}
    assert documented == on_disk
    assert any(v.file is None for v in VALUE_SETS)  # the defaults are a documented set too
    assert len(VALUE_SETS) >= 5


@pytest.mark.parametrize("vs", VALUE_SETS, ids=[v.name for v in VALUE_SETS])
def test_helm_lint_passes(helm: Path, vs: ValueSet) -> None:
    argv = [str(helm), "lint", str(CHART), "--strict", "--namespace", NAMESPACE]
    if vs.file:
        argv += ["-f", str(CHART / vs.file)]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 chart(s) failed" in out.stdout


def values_of(vs: ValueSet) -> dict[str, Any]:
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    if vs.file is None:
        return dict(defaults)
    override = yaml.safe_load((CHART / vs.file).read_text())

    def merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
        out = dict(a)
        for k, v in b.items():
            out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
        return out

    return merge(defaults, override)


def containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    return list(obj["spec"]["template"]["spec"]["containers"])


@pytest.mark.parametrize("vs", VALUE_SETS, ids=[v.name for v in VALUE_SETS])
def test_value_set_renders_consistent_objects(helm: Path, vs: ValueSet) -> None:
    objects = render_objects(helm, vs.file)
    values = values_of(vs)
    deployments = by_kind(objects, "Deployment")
    ksm = values["kubeStateMetrics"]["enabled"]
    assert set(deployments) == {f"{FULLNAME}-{t}" for t in ("apiserver", "synchro", "writer")} | (
        {f"{FULLNAME}-kube-state-metrics"} if ksm else set()
    )

    parser = build_parser()
    config_map = by_kind(objects, "ConfigMap")[f"{FULLNAME}-config"]
    config = yaml.safe_load(config_map["data"]["config.yaml"])
    known = {f.key for f in setting_fields()}
    for key, value in config.items():
        if isinstance(value, dict):
            assert all(f"{key}.{k}" in known for k in value), (key, value)
        else:
            assert key in known, key
    for tier in ("apiserver", "synchro", "writer"):
        dep = deployments[f"{FULLNAME}-{tier}"]
        assert dep["spec"]["replicas"] == values[tier]["replicas"]
        (container,) = containers(dep)
        ns = parser.parse_args(container["args"])  # an unknown flag exits: the test fails
        assert ns.command == tier
        assert ns.config == "/etc/clusterpedia/config.yaml"
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert "/etc/clusterpedia/config.yaml" in mounts
        env = {e["name"] for e in container["env"]}
        assert env == {"CLUSTERPEDIA_STORAGE", "CLUSTERPEDIA_QUEUE"}
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        for probe in ("livenessProbe", "readinessProbe"):
            assert container[probe]["httpGet"]["port"] in ports
            assert container[probe]["httpGet"]["path"] in ("/livez", "/readyz")
        assert container["resources"]["requests"]
        if tier != "apiserver":
            assert ports["metrics"] == values[tier]["metricsPort"]
            assert f"--metrics-port={values[tier]['metricsPort']}" in container["args"]
    settings = load_settings(config_file=None, overrides=config, environ={})
    assert settings.apiserver.bind_host == "0.0.0.0"
    assert settings.metrics_bind_host == "0.0.0.0"
    assert settings.synchro.lease_namespace == NAMESPACE
    assert settings.apiserver.port == values["apiserver"]["port"]

    cluster_scoped = {"ClusterRole", "ClusterRoleBinding", "APIService"}
    for obj in objects:
        if obj["kind"] not in cluster_scoped:
            # explicit, so `kubectl apply -f` of the rendered chart lands where helm would put it
            assert obj["metadata"].get("namespace") in (NAMESPACE, "kube-system"), obj["metadata"]["name"]

    pdbs = by_kind(objects, "PodDisruptionBudget")
    assert len(pdbs) == 3

    statefulsets = set(by_kind(objects, "StatefulSet"))
    external_storage = bool(values["storage"]["url"] or values["storage"]["existingSecret"])
    external_queue = bool(values["queue"]["url"] or values["queue"]["existingSecret"])
    bundled_db = f"{FULLNAME}-postgres" if values["storage"]["type"] == "postgres" else f"{FULLNAME}-mariadb"
    assert (bundled_db in statefulsets) is not external_storage
    assert (f"{FULLNAME}-redis" in statefulsets) is not external_queue
    assert len(statefulsets) == (not external_storage) + (not external_queue)

    secrets = by_kind(objects, "Secret")
    conn = secrets.get(f"{FULLNAME}-connections", {}).get("stringData", {})
    if not values["storage"]["existingSecret"]:
        expected = (
            values["storage"]["url"]
            or {
                "postgres": f"postgresql://clusterpedia:clusterpedia@{FULLNAME}-postgres:5432/clusterpedia",
                "mysql": f"mysql://clusterpedia:clusterpedia@{FULLNAME}-mariadb:3306/clusterpedia",
            }[values["storage"]["type"]]
        )
        assert conn["storage"] == expected
    if not values["queue"]["existingSecret"]:
        assert conn["queue"] == (values["queue"]["url"] or f"redis://{FULLNAME}-redis:6379/0")


@pytest.mark.parametrize("vs", VALUE_SETS, ids=[v.name for v in VALUE_SETS])
def test_apiservices_reach_the_api_service_and_trust_its_certificate(helm: Path, vs: ValueSet) -> None:
    objects = render_objects(helm, vs.file)
    values = values_of(vs)
    services = by_kind(objects, "Service")
    api_svc = services[f"{FULLNAME}-apiserver"]
    (svc_port,) = api_svc["spec"]["ports"]
    assert svc_port["port"] == 443 and svc_port["targetPort"] == "https"
    apiservices = by_kind(objects, "APIService")
    assert set(apiservices) == {"v1beta1.clusterpedia.io", "v1alpha1.pedia.clusterpedia.io"}
    for name, svc in apiservices.items():
        version, group = name.split(".", 1)
        assert (svc["spec"]["group"], svc["spec"]["version"]) == (group, version)
        assert svc["spec"]["service"] == {
            "name": f"{FULLNAME}-apiserver",
            "namespace": NAMESPACE,
            "port": 443,
        }
    bundles = {svc["spec"]["caBundle"] for svc in apiservices.values()}
    assert len(bundles) == 1
    ca = x509.load_pem_x509_certificate(base64.b64decode(bundles.pop()))

    api = by_kind(objects, "Deployment")[f"{FULLNAME}-apiserver"]
    volumes = {v["name"]: v for v in api["spec"]["template"]["spec"]["volumes"]}
    secret_name = volumes["certs"]["secret"]["secretName"]
    if not values["certificates"]["generate"]:
        assert secret_name == values["certificates"]["existingSecret"]
        assert f"{FULLNAME}-apiserver-certs" not in by_kind(objects, "Secret")
        return
    secret = by_kind(objects, "Secret")[secret_name]
    cert = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    # The aggregator verifies the name <service>.<namespace>.svc against the caBundle.
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert f"{FULLNAME}-apiserver.{NAMESPACE}.svc" in sans.get_values_for_type(x509.DNSName)
    key = ca.public_key()
    assert cert.signature_hash_algorithm is not None
    if isinstance(key, rsa.RSAPublicKey):
        key.verify(
            cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), cert.signature_hash_algorithm
        )
    else:
        assert isinstance(key, ec.EllipticCurvePublicKey)
        key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))
    assert base64.b64decode(secret["data"]["ca.crt"]) == base64.b64decode(
        by_kind(objects, "APIService")["v1beta1.clusterpedia.io"]["spec"]["caBundle"]
    )


def test_rbac_grants_what_each_tier_needs(helm: Path) -> None:
    objects = render_objects(helm)
    crbs = by_kind(objects, "ClusterRoleBinding")
    delegator = crbs[f"{FULLNAME}-apiserver-auth-delegator"]
    assert delegator["roleRef"]["name"] == "system:auth-delegator"
    reader = by_kind(objects, "RoleBinding")[f"{FULLNAME}-apiserver-auth-reader"]
    assert reader["metadata"]["namespace"] == "kube-system"
    assert reader["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "extension-apiserver-authentication-reader",
    }
    synchro_rules = by_kind(objects, "ClusterRole")[f"{FULLNAME}-synchro"]["rules"]
    granted = {(r, v) for rule in synchro_rules for r in rule["resources"] for v in rule["verbs"]}
    for need in [
        ("pediaclusters", "watch"),
        ("pediaclusters", "patch"),
        ("pediaclusters/status", "patch"),
        ("pediaclusters/finalizers", "update"),
        ("pediaclusters", "create"),
        ("pediaclusters", "delete"),
        ("clusterimportpolicies", "list"),
        ("clusterimportpolicies/status", "patch"),
    ]:
        assert need in granted
    assert not any("secrets" in rule["resources"] for rule in synchro_rules)  # only by clusterImport
    with_sources = render_objects(
        helm, None, "--set", "clusterImport.sourceRules[0].apiGroups[0]=cluster.x-k8s.io",
        "--set", "clusterImport.sourceRules[0].resources[0]=clusters",
        "--set", "clusterImport.sourceRules[0].verbs[0]=list",
    )  # fmt: skip
    rules = by_kind(with_sources, "ClusterRole")[f"{FULLNAME}-synchro"]["rules"]
    assert {"apiGroups": ["cluster.x-k8s.io"], "resources": ["clusters"], "verbs": ["list"]} in rules
    role = by_kind(objects, "Role")[f"{FULLNAME}-synchro"]
    assert role["metadata"]["namespace"] == NAMESPACE
    lease_rule = next(r for r in role["rules"] if r["apiGroups"] == ["coordination.k8s.io"])
    assert {"get", "create", "update"} <= set(lease_rule["verbs"])
    users = by_kind(objects, "ClusterRole")[f"{FULLNAME}-reader"]["rules"]
    assert any("clusterpedia.io" in r["apiGroups"] and "list" in r["verbs"] for r in users)
    editors = by_kind(objects, "ClusterRole")[f"{FULLNAME}-editor"]["rules"]
    assert {"create", "update", "patch", "delete", "deletecollection"} <= set(editors[0]["verbs"])
    # the API tier reads PediaClusters and CollectionResourceDefinitions, as the example grants
    api_rules = by_kind(objects, "ClusterRole")[f"{FULLNAME}-apiserver"]["rules"]
    example = {
        doc["kind"]: doc
        for doc in yaml.safe_load_all((ROOT / "examples/clusterpedia_apiserver_rbac.yaml").read_text())
    }
    assert api_rules == example["ClusterRole"]["rules"]
    assert by_kind(objects, "Role")[f"{FULLNAME}-apiserver"]["rules"] == example["Role"]["rules"]
    assert {"apiGroups": ["policy.clusterpedia.io"], "resources": ["collectionresourcedefinitions"],
            "verbs": ["get", "list", "watch"]} in api_rules  # fmt: skip
    # writes are forwarded with the PediaClusters' credentials, some of them in Secrets
    api_role = by_kind(objects, "Role")[f"{FULLNAME}-apiserver"]
    assert api_role["metadata"]["namespace"] == NAMESPACE
    assert api_role["rules"] == [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]
    # Each tier runs under its own ServiceAccount.
    for tier in ("apiserver", "synchro", "writer"):
        dep = by_kind(objects, "Deployment")[f"{FULLNAME}-{tier}"]
        assert dep["spec"]["template"]["spec"]["serviceAccountName"] == f"{FULLNAME}-{tier}"
    assert set(by_kind(objects, "ServiceAccount")) == {
        f"{FULLNAME}-{t}" for t in ("apiserver", "synchro", "writer")
    }


def test_config_values_reach_the_config_file(helm: Path) -> None:
    objects = render_objects(
        helm, None, "--set-json", "config.writer.batch_max_wait_seconds=0.5", "--set", "logFormat=text"
    )
    config = yaml.safe_load(by_kind(objects, "ConfigMap")[f"{FULLNAME}-config"]["data"]["config.yaml"])
    assert config["writer"]["batch_max_wait_seconds"] == 0.5
    assert config["writer"]["batch_max_events"] == 1000  # chart default kept beside the override
    assert config["log_format"] == "text"
    assert config["apiserver"]["workers"] == 2  # one port, two API processes per replica


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "storage.type=oracle"], "storage.type must be postgres or mysql"),
        (["--set", "certificates.generate=false"], "certificates.existingSecret is required"),
        (
            ["--set", "certificates.generate=false", "--set", "certificates.existingSecret=x"],
            "certificates.caBundle is required",
        ),
    ],
)
def test_bad_values_fail_with_a_clear_message(helm: Path, args: list[str], message: str) -> None:
    out = render(helm, None, *args)
    assert out.returncode != 0
    assert message in out.stderr


def test_kube_state_metrics_tier(helm: Path) -> None:
    """Its args parse with the real CLI into the settings the Service and probes point at, the token
    Secret is mounted where --bearer-token-file reads it, and no ServiceAccount token is mounted."""
    objects = render_objects(helm, "ci/kube-state-metrics-values.yaml")
    dep = by_kind(objects, "Deployment")[f"{FULLNAME}-kube-state-metrics"]
    pod = dep["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    (container,) = containers(dep)
    ns = build_parser().parse_args(container["args"])
    assert ns.command == "kube-state-metrics"
    config = yaml.safe_load(by_kind(objects, "ConfigMap")[f"{FULLNAME}-config"]["data"]["config.yaml"])
    settings = load_settings(config_file=None, overrides={**config, **overrides_from(ns)}, environ={})
    ksm = settings.kube_state_metrics
    assert (ksm.bind_host, ksm.port, ksm.refresh_interval_seconds) == ("0.0.0.0", 8080, 120.0)
    token_dir, token_name = ksm.bearer_token_file.rsplit("/", 1)
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["token"] == token_dir
    (volume,) = [v for v in pod["volumes"] if v["name"] == "token"]
    assert volume["secret"] == {"secretName": "ksm-token", "items": [{"key": "token", "path": token_name}]}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8080}
    assert {container[p]["httpGet"]["path"] for p in ("livenessProbe", "readinessProbe")} == {
        "/livez",
        "/readyz",
    }
    service = by_kind(objects, "Service")[f"{FULLNAME}-kube-state-metrics"]
    assert service["spec"]["ports"] == [{"name": "http", "port": 8080, "targetPort": "http"}]
    assert service["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
    assert f"{FULLNAME}-kube-state-metrics" not in by_kind(render_objects(helm, None), "Deployment")
