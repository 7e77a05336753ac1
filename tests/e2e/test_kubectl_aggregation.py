"""The seed's kubectl sessions through a real host kube-apiserver (aggregation), with auth.

The API tier runs with ``--authenticate --authorize`` against the host; APIServices
``v1beta1.clusterpedia.io`` and ``v1alpha1.pedia.clusterpedia.io`` point at it through an
ExternalName Service; ``hack/gen-clusterconfigs.sh`` writes the ``clusterpedia`` and per-cluster
kubeconfig entries. Then kubectl 1.27, 1.29 and 1.32 run the seed's commands through the host and
see rows from both real member clusters, while users without RBAC rights get 403, requests that
bypass the aggregator without credentials get 401, and forged identity headers are not trusted.
"""

from __future__ import annotations

import base64
import json
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from common.storage import open_store
from harness.cluster import Cluster
from harness.paths import KUBECTL_VERSIONS, kubectl_binary
from tests.e2e.kubectl_support import (
    DEPLOYMENTS,
    PODS,
    READER_ROLE,
    REPO,
    RESOURCES_PATH,
    ApiTier,
    drop_columns,
    fill_from_cluster,
    kubectl_run,
    parse_table,
)

pytestmark = pytest.mark.e2e

SEED_OBJECTS = {
    "cluster-1": """
apiVersion: apps/v1
kind: Deployment
metadata: {name: coredns, namespace: kube-system}
spec:
  replicas: 2
  selector: {matchLabels: {k8s-app: kube-dns}}
  template:
    metadata: {labels: {k8s-app: kube-dns}}
    spec: {containers: [{name: coredns, image: "registry.k8s.io/coredns/coredns:v1.11.1"}]}
""",
    "cluster-2": """
apiVersion: apps/v1
kind: Deployment
metadata: {name: coredns, namespace: kube-system}
spec:
  replicas: 2
  selector: {matchLabels: {k8s-app: kube-dns}}
  template:
    metadata: {labels: {k8s-app: kube-dns}}
    spec: {containers: [{name: coredns, image: "registry.k8s.io/coredns/coredns:v1.10.1"}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: calico-kube-controllers, namespace: kube-system}
spec:
  replicas: 1
  selector: {matchLabels: {app: calico}}
  template:
    metadata: {labels: {app: calico}}
    spec: {containers: [{name: calico, image: "calico/kube-controllers:v3.26"}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: keycloak, namespace: default}
spec:
  replicas: 1
  selector: {matchLabels: {app: keycloak}}
  template:
    metadata: {labels: {app: keycloak}}
    spec: {containers: [{name: keycloak, image: "keycloak:22"}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: dao-2048, namespace: default}
spec:
  replicas: 1
  selector: {matchLabels: {app: dao}}
  template:
    metadata: {labels: {app: dao}}
    spec: {containers: [{name: dao, image: "dao-2048:1"}]}
""",
}

REGISTRATION = """
apiVersion: v1
kind: Namespace
metadata: {name: clusterpedia-system}
---
apiVersion: v1
kind: Service
metadata: {name: clusterpedia-apiserver, namespace: clusterpedia-system}
spec:
  type: ExternalName
  externalName: localhost
  ports: [{port: PORT}]
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {name: v1beta1.clusterpedia.io}
spec:
  group: clusterpedia.io
  version: v1beta1
  service: {namespace: clusterpedia-system, name: clusterpedia-apiserver, port: PORT}
  caBundle: CA_BUNDLE
  groupPriorityMinimum: 1000
  versionPriority: 100
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {name: v1alpha1.pedia.clusterpedia.io}
spec:
  group: pedia.clusterpedia.io
  version: v1alpha1
  service: {namespace: clusterpedia-system, name: clusterpedia-apiserver, port: PORT}
  caBundle: CA_BUNDLE
  groupPriorityMinimum: 1000
  versionPriority: 100
"""

RBAC = (
    READER_ROLE
    + """
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: carol-reads}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: clusterpedia-reader}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: carol}]
---
# bob may "get" what the host sees (resources/<subresource>), but not list: the host lets his
# requests through, the API tier's own SubjectAccessReview (list resources) refuses them
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: clusterpedia-getter}
rules:
- apiGroups: [clusterpedia.io]
  resources: ["*"]
  verbs: [get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: bob-gets}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: clusterpedia-getter}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: bob}]
"""
)


