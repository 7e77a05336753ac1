"""PediaClusters written by an attacker (DESIGN section 10): nothing in one may make the synchro run a
program, read a local file, or send credentials anywhere but a validated member URL.

Each defect of the security-hardening issue is a case here, against a real host, a real member and
the real synchro: exec-plugin and tokenFile kubeconfigs (in the spec and through a Secret),
malformed URLs, plain http without the opt-in, userinfo URLs, the cloud metadata address, and the
denied networks applied after DNS resolution. Loopback listeners stand in for the attacker's
server and record every connection; a good cluster keeps syncing beside the hostile ones. A member
whose discovery answers have the wrong shape is that cluster's clear error (its Ready condition),
not a TypeError, a traceback or a restart loop.
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.certs import CertificateAuthority
from harness.cluster import Cluster
from tests.e2e.sync_support import (
    GR,
    b64,
    cluster_rows,
    install_crd,
    make_settings,
    pediacluster,
    ready_condition,
    start_synchro,
    start_writer,
    unique,
    wait_for,
    wait_store_matches,
)

pytestmark = pytest.mark.e2e

CONFIGMAPS = [{"group": "", "resources": ["configmaps"]}]
GOOD_GRS: list[GR] = [("", "v1", "configmaps")]


class Listener:
    """A TCP listener on loopback that records what reaches it (the attacker's server)."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.sock = socket.create_server((host, 0))
        self.sock.settimeout(0.2)
        self.port: int = self.sock.getsockname()[1]
        self.connections = 0
        self.received = b""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            with conn:
                conn.settimeout(1.0)
                try:
                    while chunk := conn.recv(65536):
                        self.received += chunk
                except OSError:
                    pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    lst = Listener()
    yield lst
    lst.close()


def kubeconfig(server: str, user: dict[str, Any]) -> str:
    return b64(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "m", "cluster": {"server": server, "insecure-skip-tls-verify": True}}],
                "users": [{"name": "u", "user": user}],
                "contexts": [{"name": "c", "context": {"cluster": "m", "user": "u"}}],
                "current-context": "c",
            }
        )
    )


def pc(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "clusters.clusterpedia.io/v1alpha1",
        "kind": "PediaCluster",
        "metadata": {"name": name},
        "spec": {"resources": CONFIGMAPS, **spec},
    }


def labelled_secret(name: str, kubeconfig_b64: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": "clusterpedia-system",
            "labels": {"clusterpedia.io/credentials": "true"},
        },
        "data": {"kubeconfig": kubeconfig_b64},
    }


def apply_all(host: Cluster, objects: list[dict[str, Any]]) -> None:
    host.apply(json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}))


def ready_conditions(host: Cluster, names: list[str]) -> dict[str, dict[str, Any]]:
    items = host.get_json("pediaclusters.clusters.clusterpedia.io")["items"]
    by_name = {i["metadata"]["name"]: ready_condition(i.get("status") or {}) for i in items}
    return {n: by_name.get(n, {}) for n in names}


