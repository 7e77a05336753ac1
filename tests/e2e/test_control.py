"""Control through Clusterpedia: kubectl writes reach the member as the caller, and the next get
through Clusterpedia shows them at once (double write + response).

A real host with the API tier aggregated (``--authenticate --authorize``, member-rbac), the real
synchro and writer, and one real member (with a controller manager and an audit log) registered
twice: ``cluster-1`` with the synchro identity of examples/clusterpedia_synchro_rbac.yaml plus the
opt-in examples/clusterpedia_control_rbac.yaml, and ``cluster-1-ro`` with a read-only identity
(no impersonation). kubectl 1.27 and 1.32 act as ``alice``, bound to ``edit`` in her namespace of
the member; the host lets every authenticated user read and write through Clusterpedia. Every
get follows its write immediately: no waiting, no polling.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from common.storage.sql.engine import make_engine
from common.storage.sql.schema import resources
from common.types import CLUSTER_ANNOTATION, MEMBER_RV_ANNOTATION
from harness.cluster import Cluster, start_clusters
from harness.paths import kubectl_binary
from tests.e2e.kubectl_support import ApiTier
from tests.e2e.sync_support import (
    ROOT,
    b64,
    install_crd,
    make_settings,
    pediacluster,
    start_synchro,
    start_writer,
    unique,
    wait_for,
)
from tests.e2e.test_kubectl_aggregation import serve_through_host

pytestmark = pytest.mark.e2e

VERSIONS = ("1.27", "1.32")
CLUSTER_1 = "/apis/clusterpedia.io/v1beta1/resources/clusters/cluster-1"
SYNCED = {"": ["configmaps", "pods"], "apps": ["deployments"]}
HOST_RBAC = """
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: clusterpedia-writer}
rules:
- apiGroups: [clusterpedia.io, pedia.clusterpedia.io]
  resources: ["*"]
  verbs: [get, list, create, update, patch, delete, deletecollection]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: everyone-may-write-through-clusterpedia}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: clusterpedia-writer}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: Group, name: system:authenticated}]
"""
READ_ONLY_IDENTITY = """
apiVersion: v1
kind: ServiceAccount
metadata: {name: clusterpedia-readonly, namespace: default}
---
apiVersion: v1
kind: Secret
metadata:
  name: clusterpedia-readonly-token
  namespace: default
  annotations: {kubernetes.io/service-account.name: clusterpedia-readonly}
type: kubernetes.io/service-account-token
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: clusterpedia-readonly}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: clusterpedia-synchro}
subjects: [{kind: ServiceAccount, name: clusterpedia-readonly, namespace: default}]
"""
EDITOR = """#!{python}
import sys
path = sys.argv[-1]
text = open(path).read()
open(path, "w").write(text.replace("\\ndata:\\n", '\\ndata:\\n  edited: "yes"\\n', 1))
"""


def namespace_of(version: str) -> str:
    return "ctl-" + version.replace(".", "-")


def member_setup(version: str) -> str:
    ns = namespace_of(version)
    return f"""