def pedia_cluster(name: str, server: str) -> str:
    return f"""
apiVersion: clusters.clusterpedia.io/v1alpha1
kind: PediaCluster
metadata: {{name: {name}}}
spec:
  apiserverURL: "{server}"
  resources:
  - group: apps
    resources: [deployments]
"""


def gen_clusterconfigs(kubeconfig: Path) -> subprocess.CompletedProcess[str]:
    """``hack/gen-clusterconfigs.sh`` on ``kubeconfig`` (kubectl's cache under a scratch $HOME)."""
    home = kubeconfig.parent / "home"
    home.mkdir(exist_ok=True)
    env = {"KUBECONFIG": str(kubeconfig), "KUBECTL": str(kubectl_binary("1.32")), "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        ["bash", str(REPO / "hack/gen-clusterconfigs.sh")],
        env={**env, "HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


@dataclass
class Setup:
    host: Cluster
    members: dict[str, Cluster]
    api: ApiTier
    kubeconfig: Path
    gen_output: str


def _wait_rollout(cluster: Cluster, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items = cluster.get_json("deployments", "-A")["items"]
        if items and all(d.get("status", {}).get("updatedReplicas") == d["spec"]["replicas"] for d in items):
            return
        time.sleep(0.5)
    raise AssertionError(f"{cluster.name}: deployments did not get their ReplicaSets")


def _wait_available(host: Cluster, timeout: float = 90.0) -> None:
    for name in ("v1beta1.clusterpedia.io", "v1alpha1.pedia.clusterpedia.io"):
        proc = host.kubectl(
            "wait",
            "--for=condition=Available",
            f"apiservice/{name}",
            f"--timeout={int(timeout)}s",
            check=False,
        )
        if proc.returncode != 0:
            status = host.kubectl("get", "apiservice", name, "-o", "yaml", check=False).stdout
            raise AssertionError(f"APIService {name} not Available:\n{status}")
    # Available comes first; the host's aggregated discovery document (kubectl 1.27+ reads it)
    # lists the groups once its discovery controller has fetched them, a moment later.
    deadline = time.monotonic() + timeout
    for group in ("clusterpedia.io", "pedia.clusterpedia.io"):
        while not host.kubectl("api-resources", f"--api-group={group}", "-o", "name").stdout.split():
            if time.monotonic() > deadline:
                raise AssertionError(f"group {group} not in the host's discovery within {timeout}s")
            time.sleep(0.5)


@dataclass
class Served:
    api: ApiTier
    kubeconfig: Path
    gen_output: str


def serve_through_host(
    host: Cluster, workdir: Path, store_url: str, host_rbac: str, *extra_args: str, mode: str = "member-rbac"
) -> Served:
    """The API tier (``--authenticate --authorize`` against ``host``, authorization ``mode``)
    registered in ``host`` as both APIServices, ``host_rbac`` applied, and a copy of the host's
    kubeconfig with gen-clusterconfigs' entries (one per PediaCluster already there). The caller
    stops the API tier."""
    api = ApiTier(
        workdir,
        store_url,
        extra_args=[
            "--authenticate",
            "--authorize",
            f"--kubeconfig={host.kubeconfig}",
            f"--authorization-mode={mode}",
            *extra_args,
        ],
    ).start()
    try:
        ca_bundle = base64.b64encode(api.ca_pem).decode()
        host.apply(REGISTRATION.replace("PORT", str(api.port)).replace("CA_BUNDLE", ca_bundle))
        host.apply(host_rbac)
        _wait_available(host)
        kubeconfig = workdir / "kubeconfig"
        shutil.copy(host.kubeconfig, kubeconfig)
        gen = gen_clusterconfigs(kubeconfig)
    except BaseException:
        api.stop()
        raise
    return Served(api, kubeconfig, gen.stdout)


HEAD_LIMIT = 128 * 1024


@pytest.fixture(scope="module")
def setup(
    host_cluster: Cluster,
    two_member_clusters: tuple[Cluster, Cluster],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Setup]:
    workdir = tmp_path_factory.mktemp("aggregation")
    store_url = f"sqlite:///{workdir / 'store.db'}"
    store = open_store(store_url)
    store.migrate()
    members = {c.name: c for c in two_member_clusters}
    for name, cluster in members.items():
        cluster.apply(SEED_OBJECTS[name])
        _wait_rollout(cluster)
        fill_from_cluster(store, cluster, [DEPLOYMENTS, PODS])
    store.close()
    host_cluster.apply(
        (REPO / "charts/clusterpedia/crds/clusters.clusterpedia.io_pediaclusters.yaml").read_text()
    )
    host_cluster.wait_crd("pediaclusters.clusters.clusterpedia.io")
    for name, cluster in members.items():
        host_cluster.apply(pedia_cluster(name, cluster.server))
    served = serve_through_host(
        host_cluster,
        workdir,
        store_url,
        RBAC,
        # below the 200 KB requests of test_oversized_requests_get_a_status_through_the_host
        f"--set=apiserver.max_request_header_bytes={HEAD_LIMIT}",
        mode="host-only",
    )
    try:
        yield Setup(host_cluster, members, served.api, served.kubeconfig, served.gen_output)
    finally:
        served.api.stop()


def run(
    s: Setup, version: str, *args: str, kubeconfig: Path | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    return kubectl_run(kubectl_binary(version), kubeconfig or s.kubeconfig, *args, check=check)


def table(s: Setup, version: str, *args: str) -> tuple[list[str], list[list[str]]]:
    return drop_columns(*parse_table(run(s, version, *args).stdout), ["AGE"])


def test_gen_clusterconfigs_prints_the_seed_summary(setup: Setup) -> None:
    out = setup.gen_output.splitlines()
    assert out[0] == f"Current Context: {setup.host.name}"
    assert out[1] == f"Current Cluster: {setup.host.name}"
    assert out[2] == f"        Server: {setup.host.server}"
    assert out[6] == "        Certificate Authority Data: ***"
    assert out[7:] == ['Cluster "clusterpedia" set.', 'Cluster "cluster-1" set.', 'Cluster "cluster-2" set.']
    clusters = run(setup, "1.32", "config", "get-clusters").stdout.split()
    assert {"clusterpedia", "cluster-1", "cluster-2"} <= set(clusters)
    server = run(
        setup, "1.32", "config", "view", "-o", 'jsonpath={.clusters[?(@.name=="cluster-2")].cluster.server}'
    ).stdout
    assert server == f"{setup.host.server}/apis/clusterpedia.io/v1beta1/resources/clusters/cluster-2"


@pytest.mark.parametrize("version", KUBECTL_VERSIONS)
def test_seed_sessions_through_the_host(setup: Setup, version: str) -> None:
    # kubectl api-resources | grep pedia.clusterpedia.io
    headers, rows = parse_table(run(setup, version, "api-resources").stdout)
    pedia = sorted(r for r in rows if r[2] == "pedia.clusterpedia.io/v1alpha1")
    assert pedia == [
        ["collectionresources", "", "pedia.clusterpedia.io/v1alpha1", "false", "CollectionResource"],
        ["resources", "", "pedia.clusterpedia.io/v1alpha1", "false", "Resources"],
    ]
    headers, rows = parse_table(run(setup, version, "--cluster", "clusterpedia", "api-resources").stdout)
    assert headers == ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
    assert sorted(rows) == [
        ["deployments", "deploy", "apps/v1", "true", "Deployment"],
        ["pods", "po", "v1", "true", "Pod"],
    ]
    headers, rows = table(
        setup, version, "--cluster", "clusterpedia", "get", "deployments", "-n", "kube-system"
    )
    assert headers == ["CLUSTER", "NAME", "READY", "UP-TO-DATE", "AVAILABLE"]
    assert [r[:2] for r in rows] == [
        ["cluster-1", "coredns"],
        ["cluster-2", "calico-kube-controllers"],
        ["cluster-2", "coredns"],
    ]
    assert rows[0][2:] == ["0/2", "2", "0"]  # no kubelets: pods stay Pending
    selector = "search.clusterpedia.io/namespaces in (kube-system, default)"
    headers, rows = table(
        setup, version, "--cluster", "clusterpedia", "get", "deployments", "-A", "-l", selector
    )
    assert headers == ["NAMESPACE", "CLUSTER", "NAME", "READY", "UP-TO-DATE", "AVAILABLE"]
    # default order: cluster, namespace, name
    assert [r[:3] for r in rows] == [
        ["kube-system", "cluster-1", "coredns"],
        ["default", "cluster-2", "dao-2048"],
        ["default", "cluster-2", "keycloak"],
        ["kube-system", "cluster-2", "calico-kube-controllers"],
        ["kube-system", "cluster-2", "coredns"],
    ]
    selector = (
        "search.clusterpedia.io/clusters in (cluster-1, cluster-2),"
        "search.clusterpedia.io/namespaces in (kube-system,default),"
        "search.clusterpedia.io/orderby=name"
    )
    headers, rows = table(
        setup, version, "--cluster", "clusterpedia", "get", "deployments", "-A", "-l", selector
    )
    assert [r[2] for r in rows] == ["calico-kube-controllers", "coredns", "coredns", "dao-2048", "keycloak"]
    headers, rows = table(setup, version, "--cluster", "cluster-1", "get", "deployments", "-A")
    assert [r[:3] for r in rows] == [["kube-system", "cluster-1", "coredns"]]
    headers, rows = table(
        setup,
        version,
        "--cluster",
        "cluster-1",
        "-n",
        "kube-system",
        "get",
        "deployments",
        "coredns",
        "-o",
        "wide",
    )
    assert headers == [
        "CLUSTER",
        "NAME",
        "READY",
        "UP-TO-DATE",
        "AVAILABLE",
        "CONTAINERS",
        "IMAGES",
        "SELECTOR",
    ]
    assert rows == [
        [
            "cluster-1",
            "coredns",
            "0/2",
            "2",
            "0",
            "coredns",
            "registry.k8s.io/coredns/coredns:v1.11.1",
            "k8s-app=kube-dns",
        ]
    ]
    headers, rows = table(setup, version, "get", "collectionresources")
    assert (headers, rows) == (
        ["NAME", "RESOURCES"],
        [["workloads", "deployments.apps,daemonsets.apps,statefulsets.apps"]],
    )
    headers, rows = table(setup, version, "get", "collectionresources", "workloads")
    assert headers == ["CLUSTER", "GROUP", "VERSION", "KIND", "NAMESPACE", "NAME"]
    assert ["cluster-2", "apps", "v1", "Deployment", "kube-system", "calico-kube-controllers"] in rows
    assert len(rows) == 5


def test_pods_golden_through_the_host(setup: Setup) -> None:
    headers, rows = table(setup, "1.32", "--cluster", "clusterpedia", "get", "pods", "-A")
    for name, cluster in setup.members.items():
        want_headers, want_rows = drop_columns(
            *parse_table(cluster.kubectl("get", "pods", "-A").stdout), ["AGE"]
        )
        i = headers.index("CLUSTER")
        assert headers[:i] + headers[i + 1 :] == want_headers
        assert [r[:i] + r[i + 1 :] for r in rows if r[i] == name] == want_rows


def test_users_without_rights_are_refused(setup: Setup) -> None:
    for user in ("alice", "bob"):
        kc = setup.host.user_kubeconfig(user)
        proc = run(
            setup,
            "1.32",
            "--cluster",
            "clusterpedia",
            "get",
            "deployments",
            "-A",
            kubeconfig=_with_clusters(setup, kc, user),
            check=False,
        )
        assert proc.returncode != 0
        assert "forbidden" in proc.stderr.lower(), proc.stderr
    # bob passes the host's own check (get on resources/*) and is refused by the API tier's review
    bob = _with_clusters(setup, setup.host.user_kubeconfig("bob"), "bob")
    proc = run(
        setup,
        "1.32",
        "get",
        "--raw",
        "/apis/clusterpedia.io/v1beta1/resources/apis/apps/v1/deployments",
        kubeconfig=bob,
        check=False,
    )
    assert (
        proc.returncode != 0
        and 'cannot list resource "resources" in API group "clusterpedia.io"' in proc.stderr
    )
    carol = _with_clusters(setup, setup.host.user_kubeconfig("carol"), "carol")
    _, rows = parse_table(
        run(setup, "1.29", "--cluster", "clusterpedia", "get", "deployments", "-A", kubeconfig=carol).stdout
    )
    assert len(rows) == 5


def _with_clusters(s: Setup, user_kubeconfig: Path, user: str) -> Path:
    """The user's kubeconfig plus the clusterpedia cluster entry (as gen-clusterconfigs writes it)."""
    out = user_kubeconfig.with_name(f"{user_kubeconfig.name}-pedia")
    shutil.copy(user_kubeconfig, out)
    gen_clusterconfigs(out)
    return out


def _direct(
    s: Setup, path: str, headers: dict[str, str], cert: tuple[Path, Path] | None = None
) -> tuple[int, str]:
    ctx = ssl.create_default_context(cadata=s.api.ca_pem.decode())
    if cert is not None:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    req = urllib.request.Request(s.api.url + path, headers=headers)
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_direct_requests_need_credentials(setup: Setup, tmp_path: Path) -> None:
    path = "/apis/clusterpedia.io/v1beta1/resources/apis/apps/v1/deployments"
    code, body = _direct(setup, path, {})
    assert code == 401 and '"reason":"Unauthorized"' in body
    # identity headers from a peer without the aggregator's certificate are ignored
    code, _ = _direct(setup, path, {"X-Remote-User": "admin", "X-Remote-Group": "system:masters"})
    assert code == 401
    # a certificate from the requestheader CA whose CN is not an allowed name is not trusted either
    evil = setup.host.front_proxy_ca.client_cert("evil").write(tmp_path, "evil")
    code, _ = _direct(setup, path, {"X-Remote-User": "admin", "X-Remote-Group": "system:masters"}, cert=evil)
    assert code == 401
    # the aggregator's own certificate is trusted
    proxy = (Path(setup.host.proxy_client_cert_file), Path(setup.host.proxy_client_key_file))
    code, body = _direct(
        setup, path, {"X-Remote-User": "carol", "X-Remote-Group": "system:authenticated"}, cert=proxy
    )
    assert code == 200 and '"kind":"DeploymentList"' in body
    code, body = _direct(
        setup, path, {"X-Remote-User": "alice", "X-Remote-Group": "system:authenticated"}, cert=proxy
    )
    assert code == 403 and '"reason":"Forbidden"' in body
    # a bearer token is reviewed by the host (the harness's admin token)
    code, body = _direct(setup, path, {"Authorization": f"Bearer {setup.host.token}"})
    assert code == 200
    code, _ = _direct(setup, path, {"Authorization": "Bearer wrong"})
    assert code == 401
    code, body = _direct(setup, "/healthz", {})
    assert code == 200 and body == "ok"


def test_oversized_requests_get_a_status_through_the_host(setup: Setup) -> None:
    """Requests of 70 KB (read and refused by the app) and 200 KB (refused by the API tier's
    HTTP layer, above its limit): every answer through the aggregator is a JSON Status 4xx, never
    the host's 503 for a connection reset while it was still writing, nor plain text."""
    host = setup.host
    ctx = ssl.create_default_context(cadata=host.ca_pem.decode())
    path = f"{RESOURCES_PATH}/apis/apps/v1/deployments?clusters="
    seen: dict[int, set[tuple[int, str]]] = {70_000: set(), 200_000: set()}
    for i in range(50):
        size = 70_000 if i % 2 else 200_000
        req = urllib.request.Request(
            host.server + path + "a" * size, headers={"Authorization": f"Bearer {host.token}"}
        )
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=30) as r:
                code, ctype, body = r.status, r.headers["content-type"], r.read()
        except urllib.error.HTTPError as e:
            code, ctype, body = e.code, e.headers["content-type"], e.read()
        assert ctype == "application/json", (size, code, ctype, body[:200])
        status = json.loads(body)
        assert status["kind"] == "Status" and status["code"] == code, status
        seen[size].add((code, status["reason"]))
    assert seen[200_000] == {(414, "RequestEntityTooLarge")}
    assert len(seen[70_000]) == 1 and 400 <= min(seen[70_000])[0] < 414, seen  # the app's own answer
