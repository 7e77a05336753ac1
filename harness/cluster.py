"""A real Kubernetes control plane on loopback: etcd + kube-apiserver (+ kube-controller-manager).

No kubelet and no scheduler: objects are stored and controllers act on them (a Deployment gets a
ReplicaSet and Pods with owner references; the Pods stay Pending), which is all a cluster
synchroniser needs. Each cluster gets its own CA, serving certificate for 127.0.0.1/localhost, an
admin identity (a client certificate in group system:masters and a bearer token in a static token
file), a service-account key pair, RBAC authorization (denials are real), random free ports and a
work directory holding certificates, the kubeconfig, etcd's data and the component logs.

The host cluster (``aggregation=True``) also has the aggregation layer: a front-proxy CA separate
from the client CA, the requestheader flags and a proxy client certificate (CN=front-proxy-client).
With ``--enable-aggregator-routing=false`` the aggregator sends an APIService's traffic to the
Service's *cluster* address, and for a Service of type ExternalName that is
``https://<externalName>:<APIService spec.service.port>``. Endpoints cannot hold loopback addresses,
but ``externalName: localhost`` can, so an APIService reaches a process listening on this machine::

    kind: Service            {metadata: {name: api, namespace: default},
                              spec: {type: ExternalName, externalName: localhost}}
    kind: APIService         {spec: {group: ..., version: ..., service: {name: api,
                              namespace: default, port: <local port>}, insecureSkipTLSVerify: true
                              (or caBundle; the aggregator checks the name api.default.svc)}}

The aggregator marks the APIService Available once ``GET /apis/<group>/<version>`` on the local
server answers 2xx (five concurrent probes, 5 s timeout each, as user system:kube-aggregator in
group system:masters). Proxied requests carry the front-proxy client certificate and the
X-Remote-User / X-Remote-Group / X-Remote-Extra-* headers; the local server should verify the client
certificate against ``front_proxy_ca_file`` and read the user from the headers.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import random
import secrets
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

from harness.certs import CertificateAuthority, KeyPair, key_pem, new_key, public_key_pem
from harness.paths import (
    DEFAULT_KUBECTL_VERSION,
    ensure_control_plane,
    etcd_binary,
    kubectl_binary,
    resolve_k8s_version,
)
from harness.processes import Process

DEFAULT_CONTROLLERS = (
    "deployment-controller",
    "replicaset-controller",
    "namespace-controller",
    "garbage-collector-controller",
    "serviceaccount-token-controller",
    "serviceaccount-controller",
    "root-ca-certificate-publisher-controller",
    "clusterrole-aggregation-controller",  # fills aggregated ClusterRoles such as view (member-rbac tests)
)
START_TIMEOUT_SECONDS = 120.0
AUDIT_POLICY = """apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  nonResourceURLs: [/healthz*, /readyz*, /livez*, /version]
- level: Metadata
"""
_GO_ENV = {"GOMAXPROCS": "2"}


class ClusterStartError(RuntimeError):
    """A component did not become ready; the message carries the tail of its log."""


class KubectlError(subprocess.CalledProcessError):
    def __str__(self) -> str:
        return f"{super().__str__()}\nstdout:\n{self.stdout}\nstderr:\n{self.stderr}"


_handed_out: set[int] = set()


def free_port() -> int:
    """A free loopback port for a process started next. Taken below Linux's ephemeral range
    (32768+) and never handed out twice by this process: ``bind(0)`` ports come from that range,
    which every outgoing connection and every other ``bind(0)`` draws from too, so a port found
    free there may be taken before the process that was meant to bind it starts."""
    rng = random.Random()
    for _ in range(1000):
        port = rng.randrange(20000, 32768)
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError("no free port found below the ephemeral range")


def free_port_block(count: int) -> int:
    """The first of ``count`` consecutive free ports, for a process that derives ports from a base
    (``all-in-one --metrics-port P``: P, P+1, ...). Picked below Linux's ephemeral range (32768+),
    where outgoing connections take their local ports, so the block stays free until it is used."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20000, 32768 - count)
        if _handed_out.intersection(range(base, base + count)):
            continue
        socks: list[socket.socket] = []
        try:
            for port in range(base, base + count):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                socks.append(s)
                s.bind(("127.0.0.1", port))
            _handed_out.update(range(base, base + count))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError(f"no {count} consecutive free ports found")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class Cluster:
    """One control plane. Construct, then ``start()``; ``stop()`` always cleans up."""

    def __init__(
        self,
        name: str,
        version: str = "current",
        *,
        controller_manager: bool = False,
        aggregation: bool = False,
        workdir: Path | str | None = None,
        controllers: Sequence[str] = DEFAULT_CONTROLLERS,
        extra_apiserver_args: Sequence[str] = (),
        audit: bool = False,
    ):
        """``audit``: kube-apiserver writes an audit log (level Metadata for every request but
        reads of its own health endpoints) to ``audit_log_path``, read with ``audit_events()``."""
        self.name = name
        self.audit = audit
        self.version = resolve_k8s_version(version)
        self.controller_manager = controller_manager
        self.aggregation = aggregation
        self.controllers = list(controllers)
        self.extra_apiserver_args = list(extra_apiserver_args)
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix=f"clusterpedia-{name}-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.pki = self.workdir / "pki"
        self._make_pki()
        self._pick_ports()
        self.kubeconfig = self.workdir / "kubeconfig"
        self._write_kubeconfig()
        self.audit_log_path = self.workdir / "audit.log"
        self._etcd: Process | None = None
        self._apiserver: Process | None = None
        self._kcm: Process | None = None
        self.start_seconds: float | None = None

    # ------------------------------------------------------------ identity material

    def _make_pki(self) -> None:
        self.ca = CertificateAuthority(f"{self.name}-ca")
        self.ca_pem: bytes = self.ca.cert_pem
        self.ca_data: str = _b64(self.ca_pem)
        self.ca_file, _ = self.ca.write(self.pki, "ca")
        serving = self.ca.serving_cert(
            "kube-apiserver", hosts=("127.0.0.1", "localhost", "kubernetes.default.svc")
        )
        self.serving_cert_file, self.serving_key_file = serving.write(self.pki, "apiserver")
        admin = self.ca.client_cert("admin", ["system:masters"])
        self.client_cert_pem: bytes = admin.cert_pem
        self.client_key_pem: bytes = admin.key_pem
        self.client_cert_file, self.client_key_file = admin.write(self.pki, "admin")
        kcm = self.ca.client_cert("system:kube-controller-manager", ["system:masters"])
        self._kcm_cert = kcm
        sa = new_key()
        self.sa_key_file = self.pki / "sa.key"
        self.sa_key_file.write_bytes(key_pem(sa))
        self.sa_pub_file = self.pki / "sa.pub"
        self.sa_pub_file.write_bytes(public_key_pem(sa))
        self.token: str = secrets.token_hex(24)
        self.token_file = self.pki / "tokens.csv"
        self.token_file.write_text(f'{self.token},admin,admin,"system:masters"\n')
        if self.aggregation:
            self.front_proxy_ca = CertificateAuthority(f"{self.name}-front-proxy-ca")
            self.front_proxy_ca_pem: bytes = self.front_proxy_ca.cert_pem
            self.front_proxy_ca_file, _ = self.front_proxy_ca.write(self.pki, "front-proxy-ca")
            proxy = self.front_proxy_ca.client_cert("front-proxy-client")
            self.proxy_client_cert_file, self.proxy_client_key_file = proxy.write(
                self.pki, "front-proxy-client"
            )

    def user_credentials(self, user: str, groups: Sequence[str] = ()) -> KeyPair:
        """A client certificate for any user/groups, signed by this cluster's client CA."""
        return self.ca.client_cert(user, groups)

    def user_kubeconfig(self, user: str, groups: Sequence[str] = ()) -> Path:
        """A kubeconfig for a (non-admin) user, e.g. to see RBAC denials."""
        path = self.workdir / f"kubeconfig-{user.replace(':', '_')}"
        self._write_kubeconfig_file(path, self.user_credentials(user, groups), f"{self.name}-{user}")
        return path

    def _pick_ports(self) -> None:
        self.port = free_port()
        self.etcd_client_port = free_port()
        self.etcd_peer_port = free_port()
        self.server: str = f"https://127.0.0.1:{self.port}"
        self.etcd_url = f"http://127.0.0.1:{self.etcd_client_port}"

    def _write_kubeconfig(self) -> None:
        admin = KeyPair(self.client_cert_pem, self.client_key_pem)
        self._write_kubeconfig_file(self.kubeconfig, admin, f"{self.name}-admin")
        kcm_path = self.workdir / "kube-controller-manager.kubeconfig"
        self._write_kubeconfig_file(kcm_path, self._kcm_cert, "kube-controller-manager")

    def _write_kubeconfig_file(self, path: Path, creds: KeyPair, user: str) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": self.name,
                    "cluster": {"server": self.server, "certificate-authority-data": self.ca_data},
                }
            ],
            "users": [
                {
                    "name": user,
                    "user": {
                        "client-certificate-data": _b64(creds.cert_pem),
                        "client-key-data": _b64(creds.key_pem),
                    },
                }
            ],
            "contexts": [{"name": self.name, "context": {"cluster": self.name, "user": user}}],
            "current-context": self.name,
        }
        path.touch(mode=0o600)
        path.write_text(yaml.safe_dump(config, sort_keys=False))

    # ------------------------------------------------------------ command lines

    def _etcd_argv(self) -> list[str]:
        peer = f"http://127.0.0.1:{self.etcd_peer_port}"
        return [
            str(etcd_binary()),
            f"--name={self.name}",
            f"--data-dir={self.workdir / 'etcd'}",
            f"--listen-client-urls={self.etcd_url}",
            f"--advertise-client-urls={self.etcd_url}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster={self.name}={peer}",
            "--initial-cluster-state=new",
            "--quota-backend-bytes=1073741824",
            "--unsafe-no-fsync",  # a test cluster: durability is not the point
            "--log-level=warn",
        ]

    def _apiserver_argv(self) -> list[str]:
        bin_dir = ensure_control_plane(self.version)
        argv = [
            str(bin_dir / "kube-apiserver"),
            f"--etcd-servers={self.etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={self.port}",
            f"--cert-dir={self.workdir / 'apiserver-certs'}",
            f"--tls-cert-file={self.serving_cert_file}",
            f"--tls-private-key-file={self.serving_key_file}",
            f"--client-ca-file={self.ca_file}",
            f"--token-auth-file={self.token_file}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={self.sa_pub_file}",
            f"--service-account-signing-key-file={self.sa_key_file}",
            "--authorization-mode=Node,RBAC",
            "--service-cluster-ip-range=10.96.0.0/16",
            # the "kubernetes" Service's endpoints would be 127.0.0.1, which Endpoints reject
            "--endpoint-reconciler-type=none",
            "--max-requests-inflight=100",
            "--max-mutating-requests-inflight=50",
            "--watch-cache=true",
            "--profiling=false",
            "--v=1",
        ]
        if self.aggregation:
            argv += [
                f"--requestheader-client-ca-file={self.front_proxy_ca_file}",
                "--requestheader-allowed-names=front-proxy-client",
                "--requestheader-username-headers=X-Remote-User",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                f"--proxy-client-cert-file={self.proxy_client_cert_file}",
                f"--proxy-client-key-file={self.proxy_client_key_file}",
                "--enable-aggregator-routing=false",
            ]
        if self.audit:
            policy = self.workdir / "audit-policy.yaml"
            policy.write_text(AUDIT_POLICY)
            argv += [
                f"--audit-policy-file={policy}",
                f"--audit-log-path={self.audit_log_path}",
                "--audit-log-format=json",
                "--audit-log-mode=blocking",  # an event is in the file when the answer is sent
            ]
        return argv + self.extra_apiserver_args

    def audit_events(self) -> list[dict[str, Any]]:
        """The audit log's events so far (``audit=True``)."""
        if not self.audit_log_path.exists():
            return []
        return [json.loads(line) for line in self.audit_log_path.read_text().splitlines() if line.strip()]

    def _kcm_argv(self) -> list[str]:
        bin_dir = ensure_control_plane(self.version)
        return [
            str(bin_dir / "kube-controller-manager"),
            f"--kubeconfig={self.workdir / 'kube-controller-manager.kubeconfig'}",
            f"--service-account-private-key-file={self.sa_key_file}",
            f"--root-ca-file={self.ca_file}",
            "--use-service-account-credentials=false",
            "--leader-elect=false",
            f"--controllers={','.join(self.controllers)}",
            "--secure-port=0",
            f"--cluster-name={self.name}",
            "--v=1",
        ]

    # ------------------------------------------------------------ lifecycle

    def _launch(self) -> None:
        """Start etcd and kube-apiserver without waiting (the apiserver retries etcd)."""
        ensure_control_plane(self.version)
        self._etcd = Process(f"{self.name}/etcd", self._etcd_argv(), self.workdir / "etcd.log", _GO_ENV)
        self._apiserver = Process(
            f"{self.name}/kube-apiserver",
            self._apiserver_argv(),
            self.workdir / "kube-apiserver.log",
            _GO_ENV,
        )
        self._etcd.start()
        self._apiserver.start()

    def _launch_kcm(self) -> None:
        if not self.controller_manager:
            return
        self._kcm = Process(
            f"{self.name}/kube-controller-manager",
            self._kcm_argv(),
            self.workdir / "kube-controller-manager.log",
            _GO_ENV,
        )
        self._kcm.start()

    def _port_clash(self) -> bool:
        """Did a component die because another process took one of its ports meanwhile?"""
        for proc in (self._etcd, self._apiserver):
            if proc is not None and not proc.running() and "address already in use" in proc.log_tail(30):
                return True
        return False

    def _relaunch_on_new_ports(self) -> None:
        for proc in (self._apiserver, self._etcd):
            if proc is not None:
                proc.stop()
        shutil.rmtree(self.workdir / "etcd", ignore_errors=True)
        self._pick_ports()
        self._write_kubeconfig()
        self._launch()

    def start(self) -> None:
        start_clusters([self])

    def stop(self) -> None:
        """Stop every component (controller manager, apiserver, etcd): SIGTERM, then SIGKILL; reaped."""
        for proc in (self._kcm, self._apiserver, self._etcd):
            if proc is not None:
                proc.stop()

    def cleanup(self) -> None:
        """stop() and remove the work directory if the cluster made it itself."""
        self.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def stop_apiserver(self) -> None:
        """Stop only kube-apiserver (the cluster becomes unreachable; etcd keeps the data)."""
        if self._apiserver is not None:
            self._apiserver.stop()

    def start_apiserver(self, wait: bool = True) -> None:
        """Start kube-apiserver again on the same port against the same etcd."""
        if self._apiserver is None:
            raise RuntimeError(f"cluster {self.name} was never started")
        self._apiserver.start()
        if wait:
            self._wait_for(self._readyz_ok, "kube-apiserver /readyz", self._apiserver, START_TIMEOUT_SECONDS)

    def restart_apiserver(self) -> None:
        self.stop_apiserver()
        self.start_apiserver(wait=True)

    @property
    def processes(self) -> list[Process]:
        return [p for p in (self._etcd, self._apiserver, self._kcm) if p is not None]

    def __enter__(self) -> Cluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    # ------------------------------------------------------------ readiness

    def _ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cadata=self.ca_pem.decode())

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
        """GET ``path`` as admin (bearer token); returns (status, body). No exception on 4xx/5xx."""
        req = urllib.request.Request(self.server + path, headers={"Authorization": f"Bearer {self.token}"})
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=self._ssl_context()) as resp:
                return int(resp.status), bytes(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def _ok(self, path: str) -> bool:
        try:
            return self.get(path, timeout=3.0)[0] == 200
        except (OSError, ssl.SSLError):
            return False

    def _readyz_ok(self) -> bool:
        return self._ok("/readyz")

    def _objects_ok(self) -> bool:
        if not self._ok("/api/v1/namespaces/default"):
            return False
        return not self.controller_manager or self._ok("/api/v1/namespaces/default/serviceaccounts/default")

    def _wait_for(self, check: Any, what: str, proc: Process | None, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if check():
                return
            for p in self.processes:
                if not p.running():
                    raise ClusterStartError(
                        f"cluster {self.name}: {p.name} exited with {p.exit_code()} "
                        f"while waiting for {what}; last lines of {p.log_path}:\n{p.log_tail(50)}"
                    )
            if time.monotonic() > deadline:
                tail = proc.log_tail(50) if proc else ""
                log = proc.log_path if proc else ""
                raise ClusterStartError(
                    f"cluster {self.name}: {what} not ready after {timeout:.0f}s; "
                    f"last lines of {log}:\n{tail}"
                )
            time.sleep(0.2)

    def wait_ready(self, timeout: float = START_TIMEOUT_SECONDS) -> None:
        """readyz answers 200; namespace default (and, with the controller manager, its default
        ServiceAccount) exists."""
        self._wait_for(self._readyz_ok, "kube-apiserver /readyz", self._apiserver, timeout)
        self._wait_for(
            self._objects_ok, "namespace/serviceaccount default", self._kcm or self._apiserver, timeout
        )

    # ------------------------------------------------------------ clients

    def kubectl(
        self,
        *args: str,
        version: str | None = None,
        input: str | None = None,
        check: bool = True,
        timeout: float = 120.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl (default 1.32, or ``version`` "1.27"/"1.29"/"1.32") with the admin kubeconfig."""
        exe = kubectl_binary(version or DEFAULT_KUBECTL_VERSION)
        argv = [str(exe), f"--kubeconfig={self.kubeconfig}", *args]
        proc = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout, check=False)
        if check and proc.returncode != 0:
            raise KubectlError(proc.returncode, argv, proc.stdout, proc.stderr)
        return proc

    def apply(self, yaml_text: str) -> subprocess.CompletedProcess[str]:
        return self.kubectl("apply", "-f", "-", input=yaml_text)

    def get_json(self, *args: str) -> Any:
        """``kubectl get <args> -o json``, parsed."""
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def wait_crd(self, name: str, timeout: float = 60.0) -> None:
        """Wait until CRD ``name`` is Established and its resource is in discovery.

        ``kubectl wait --for=condition=Established`` fails outright while a fresh CRD's
        ``status.conditions`` is still null, and Established comes before the discovery document
        lists the resource (until then ``kubectl apply`` of a custom resource fails with "no matches
        for kind"), so both are polled.
        """
        path = '{.status.conditions[?(@.type=="Established")].status}'
        group = name.split(".", 1)[1]
        deadline = time.monotonic() + timeout
        while True:
            established = self.kubectl("get", "crd", name, "-o", f"jsonpath={path}", check=False)
            if established.stdout == "True":
                # api-resources fetches discovery afresh (it ignores kubectl's discovery cache)
                found = self.kubectl("api-resources", f"--api-group={group}", "-o", "name", check=False)
                if name in found.stdout.split():
                    return
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"cluster {self.name}: CRD {name} not established and discoverable within {timeout:.0f}s"
                    f" (Established: {established.stdout!r}; {established.stderr.strip()})"
                )
            time.sleep(0.3)

    def api_client(self) -> Any:
        """A ``kubernetes.client.ApiClient`` configured from this cluster's kubeconfig."""
        from kubernetes import config

        new_client: Any = config.new_client_from_config
        return new_client(config_file=str(self.kubeconfig), context=self.name)

    def __repr__(self) -> str:
        return f"Cluster({self.name!r}, {self.version}, server={self.server})"


def start_clusters(clusters: Iterable[Cluster], timeout: float = START_TIMEOUT_SECONDS) -> None:
    """Start several clusters at once: launch everything, then wait (startups overlap).

    Must be called from the main thread (see harness/processes.py). On failure every
    cluster of the batch is stopped before the error propagates."""
    batch = list(clusters)
    began = time.monotonic()
    try:
        for c in batch:
            c._launch()
        for c in batch:
            for attempt in range(3):
                try:
                    c._wait_for(c._readyz_ok, "kube-apiserver /readyz", c._apiserver, timeout)
                    break
                except ClusterStartError:
                    if attempt < 2 and c._port_clash():
                        c._relaunch_on_new_ports()
                        continue
                    raise
        for c in batch:
            c._launch_kcm()
        for c in batch:
            c.wait_ready(timeout)
    except BaseException:
        for c in batch:
            with contextlib.suppress(Exception):
                c.stop()
        raise
    elapsed = time.monotonic() - began
    for c in batch:
        c.start_seconds = elapsed
    _record_start_time(batch, elapsed)


def _record_start_time(batch: list[Cluster], seconds: float) -> None:
    if os.environ.get("CLUSTERPEDIA_HARNESS_QUIET"):
        return
    names = ", ".join(f"{c.name}({c.version}{'+kcm' if c.controller_manager else ''})" for c in batch)
    print(f"[harness] started {names} in {seconds:.1f}s")