def test_hostile_pediaclusters_run_nothing_and_send_nothing(
    host_cluster: Cluster,
    member_cluster: Any,
    sqlite_url: str,
    listener: Listener,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    member: Cluster = member_cluster("hostile-member")
    install_crd(host_cluster)
    host_cluster.kubectl("create", "namespace", "clusterpedia-system", check=False)
    marker = tmp_path / "pwned"
    stolen = tmp_path / "stolen-token"
    stolen.write_text("stolen-" + unique("t"))
    at_listener = f"http://127.0.0.1:{listener.port}"
    exec_user = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1beta1",
            "command": "/bin/sh",
            "args": ["-c", f"touch {marker}; exit 1"],
        }
    }
    token_file_user = {"tokenFile": str(stolen)}
    secret_token = "s3cr3t-" + unique("p")
    # name -> (spec, what the Ready=False InvalidConfig message must say)
    hostile: dict[str, tuple[dict[str, Any], str]] = {
        "exec-plugin": ({"kubeconfig": kubeconfig("https://127.0.0.1:1", exec_user)}, "user.exec is refused"),
        "token-file": ({"kubeconfig": kubeconfig(at_listener, token_file_user)}, "user.tokenFile is refused"),
        "exec-in-secret": ({"secretRef": {"name": "exec-kubeconfig"}}, "user.exec is refused"),
        "token-file-in-secret": (
            {"secretRef": {"name": "tokenfile-kubeconfig"}},
            "user.tokenFile is refused",
        ),
        # secretRef names go into a host path read with the synchro's own credentials
        "secret-path": (
            {"secretRef": {"name": "x/../../../../api/v1/namespaces/kube-system/secrets/any"}},
            "is not a valid Secret name",
        ),
        "secret-namespace": (
            {"secretRef": {"namespace": "kube-system/secrets/any?x=", "name": "creds"}},
            "is not a valid namespace name",
        ),
        "bad-ipv6": ({"apiserverURL": "https://[::1", "tokenData": b64("t")}, "is not a valid URL"),
        "bad-port": (
            {"apiserverURL": "https://127.0.0.1:notaport", "tokenData": b64("t")},
            "is not a valid URL",
        ),
        "port-range": (
            {"apiserverURL": "https://127.0.0.1:99999", "tokenData": b64("t")},
            "is not a valid URL",
        ),
        "crlf-url": (
            {"apiserverURL": f"https://127.0.0.1:{listener.port}/\r\nX-Injected: 1", "tokenData": b64("t")},
            "control characters",
        ),
        "plain-http": ({"apiserverURL": at_listener, "tokenData": b64(secret_token)}, "plain http://"),
        "userinfo": (
            {
                "apiserverURL": f"https://admin:{secret_token}@127.0.0.1:{listener.port}",
                "tokenData": b64("t"),
            },
            "must not contain user information",
        ),
        "metadata": (
            {"apiserverURL": "https://169.254.169.254/latest", "tokenData": b64(secret_token)},
            "denied network 169.254.0.0/16 (synchro.denied_networks)",
        ),
    }
    settings = make_settings(host_cluster, sqlite_url, f"memory://{unique('q')}")
    writer, synchro = start_writer(settings), start_synchro(settings, unique("w"))
    try:
        host_cluster.apply(pediacluster("good", member, {"": ["configmaps"]}))
        wait_store_matches(sqlite_url, lambda: cluster_rows("good", member, GOOD_GRS), ["good"])
        apply_all(
            host_cluster,
            [
                labelled_secret("exec-kubeconfig", kubeconfig("https://127.0.0.1:1", exec_user)),
                labelled_secret("tokenfile-kubeconfig", kubeconfig(at_listener, token_file_user)),
                *(pc(name, spec) for name, (spec, _) in hostile.items()),
            ],
        )
        applied = time.monotonic()
        names = list(hostile)
        conds = wait_for(
            lambda: (
                (c := ready_conditions(host_cluster, names))
                and all(v.get("reason") == "InvalidConfig" for v in c.values())
                and c
            ),
            "InvalidConfig on every hostile PediaCluster",
            timeout=10.0,
        )
        took = time.monotonic() - applied
        for name, (_, message) in hostile.items():
            assert conds[name]["status"] == "False" and message in conds[name]["message"], (name, conds[name])
            assert secret_token not in conds[name]["message"]
        # Nothing crashed or looped: at most one warning per hostile cluster, no traceback at all.
        time.sleep(3.0)  # three more probe intervals: a crash loop would log again meanwhile
        for name in names:
            logged = [
                r
                for r in caplog.records
                if getattr(r, "cluster", None) == name and r.levelno >= logging.WARNING
            ]
            assert len(logged) <= 1, (name, [r.getMessage() for r in logged])
        assert not [r for r in caplog.records if r.exc_info and r.name.startswith("synchro")]
        assert secret_token not in caplog.text and stolen.read_text() not in caplog.text
        # the good cluster kept syncing meanwhile
        member.apply("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: after-hostile, namespace: default}")
        wait_store_matches(sqlite_url, lambda: cluster_rows("good", member, GOOD_GRS), ["good"])
        assert not marker.exists(), "an exec plugin of a PediaCluster kubeconfig ran"
        assert (listener.connections, listener.received) == (0, b""), "credentials went to the listener"
        assert took <= 10.0

        # The documented opt-in for plain http does connect (and says why the member is unhealthy).
        apply_all(
            host_cluster,
            [
                pc(
                    "plain-http-opt-in",
                    {"apiserverURL": at_listener, "insecureAllowHTTP": True, "tokenData": b64("t")},
                )
            ],
        )
        wait_for(lambda: listener.connections > 0, "the opted-in plain-http cluster to connect")
        cond = wait_for(
            lambda: (
                (c := ready_conditions(host_cluster, ["plain-http-opt-in"])["plain-http-opt-in"]).get(
                    "reason"
                )
                == "Unhealthy"
                and c
            ),
            "plain-http-opt-in Unhealthy",
        )
        assert at_listener in cond["message"]
    finally:
        synchro.stop()
        writer.stop()