apiVersion: v1
kind: Namespace
metadata: {{name: {ns}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: alice-edit, namespace: {ns}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: edit}}
subjects: [{{apiGroup: rbac.authorization.k8s.io, kind: User, name: alice}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: lonely, namespace: {ns}}}
spec: {{containers: [{{name: app, image: "busybox:1.36"}}]}}
"""


@dataclass
class World:
    host: Cluster
    member: Cluster
    api: ApiTier
    kubeconfig: Path
    store_url: str
    workdir: Path


def token_of(member: Cluster, secret: str) -> str:
    def filled() -> str:
        data = member.get_json("secret", secret, "-n", "default").get("data") or {}
        return base64.b64decode(data.get("token", "")).decode()

    token: str = wait_for(filled, f"the token of {secret}", timeout=30)
    return token


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    workdir = tmp_path_factory.mktemp("control")
    host = Cluster("host", "current", aggregation=True, workdir=tmp_path_factory.mktemp("host"))
    member = Cluster(
        "cluster-1",
        "current",
        controller_manager=True,
        audit=True,
        workdir=tmp_path_factory.mktemp("cluster-1"),
    )
    store_url = f"sqlite:///{workdir / 'store.db'}"
    api: ApiTier | None = None
    synchro = writer = None
    try:
        start_clusters([host, member])
        member.kubectl("apply", "-f", str(ROOT / "examples/clusterpedia_synchro_rbac.yaml"))
        member.kubectl("apply", "-f", str(ROOT / "examples/clusterpedia_control_rbac.yaml"))
        member.apply(READ_ONLY_IDENTITY)
        for version in VERSIONS:
            member.apply(member_setup(version))
        install_crd(host)
        for name, secret, groups in (
            ("cluster-1", "clusterpedia-synchro-token", SYNCED),
            ("cluster-1-ro", "clusterpedia-readonly-token", {"": ["configmaps"]}),
        ):
            spec = json.loads(pediacluster(name, member, groups))
            spec["spec"]["tokenData"] = b64(token_of(member, secret))
            host.apply(json.dumps(spec))
        settings = make_settings(host, store_url, f"memory://{unique('q')}")
        writer, synchro = start_writer(settings), start_synchro(settings, unique("w"))
        served = serve_through_host(host, workdir, store_url, HOST_RBAC)
        api, kubeconfig = served.api, served.kubeconfig
        w = World(host, member, api, kubeconfig, store_url, workdir)

        def sees_her_pods() -> bool:
            return all("lonely" in pedia(w, v, "get", "pods", "-o", "name").stdout for v in VERSIONS)

        wait_for(sees_her_pods, "alice sees her pods (her RoleBindings synced)")
        yield w
    finally:
        if api is not None:
            api.stop()
        for tier in (synchro, writer):
            if tier is not None:
                tier.stop()
        member.stop()
        host.stop()


def pedia(
    w: World,
    version: str,
    *args: str,
    cluster: str = "cluster-1",
    user: str = "alice",
    check: bool = True,
    stdin: str | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """kubectl through the host's aggregator, as ``user`` (impersonated by the host's admin; ""
    the admin itself), in the version's namespace."""
    argv = [
        str(kubectl_binary(version)),
        f"--kubeconfig={w.kubeconfig}",
        "--cluster",
        cluster,
        *(["--as", user] if user else []),
        "-n",
        namespace_of(version),
        *args,
    ]
    proc = subprocess.run(
        argv,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **(env or {})},
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def got(w: World, version: str, *what: str) -> Any:
    """``kubectl get -o json`` through Clusterpedia (the store), parsed."""
    return json.loads(pedia(w, version, "get", *what, "-o", "json").stdout)


def configmap(name: str, version: str, data: dict[str, str], **labels: str) -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace_of(version), "labels": labels},
            "data": data,
        }
    )


def test_discovery_below_one_cluster_lists_the_members_write_verbs(world: World) -> None:
    wide = pedia(world, "1.32", "api-resources", "--api-group=apps", "-o", "wide").stdout
    (row,) = [line for line in wide.splitlines() if line.startswith("deployments")]
    assert "get,list,create,update,patch,delete,deletecollection" in row.split(), row
    wide = pedia(
        world, "1.32", "api-resources", "--api-group=apps", "-o", "wide", cluster="clusterpedia"
    ).stdout
    assert "get,list" in wide.split()


