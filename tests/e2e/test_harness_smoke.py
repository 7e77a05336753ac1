"""The cluster fixtures are real: real kube-apiservers of two versions, real controllers, real RBAC,
a real aggregation layer, and each kubectl version talks to them."""

from __future__ import annotations

import functools
import json
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from harness.certs import CertificateAuthority
from harness.cluster import Cluster, KubectlError
from harness.paths import KUBECTL_VERSIONS, versions

pytestmark = pytest.mark.e2e


def eventually(check: Callable[[], Any], timeout: float = 60.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.5)
    raise AssertionError(f"{what} not met within {timeout}s (last: {last!r})")


@pytest.mark.parametrize("kubectl_version", KUBECTL_VERSIONS)
def test_kubectl_version_reports_server_version(
    two_member_clusters: tuple[Cluster, Cluster], kubectl: Callable[..., Path], kubectl_version: str
) -> None:
    exe = kubectl(kubectl_version)
    assert exe.name == f"kubectl.{kubectl_version}"
    current, older = two_member_clusters
    assert (current.version, older.version) == (
        versions()["K8S_VERSION_CURRENT"],
        versions()["K8S_VERSION_OLDER"],
    )
    for cluster in (current, older):
        out = json.loads(cluster.kubectl("version", "-o", "json", version=kubectl_version).stdout)
        assert out["serverVersion"]["gitVersion"] == cluster.version
        assert out["clientVersion"]["gitVersion"].startswith(f"v{kubectl_version}.")


def test_objects_created_with_kubectl_are_listed_by_the_python_client(
    two_member_clusters: tuple[Cluster, Cluster],
) -> None:
    for cluster in two_member_clusters:
        cluster.kubectl("create", "namespace", "smoke")
        cluster.kubectl(
            "create", "configmap", "hello", "-n", "smoke", f"--from-literal=cluster={cluster.name}"
        )
    for cluster in two_member_clusters:
        with cluster.api_client() as api:
            items = client.CoreV1Api(api).list_namespaced_config_map("smoke").items
        data = {cm.metadata.name: cm.data for cm in items if cm.metadata}
        assert data["hello"] == {"cluster": cluster.name}


def test_deployment_gets_replicaset_and_pods_with_owner_references(
    two_member_clusters: tuple[Cluster, Cluster],
) -> None:
    deployment = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: nginx, image: nginx:1.27}]}