def test_denied_networks_apply_after_name_resolution(
    host_cluster: Cluster, sqlite_url: str, listener: Listener
) -> None:
    """With loopback denied, neither a loopback IP literal nor a name resolving to loopback is
    connected to (the host cluster, the operator's own, stays reachable)."""
    install_crd(host_cluster)
    settings = make_settings(
        host_cluster,
        sqlite_url,
        f"memory://{unique('q')}",
        denied_networks=["127.0.0.0/8", "::1/128"],
    )
    synchro = start_synchro(settings, unique("w"))
    try:
        apply_all(
            host_cluster,
            [
                pc(
                    "denied-by-name",
                    {"apiserverURL": f"https://localhost:{listener.port}", "tokenData": b64("t")},
                ),
                pc(
                    "denied-literal",
                    {"apiserverURL": f"https://127.0.0.1:{listener.port}", "tokenData": b64("t")},
                ),
            ],
        )
        names = ["denied-by-name", "denied-literal"]
        conds = wait_for(
            lambda: (
                (c := ready_conditions(host_cluster, names))
                and all(v.get("reason") == "InvalidConfig" for v in c.values())
                and c
            ),
            "InvalidConfig for the denied destinations",
        )
        assert "in the denied network 127.0.0.0/8" in conds["denied-literal"]["message"]
        by_name = conds["denied-by-name"]["message"]
        assert "localhost resolves to" in by_name and "denied network" in by_name, by_name
        assert (listener.connections, listener.received) == (0, b"")
    finally:
        synchro.stop()


class HostileMember(BaseHTTPRequestHandler):
    """A kube-apiserver impostor whose discovery document is not a mapping."""

    calls: list[float]

    def do_GET(self) -> None:
        body = {"/version": b'{"gitVersion": "v1.0.0-hostile"}', "/api": b"[]"}.get(self.path, b"{}")
        if self.path == "/api":
            type(self).calls.append(time.monotonic())
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_a_hostile_discovery_answer_is_that_clusters_error(
    host_cluster: Cluster, sqlite_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    install_crd(host_cluster)
    ca = CertificateAuthority("hostile-ca")
    cert, key = ca.serving_cert("hostile", hosts=("127.0.0.1",)).write(tmp_path, "hostile")
    handler = type("Handler", (HostileMember,), {"calls": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(cert), str(key))
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    settings = make_settings(host_cluster, sqlite_url, f"memory://{unique('q')}")
    synchro = start_synchro(settings, unique("w"))
    try:
        url = f"https://127.0.0.1:{server.server_address[1]}"
        apply_all(
            host_cluster,
            [
                pc(
                    "hostile-answers",
                    {"apiserverURL": url, "caData": b64(ca.cert_pem), "tokenData": b64("hostile-token")},
                )
            ],
        )
        cond = wait_for(
            lambda: (
                (c := ready_conditions(host_cluster, ["hostile-answers"])["hostile-answers"]).get("reason")
                == "Unhealthy"
                and "unexpected answer" in c.get("message", "")
                and c
            ),
            "Unhealthy naming the answer",
        )
        assert cond["status"] == "False"
        assert cond["message"] == (
            "discovery failed: unexpected answer to GET /api: Expected `object`, got `array`"
        ), cond
        # asked again on the health-probe schedule (1 s here), never in a hot loop, never crashed
        wait_for(lambda: len(handler.calls) >= 4, "four discoveries", timeout=30.0)
        gaps = [b - a for a, b in zip(handler.calls, handler.calls[1:], strict=False)][:3]
        assert min(gaps) >= 0.8, gaps
        assert ready_conditions(host_cluster, ["hostile-answers"])["hostile-answers"]["reason"] == "Unhealthy"
        tracebacks = [r for r in caplog.records if r.exc_info]
        assert tracebacks == [], [r.getMessage() for r in tracebacks]
    finally:
        synchro.stop()
        server.shutdown()
        server.server_close()