@pytest.mark.parametrize("version", VERSIONS)
def test_kubectl_writes_reach_the_member_and_show_at_once(world: World, version: str) -> None:
    ns = namespace_of(version)
    pedia(world, version, "create", "deployment", "web", "--image=nginx:1.25", "--replicas=1")
    web = got(world, version, "deployment", "web")
    assert web["spec"]["replicas"] == 1
    assert web["metadata"]["annotations"][CLUSTER_ANNOTATION] == "cluster-1"
    assert world.member.get_json("deployment", "web", "-n", ns)["metadata"]["uid"] == web["metadata"]["uid"]

    # client-side apply: create, then change
    pedia(world, version, "apply", "-f", "-", stdin=configmap("settings", version, {"a": "1"}))
    assert got(world, version, "configmap", "settings")["data"] == {"a": "1"}
    pedia(world, version, "apply", "-f", "-", stdin=configmap("settings", version, {"a": "2", "b": "3"}))
    assert got(world, version, "configmap", "settings")["data"] == {"a": "2", "b": "3"}
    # documented limit (docs/api.md): the stored copy has no last-applied-configuration
    # (synchro.strip_last_applied), so kubectl warns and a key removed from the file stays
    third = pedia(world, version, "apply", "-f", "-", stdin=configmap("settings", version, {"a": "2"}))
    assert "last-applied-configuration" in third.stderr, third.stderr
    assert got(world, version, "configmap", "settings")["data"] == {"a": "2", "b": "3"}

    # server-side apply
    pedia(world, version, "apply", "--server-side", "-f", "-", stdin=configmap("ssa", version, {"x": "1"}))
    assert got(world, version, "configmap", "ssa")["data"] == {"x": "1"}
    pedia(world, version, "apply", "--server-side", "-f", "-", stdin=configmap("ssa", version, {"x": "2"}))
    assert got(world, version, "configmap", "ssa")["data"] == {"x": "2"}

    # edit with a scripted editor
    editor = world.workdir / "editor.py"
    editor.write_text(EDITOR.format(python=sys.executable))
    editor.chmod(0o755)
    pedia(
        world,
        version,
        "edit",
        "configmap",
        "settings",
        env={"EDITOR": str(editor), "KUBE_EDITOR": str(editor)},
    )
    assert got(world, version, "configmap", "settings")["data"] == {"a": "2", "b": "3", "edited": "yes"}

    pedia(world, version, "label", "configmap", "settings", "team=a")
    assert [i["metadata"]["name"] for i in got(world, version, "configmaps", "-l", "team=a")["items"]] == [
        "settings"
    ]
    pedia(world, version, "annotate", "configmap", "settings", "note=hello")
    assert got(world, version, "configmap", "settings")["metadata"]["annotations"]["note"] == "hello"

    pedia(world, version, "scale", "deployment", "web", "--replicas=3")
    assert got(world, version, "deployment", "web")["spec"]["replicas"] == 3
    assert world.member.get_json("deployment", "web", "-n", ns)["spec"]["replicas"] == 3

    # a Deployment's delete is answered with a Status: the object is gone from the next get too
    pedia(world, version, "delete", "deployment", "web")
    gone = pedia(world, version, "get", "deployment", "web", check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr, gone.stderr

    # delete by name, then by label (kubectl lists through Clusterpedia, deletes each by name)
    pedia(world, version, "delete", "configmap", "settings")
    gone = pedia(world, version, "get", "configmap", "settings", check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr, gone.stderr
    for i in range(3):
        pedia(world, version, "create", "-f", "-", stdin=configmap(f"batch-{i}", version, {}, batch="yes"))
    assert len(got(world, version, "configmaps", "-l", "batch=yes")["items"]) == 3
    pedia(world, version, "delete", "configmaps", "-l", "batch=yes")
    assert got(world, version, "configmaps", "-l", "batch=yes")["items"] == []
    assert world.member.get_json("configmaps", "-n", ns, "-l", "batch=yes")["items"] == []

    # the member saw alice, impersonated by the PediaCluster's identity
    events = [
        e
        for e in world.member.audit_events()
        if e.get("verb") == "create"
        and e.get("objectRef", {}).get("resource") == "deployments"
        and e.get("objectRef", {}).get("namespace") == ns
    ]
    assert events, "no audit event of the create"
    assert events[-1]["impersonatedUser"]["username"] == "alice"
    assert events[-1]["user"]["username"] == "system:serviceaccount:default:clusterpedia-synchro"
    assert events[-1]["responseStatus"]["code"] == 201


def test_the_hosts_extra_user_information_is_impersonated_too(world: World) -> None:
    """The host's admin authenticated with a client certificate: the host adds extra information
    (authentication.kubernetes.io/credential-id), which the member sees impersonated as well
    (examples/clusterpedia_control_rbac.yaml lets the synchro's identity impersonate any key)."""
    version = "1.32"
    pedia(world, version, "create", "configmap", "by-admin", user="")
    assert got(world, version, "configmap", "by-admin")["metadata"]["name"] == "by-admin"
    (event,) = [
        e
        for e in world.member.audit_events()
        if e.get("verb") == "create" and e.get("objectRef", {}).get("name") == "by-admin"
    ]
    assert event["impersonatedUser"]["username"] == "admin"
    assert "system:masters" in event["impersonatedUser"]["groups"]
    extra = event["impersonatedUser"].get("extra") or {}
    assert "authentication.kubernetes.io/credential-id" in extra, event["impersonatedUser"]


def test_status_and_scale_subresources(world: World) -> None:
    """Read and written through Clusterpedia; the object itself shows the change at once."""
    version = "1.32"
    ns = namespace_of(version)
    pedia(world, version, "create", "deployment", "sub", "--image=nginx:1.25", "--replicas=1")
    scale = json.loads(
        pedia(world, version, "get", "deployment", "sub", "--subresource=scale", "-o", "json").stdout
    )
    assert (scale["kind"], scale["spec"]["replicas"]) == ("Scale", 1)
    patch = '{"spec":{"replicas":4}}'
    pedia(world, version, "patch", "deployment", "sub", "--subresource=scale", "--type=merge", "-p", patch)
    assert got(world, version, "deployment", "sub")["spec"]["replicas"] == 4
    # pods/status: no kubelet here to overwrite it (the admin: edit grants no status writes)
    status = '{"status":{"message":"set through Clusterpedia"}}'
    pedia(
        world,
        version,
        "patch",
        "pod",
        "lonely",
        "--subresource=status",
        "--type=merge",
        "-p",
        status,
        user="",
    )
    assert got(world, version, "pod", "lonely")["status"]["message"] == "set through Clusterpedia"
    read = pedia(world, version, "get", "pod", "lonely", "--subresource=status", "-o", "json", user="")
    assert json.loads(read.stdout)["status"]["message"] == "set through Clusterpedia"
    member = world.member.get_json("pod", "lonely", "-n", ns)
    assert member["status"]["message"] == "set through Clusterpedia"


def test_deletecollection_hides_every_deleted_object(world: World) -> None:
    version = "1.32"
    ns = namespace_of(version)
    for i in range(2):
        pedia(world, version, "create", "-f", "-", stdin=configmap(f"coll-{i}", version, {}, coll="yes"))
    path = f"{CLUSTER_1}/api/v1/namespaces/{ns}/configmaps"
    pedia(world, version, "delete", "--raw", f"{path}?labelSelector=coll%3Dyes")
    assert got(world, version, "configmaps", "-l", "coll=yes")["items"] == []


def test_a_user_without_member_rights_gets_the_members_403(world: World) -> None:
    out = pedia(world, "1.32", "create", "configmap", "nope", user="mallory", check=False)
    assert out.returncode != 0
    assert 'User "mallory" cannot create resource "configmaps"' in out.stderr, out.stderr


def test_a_member_without_the_impersonation_role_answers_a_403_naming_it(world: World) -> None:
    out = pedia(world, "1.32", "create", "configmap", "nope", cluster="cluster-1-ro", check=False)
    assert out.returncode != 0
    # kube-apiserver's own words (1.37 names the constrained-impersonation verb it checked last,
    # e.g. "cannot impersonate-on:user-info:create resource "configmaps""; older ones "cannot
    # impersonate resource "users""), with the identity that lacks the right
    assert "forbidden" in out.stderr and "cannot impersonate" in out.stderr, out.stderr
    assert 'User "system:serviceaccount:default:clusterpedia-readonly"' in out.stderr


def test_a_stale_resource_version_is_the_members_409(world: World) -> None:
    version = "1.32"
    out = pedia(
        world, version, "create", "-f", "-", "-o", "json", stdin=configmap("stale", version, {"v": "1"})
    )
    created = json.loads(out.stdout)
    # the answer carries the resourceVersion reads serve, so a write from it is not stale
    assert (
        created["metadata"]["resourceVersion"]
        == got(world, version, "configmap", "stale")["metadata"]["resourceVersion"]
    )
    created["data"] = {"v": "1b"}
    pedia(world, version, "replace", "-f", "-", stdin=json.dumps(created))
    old = got(world, version, "configmap", "stale")
    pedia(world, version, "label", "configmap", "stale", "changed=yes")
    old["data"] = {"v": "2"}
    out = pedia(world, version, "replace", "-f", "-", stdin=json.dumps(old), check=False)
    assert out.returncode != 0
    assert "the object has been modified" in out.stderr and "Conflict" in out.stderr, out.stderr
    fresh = got(world, version, "configmap", "stale")
    fresh["data"] = {"v": "3"}
    pedia(world, version, "replace", "-f", "-", stdin=json.dumps(fresh))
    assert got(world, version, "configmap", "stale")["data"] == {"v": "3"}
    assert CLUSTER_ANNOTATION not in (
        world.member.get_json("configmap", "stale", "-n", namespace_of(version))["metadata"].get(
            "annotations"
        )
        or {}
    )


def test_a_write_on_the_all_clusters_view_is_a_400_naming_the_clusters(world: World) -> None:
    # kubectl validates create -f / apply with the view's OpenAPI v2 first: an empty one there
    for version in VERSIONS:
        cm = configmap("where", version, {})
        for args in (["create", "-f", "-"], ["apply", "-f", "-"]):
            out = pedia(world, version, *args, cluster="clusterpedia", stdin=cm, check=False)
            assert out.returncode != 0
            assert "(BadRequest)" in out.stderr and "one of: cluster-1, cluster-1-ro" in out.stderr, (
                out.stderr
            )
    out = pedia(world, "1.32", "delete", "configmap", "where", cluster="clusterpedia", check=False)
    assert out.returncode != 0 and "needs a cluster" in out.stderr, out.stderr


@pytest.mark.parametrize("version", VERSIONS)
def test_logs_and_exec_print_the_members_own_answer(world: World, version: str) -> None:
    ns = namespace_of(version)
    cases = (["logs", "pod/lonely"], ["logs", "pod/lonely", "-c", "nosuch"], ["exec", "lonely", "--", "true"])
    for args in cases:
        through = pedia(world, version, *args, check=False)
        direct = world.member.kubectl("--as", "alice", "-n", ns, *args, version=version, check=False)
        assert (through.returncode, through.stdout) == (direct.returncode, direct.stdout), args
        assert through.stderr.strip() == direct.stderr.strip(), args
        assert "405" not in through.stderr and "MethodNotAllowed" not in through.stderr
    # kubectl checks container names itself: the raw path shows the member's own 400 for logs
    log = f"/api/v1/namespaces/{ns}/pods/lonely/log?container=nosuch"
    through = pedia(world, version, "get", "--raw", f"{CLUSTER_1}{log}", check=False)
    direct = world.member.kubectl("--as", "alice", "get", "--raw", log, version=version, check=False)
    assert through.returncode == direct.returncode == 1
    assert through.stderr.strip() == direct.stderr.strip()
    assert "container nosuch is not valid for pod lonely" in through.stderr, through.stderr


def stored_epoch(store_url: str, namespace: str, name: str) -> int:
    """The row's epoch: 0 as a write through Clusterpedia stores it, the sync generation's list
    resourceVersion once the synchro's watch event for the same resourceVersion arrived."""
    engine = make_engine(store_url)
    try:
        with engine.connect() as conn:
            row = conn.execute(
                select(resources.c.epoch).where(
                    resources.c.cluster == "cluster-1",
                    resources.c.resource == "configmaps",
                    resources.c.namespace == namespace,
                    resources.c.name == name,
                )
            ).first()
        return int(row[0]) if row is not None else -1
    finally:
        engine.dispose()


def test_the_synchros_later_watch_events_do_not_regress_a_write(world: World) -> None:
    """ADDED (older resourceVersion) and MODIFIED (the same one) arrive after both writes were
    stored: the guard keeps the newest state; the second only moves the epoch."""
    version = "1.32"
    ns = namespace_of(version)
    pedia(world, version, "create", "-f", "-", stdin=configmap("steady", version, {"v": "1"}))
    pedia(world, version, "patch", "configmap", "steady", "--type=merge", "-p", '{"data":{"v":"2"}}')
    assert got(world, version, "configmap", "steady")["data"] == {"v": "2"}
    wait_for(lambda: stored_epoch(world.store_url, ns, "steady") > 0, "the synchro's watch event for v2")
    served = got(world, version, "configmap", "steady")
    assert served["data"] == {"v": "2"}
    member = world.member.get_json("configmap", "steady", "-n", ns)
    # served with the store's revision; the member's own, the newest, in the annotation
    annotations = served["metadata"]["annotations"]
    assert annotations[MEMBER_RV_ANNOTATION] == member["metadata"]["resourceVersion"]


WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def local_address() -> str:
    """This machine's address on its default route: the member may proxy there (kube-apiserver
    refuses to proxy to loopback and link-local addresses). No packet is sent."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.123", 9))  # TEST-NET-1: only the route is looked up
        except OSError:
            s.connect(("10.255.255.254", 9))
        address = str(s.getsockname()[0])
    assert not address.startswith(("127.", "169.254.")), f"no routable local address ({address})"
    return address


class EchoUpgrade:
    """A backend that accepts a websocket upgrade and then echoes every byte (frames unparsed)."""

    def __init__(self, host: str) -> None:
        self.server = socket.create_server((host, 0))
        self.port = self.server.getsockname()[1]
        self.paths: list[str] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.server.accept()
                threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                head += chunk
            lines = head.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
            self.paths.append(lines[0])
            headers = {
                k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])
            }
            accept = base64.b64encode(
                hashlib.sha1((headers.get("sec-websocket-key", "") + WS_GUID).encode()).digest()
            )
            conn.sendall(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n" + head.split(b"\r\n\r\n", 1)[1]
            )
            while data := conn.recv(65536):
                conn.sendall(data)

    def close(self) -> None:
        self.server.close()


def test_an_upgrade_is_tunneled_to_the_member_and_back(world: World) -> None:
    """A websocket upgrade of pods/proxy, through the host's aggregator, Clusterpedia and the
    member's own pod proxy, to a backend that echoes: 101, then bytes both ways. (exec, attach
    and port-forward upgrade the same way, to a kubelet the harness does not have.)"""
    ns = namespace_of("1.32")
    address = local_address()
    echo = EchoUpgrade(address)
    try:
        # a pod whose IP is this machine's: the member's pod proxy connects to the echo backend
        world.member.apply(
            f"apiVersion: v1\nkind: Pod\nmetadata: {{name: tunnel, namespace: {ns}}}\n"
            "spec: {containers: [{name: app, image: busybox}]}"
        )
        status = {"status": {"podIP": address, "podIPs": [{"ip": address}]}}
        world.member.kubectl(
            "patch",
            "pod",
            "tunnel",
            "-n",
            ns,
            "--subresource=status",
            "--type=merge",
            "-p",
            json.dumps(status),
        )
        key = base64.b64encode(os.urandom(16)).decode()
        path = f"{CLUSTER_1}/api/v1/namespaces/{ns}/pods/tunnel:{echo.port}/proxy/stream"
        host = urllib.parse.urlsplit(world.host.server)
        ctx = ssl.create_default_context(cadata=world.host.ca_pem.decode())
        with (
            socket.create_connection((host.hostname, host.port), timeout=30) as raw,
            ctx.wrap_socket(raw, server_hostname=host.hostname) as tls,
        ):
            tls.sendall(
                (
                    f"GET {path} HTTP/1.1\r\nHost: {host.netloc}\r\n"
                    f"Authorization: Bearer {world.host.token}\r\n"
                    "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                    f"Sec-WebSocket-Key: {key}\r\n\r\n"
                ).encode()
            )
            answer = b""
            while b"\r\n\r\n" not in answer:
                chunk = tls.recv(4096)
                assert chunk, answer
                answer += chunk
            head, rest = answer.split(b"\r\n\r\n", 1)
            assert head.startswith(b"HTTP/1.1 101"), head
            expected = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest())
            assert (
                b"Sec-Websocket-Accept: " + expected in head or b"Sec-WebSocket-Accept: " + expected in head
            )
            for message in (b"hello through clusterpedia", os.urandom(100_000)):
                tls.sendall(message)
                echoed = rest
                while len(echoed) < len(message):
                    chunk = tls.recv(65536)
                    assert chunk, "the tunnel closed"
                    echoed += chunk
                assert echoed == message
                rest = b""
        assert echo.paths == ["GET /stream HTTP/1.1"]
        api_ctx = ssl.create_default_context(cadata=world.api.ca_pem.decode())
        with urllib.request.urlopen(world.api.url + "/metrics", context=api_ctx, timeout=10) as r:
            metrics = r.read().decode()
        assert 'clusterpedia_apiserver_requests_total{code="101",kind="subresource",method="GET"}' in metrics
    finally:
        echo.close()


def test_impersonation_headers_sent_straight_to_the_api_tier_are_refused(world: World) -> None:
    """Only the host impersonates: a write asking the API tier itself to act as someone else must not
    go out as the authenticated caller instead."""
    ns = namespace_of("1.32")
    body = configmap("direct", "1.32", {}).encode()
    ctx = ssl.create_default_context(cadata=world.api.ca_pem.decode())

    def post(*extra: tuple[str, str]) -> tuple[int, dict[str, Any]]:
        request = urllib.request.Request(
            f"{world.api.url}{CLUSTER_1}/api/v1/namespaces/{ns}/configmaps",
            data=body,
            method="POST",
            headers={"Authorization": f"Bearer {world.host.token}", "Content-Type": "application/json"},
        )
        for name, value in extra:
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, context=ctx, timeout=30) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    code, status = post(("Impersonate-User", "alice"))
    assert (code, status["reason"]) == (403, "Forbidden"), status
    assert "through the host kube-apiserver" in status["message"]
    code, created = post()  # the host's admin, authenticated by its token (TokenReview)
    assert code == 201 and created["metadata"]["annotations"][CLUSTER_ANNOTATION] == "cluster-1", created