"""
    for cluster in two_member_clusters:
        cluster.apply(deployment)
    for cluster in two_member_clusters:
        deploy = cluster.get_json("deployment", "web", "-n", "default")
        rs = eventually(
            functools.partial(_items, cluster, "replicasets", "app=web", 1),
            what=f"{cluster.name}: replicaset of deployment web",
        )
        assert len(rs) == 1
        assert rs[0]["metadata"]["ownerReferences"][0]["uid"] == deploy["metadata"]["uid"]
        pods = eventually(
            functools.partial(_items, cluster, "pods", "app=web", 2),
            what=f"{cluster.name}: pods of replicaset {rs[0]['metadata']['name']}",
        )
        assert {p["metadata"]["ownerReferences"][0]["uid"] for p in pods} == {rs[0]["metadata"]["uid"]}
        assert {p["status"].get("phase") for p in pods} == {"Pending"}  # no kubelet, no scheduler


def _items(cluster: Cluster, resource: str, selector: str, count: int) -> list[Any] | None:
    """The objects matching ``selector`` once there are ``count`` of them, all with an owner."""
    items: list[Any] = cluster.get_json(resource, "-n", "default", "-l", selector)["items"]
    if len(items) >= count and all(i["metadata"].get("ownerReferences") for i in items):
        return items
    return None


def test_rbac_denials_are_real(two_member_clusters: tuple[Cluster, Cluster]) -> None:
    cluster = two_member_clusters[0]
    nobody = cluster.user_kubeconfig("nobody")
    with pytest.raises(KubectlError) as denied:
        cluster.kubectl(f"--kubeconfig={nobody}", "get", "pods", "-n", "default")
    assert "forbidden" in denied.value.stderr.lower()
    cluster.kubectl("create", "clusterrole", "pod-reader", "--verb=get,list", "--resource=pods")
    cluster.kubectl(
        "create", "clusterrolebinding", "nobody-reads", "--clusterrole=pod-reader", "--user=nobody"
    )
    eventually(
        lambda: (
            cluster.kubectl(f"--kubeconfig={nobody}", "get", "pods", "-n", "default", check=False).returncode
            == 0
        ),
        what="pod-reader binding takes effect",
    )


def test_bearer_token_is_admin(two_member_clusters: tuple[Cluster, Cluster]) -> None:
    cluster = two_member_clusters[1]
    status, body = cluster.get("/apis/authentication.k8s.io/v1")
    assert status == 200
    status, body = cluster.get("/api/v1/namespaces/kube-system/secrets")
    assert status == 200, body


def test_restart_apiserver_keeps_port_and_data(member_cluster: Callable[..., Cluster]) -> None:
    cluster = member_cluster("restartable", "older")
    cluster.kubectl("create", "configmap", "survivor", "--from-literal=a=b")
    server = cluster.server
    cluster.stop_apiserver()
    assert cluster.kubectl("get", "configmap", "survivor", check=False, timeout=30).returncode != 0
    cluster.start_apiserver()
    assert cluster.server == server
    assert cluster.get_json("configmap", "survivor")["data"] == {"a": "b"}
    cluster.restart_apiserver()
    assert cluster.get_json("configmap", "survivor")["data"] == {"a": "b"}


# ---------------------------------------------------------------- aggregation

SMOKE_GROUP = "smoke.example.com"
RESOURCE_LIST = {
    "kind": "APIResourceList",
    "apiVersion": "v1",
    "groupVersion": f"{SMOKE_GROUP}/v1",
    "resources": [
        {
            "name": "widgets",
            "singularName": "widget",
            "namespaced": True,
            "kind": "Widget",
            "verbs": ["get", "list"],
        }
    ],
}


class _SmokeServer:
    """A tiny HTTPS server standing in for an aggregated API server; it records what it received."""

    def __init__(self, host: Cluster, tmp: Path):
        ca = CertificateAuthority("smoke-ca")
        cert, key = ca.serving_cert("smoke", hosts=("127.0.0.1", "localhost", "smoke.default.svc")).write(
            tmp, "smoke"
        )
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        ctx.verify_mode = ssl.CERT_OPTIONAL  # the aggregator presents the front-proxy client cert
        ctx.load_verify_locations(cafile=str(host.front_proxy_ca_file))
        # (path, headers as (name, value) pairs: X-Remote-Group repeats, client certificate CN)
        self.requests: list[tuple[str, list[tuple[str, str]], str]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                peer: Any = (
                    self.connection.getpeercert() if isinstance(self.connection, ssl.SSLSocket) else None
                )
                subject = {k: v for rdn in (peer or {}).get("subject", ()) for k, v in rdn}
                server.requests.append(
                    (self.path, list(self.headers.items()), str(subject.get("commonName", "")))
                )
                if self.path.split("?")[0] == f"/apis/{SMOKE_GROUP}/v1":
                    body = json.dumps(RESOURCE_LIST).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                else:
                    body = b'{"kind":"Status","apiVersion":"v1","status":"Failure","code":404}'
                    self.send_response(404)
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port: int = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def smoke_server(host_cluster: Cluster, tmp_path: Path) -> Iterator[_SmokeServer]:
    server = _SmokeServer(host_cluster, tmp_path)
    try:
        yield server
    finally:
        server.close()


def test_aggregator_proxies_to_a_local_process(host_cluster: Cluster, smoke_server: _SmokeServer) -> None:
    host_cluster.apply(f"""
apiVersion: v1
kind: Service
metadata: {{name: smoke, namespace: default}}
spec: {{type: ExternalName, externalName: localhost}}
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {{name: v1.{SMOKE_GROUP}}}
spec:
  group: {SMOKE_GROUP}
  version: v1
  service: {{name: smoke, namespace: default, port: {smoke_server.port}}}
  insecureSkipTLSVerify: true
  groupPriorityMinimum: 1000
  versionPriority: 100
""")

    def available() -> bool:
        conds = (
            host_cluster.get_json("apiservice", f"v1.{SMOKE_GROUP}").get("status", {}).get("conditions", [])
        )
        return any(c["type"] == "Available" and c["status"] == "True" for c in conds)

    eventually(available, timeout=90, what=f"APIService v1.{SMOKE_GROUP} Available")
    body = json.loads(host_cluster.kubectl("get", "--raw", f"/apis/{SMOKE_GROUP}/v1").stdout)
    assert body == RESOURCE_LIST

    def values(headers: list[tuple[str, str]], name: str) -> list[str]:
        return [v for k, v in headers if k.lower() == name.lower()]

    proxied = [r for r in smoke_server.requests if values(r[1], "X-Remote-User") == ["admin"]]
    assert proxied, [(p, values(h, "X-Remote-User")) for p, h, _ in smoke_server.requests]
    path, headers, client_cn = proxied[-1]
    assert path == f"/apis/{SMOKE_GROUP}/v1"
    assert "system:masters" in values(headers, "X-Remote-Group")
    assert client_cn == "front-proxy-client"  # the aggregator authenticated with the proxy client cert

    # and kubectl's discovery sees the aggregated group. The host's aggregated discovery document
    # (what kubectl 1.27+ reads) is refreshed by its own controller after the APIService turns
    # Available, so the group shows up there a moment later (CI once read it before it had).
    def discovered() -> list[str]:
        out = host_cluster.kubectl("api-resources", f"--api-group={SMOKE_GROUP}", "-o", "name")
        return out.stdout.split()

    names = eventually(discovered, timeout=60, what=f"{SMOKE_GROUP} in the host's discovery")
    assert names == [f"widgets.{SMOKE_GROUP}"]
