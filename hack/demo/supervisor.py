"""The demo's supervisor: starts every process of the demo, then keeps them until SIGTERM.

It runs detached from the terminal (``control.up`` starts it in its own session), so the demo
keeps running after ``make demo`` returns. All clusters and tiers are its children, started by the
test harness's process layer, which asks the kernel to kill each child when the supervisor dies:
even a SIGKILLed supervisor leaves no process behind. On SIGTERM it stops the tiers, drops its
databases, stops the clusters (and the shared database servers if it started them), and exits.
"""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import yaml

from demo.layout import API_NAMESPACE, API_SERVICE, MEMBERS, REPO_ROOT, DemoDir, Progress
from demo.workloads import DATABASE_CRD, SYNCED_RESOURCES, Rest, Seeder
from harness.certs import CertificateAuthority
from harness.cluster import Cluster, free_port, start_clusters
from harness.paths import kubectl_binary
from harness.processes import Process
from harness.stores import answers, mysql_database, postgres_database, redis_database, service_urls

# No deployment/replicaset/daemonset/statefulset controllers: there is no kubelet, so they would
# report 0 ready replicas and overwrite the status the demo sets (see workloads.py). The token
# controller fills the synchro's token Secret; the others keep namespaces and owners consistent.
MEMBER_CONTROLLERS = (
    "serviceaccount-token-controller",
    "serviceaccount-controller",
    "namespace-controller",
    "garbage-collector-controller",
    "root-ca-certificate-publisher-controller",
)
# The seed's two commands, verbatim, run in each member cluster.
SEED_TOKEN_COMMANDS = r"""
SYNCHRO_TOKEN=$(kubectl get secret $(kubectl get serviceaccount clusterpedia-synchro -o jsonpath='{.secrets[0].name}') -o jsonpath='{.data.token}')
SYNCHRO_CA=$(kubectl get secret $(kubectl get serviceaccount clusterpedia-synchro -o jsonpath='{.secrets[0].name}') -o jsonpath='{.data.ca\.crt}')
printf '%s\n%s\n' "$SYNCHRO_TOKEN" "$SYNCHRO_CA"
"""  # noqa: E501
READY_TIMEOUT_SECONDS = 300.0


class Stop(Exception):
    """SIGTERM/SIGINT: unwind and clean up."""


def _on_signal(signum: int, _frame: FrameType | None) -> None:
    raise Stop(signal.Signals(signum).name)


def wait_until(progress: Progress, what: str, check: Callable[[], Any], timeout: float) -> Any:
    """Poll ``check`` until it returns something truthy; report every few seconds."""
    began = time.monotonic()
    last_report = began
    while True:
        result = check()
        if result:
            progress.say(f"{what}: done in {time.monotonic() - began:.1f}s")
            return result
        now = time.monotonic()
        if now - began > timeout:
            raise TimeoutError(f"{what}: not done after {timeout:.0f}s")
        if now - last_report >= 5:
            progress.say(f"waiting for {what} ({now - began:.0f}s)")
            last_report = now
        time.sleep(1.0)


class Supervisor:
    def __init__(self, demo: DemoDir, storage: str, queue: str, writers: int) -> None:
        self.demo = demo
        self.storage_kind = storage
        self.queue_kind = queue
        self.writers = writers
        self.progress = Progress()
        self.say = self.progress.say
        self.tiers: list[Process] = []
        self.host: Cluster
        self.members: dict[str, Cluster] = {}
        self.expected: dict[str, int] = {}

    # ------------------------------------------------------------------ clusters

    def start_clusters(self, stack: contextlib.ExitStack) -> None:
        self.demo.clusters.mkdir(parents=True, exist_ok=True)
        self.host = Cluster("host", "current", aggregation=True, workdir=self.demo.clusters / "host")
        versions = {"cluster-1": "current", "cluster-2": "current", "cluster-3": "older"}
        for name in MEMBERS:
            self.members[name] = Cluster(
                name,
                versions[name],
                controller_manager=True,
                controllers=MEMBER_CONTROLLERS,
                workdir=self.demo.clusters / name,
            )
        everything = [self.host, *self.members.values()]
        for c in everything:
            stack.callback(c.stop)
        described = ", ".join(f"{c.name} {c.version}" for c in everything)
        self.say(f"starting 4 control planes (etcd + kube-apiserver [+ controller manager]): {described}")
        start_clusters(everything)
        self.say("control planes ready")
        self.demo.update_state(
            processes=[{"name": p.name, "pid": p.pid} for c in everything for p in c.processes],
        )

    def kubectl_env(self, cluster: Cluster) -> dict[str, str]:
        self.demo.bin.mkdir(parents=True, exist_ok=True)
        link = self.demo.bin / "kubectl"
        if not link.exists():
            link.symlink_to(kubectl_binary())
        return {
            "KUBECONFIG": str(cluster.kubeconfig),
            "PATH": f"{self.demo.bin}:/usr/bin:/bin",
            "HOME": str(self.demo.root),
        }

    # ------------------------------------------------------------------ members

    def prepare_member(self, name: str) -> tuple[str, str]:
        """RBAC examples applied (the synchro's read-only identity, and the opt-in impersonation
        that lets writes through Clusterpedia reach the member as the caller), token and CA read
        with the seed's commands, workloads seeded."""
        member = self.members[name]
        env = self.kubectl_env(member)
        for example in ("clusterpedia_synchro_rbac.yaml", "clusterpedia_control_rbac.yaml"):
            subprocess.run(
                ["kubectl", "apply", "-f", str(REPO_ROOT / "examples" / example)],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            )

        def token_and_ca() -> tuple[str, str] | None:
            out = subprocess.run(["bash", "-c", SEED_TOKEN_COMMANDS], env=env, capture_output=True, text=True)
            lines = out.stdout.splitlines()
            if out.returncode == 0 and len(lines) == 2 and all(lines):
                return lines[0], lines[1]
            return None

        creds: tuple[str, str] = wait_until(
            self.progress, f"{name}: token controller fills clusterpedia-synchro-token", token_and_ca, 60
        )
        rest = Rest(member.server, member.token, member.ca_pem)
        rest.create("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", DATABASE_CRD)
        crd = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{DATABASE_CRD['metadata']['name']}"

        def established() -> bool:
            conditions = (rest.request("GET", crd).get("status") or {}).get("conditions") or []
            return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

        wait_until(self.progress, f"{name}: demo CRD established", established, 30)
        counts = Seeder(rest, name).seed()
        self.expected[name] = counts["deployments"]
        self.say(
            f"{name}: seeded {counts['deployments']} deployments, {counts['daemonsets']} daemonsets, "
            f"{counts['statefulsets']} statefulsets, {counts['pods']} pods "
            "(+ services, configmaps, databases)"
        )
        return creds

    def pediacluster(self, name: str, token: str, ca: str) -> dict[str, Any]:
        """examples/pediacluster.yaml with the seed's edits: name, apiserverURL, tokenData, caData."""
        obj: dict[str, Any] = yaml.safe_load((REPO_ROOT / "examples" / "pediacluster.yaml").read_text())
        obj["metadata"]["name"] = name
        spec = obj["spec"]
        spec["apiserverURL"] = self.members[name].server
        spec["tokenData"] = token
        spec["caData"] = ca
        spec["resources"] = SYNCED_RESOURCES
        return obj

    # ------------------------------------------------------------------ tiers

    def serving_cert(self) -> tuple[Path, Path, bytes]:
        ca = CertificateAuthority("clusterpedia-demo-ca")
        # The aggregator checks the name <service>.<namespace>.svc; kubectl may also go direct.
        pair = ca.serving_cert(
            API_SERVICE, hosts=("localhost", "127.0.0.1", f"{API_SERVICE}.{API_NAMESPACE}.svc")
        )
        cert_file, key_file = pair.write(self.demo.tls, "apiserver")
        return cert_file, key_file, ca.cert_pem

    def register_apiservices(self, port: int, ca_pem: bytes) -> None:
        bundle = base64.b64encode(ca_pem).decode()
        docs: list[dict[str, Any]] = [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": API_NAMESPACE}},
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": API_SERVICE, "namespace": API_NAMESPACE},
                "spec": {
                    "type": "ExternalName",
                    "externalName": "localhost",
                    "ports": [{"name": "https", "port": port}],
                },
            },
        ]
        for group, version in (("clusterpedia.io", "v1beta1"), ("pedia.clusterpedia.io", "v1alpha1")):
            docs.append(
                {
                    "apiVersion": "apiregistration.k8s.io/v1",
                    "kind": "APIService",
                    "metadata": {"name": f"{version}.{group}"},
                    "spec": {
                        "group": group,
                        "version": version,
                        "service": {"name": API_SERVICE, "namespace": API_NAMESPACE, "port": port},
                        "caBundle": bundle,
                        "groupPriorityMinimum": 1000,
                        "versionPriority": 100,
                    },
                }
            )
        self.host.apply(yaml.safe_dump_all(docs))

    def connection_urls(self, stack: contextlib.ExitStack) -> tuple[str, str]:
        if self.queue_kind == "memory" and self.storage_kind == "memory":
            return "memory://", "memory://"  # one all-in-one process shares both (parse refuses redis)
        if self.storage_kind == "sqlite" and self.queue_kind == "memory":
            return f"sqlite:///{self.demo.root / 'clusterpedia.db'}", "memory://"
        urls = service_urls()
        if not all(answers(u) for u in urls.values()):
            self.say("starting PostgreSQL, MariaDB and Redis (hack/services.sh start) ...")
            subprocess.run(["bash", str(REPO_ROOT / "hack" / "services.sh"), "start"], check=True)
            self.demo.update_state(services_started=True)
            stack.callback(self.stop_services)
        storage = f"sqlite:///{self.demo.root / 'clusterpedia.db'}"
        if self.storage_kind == "postgres":
            storage = stack.enter_context(postgres_database(urls["CLUSTERPEDIA_TEST_POSTGRES"]))
        elif self.storage_kind == "mysql":
            storage = stack.enter_context(mysql_database(urls["CLUSTERPEDIA_TEST_MYSQL"]))
        queue = "memory://"
        if self.queue_kind == "redis":
            queue = stack.enter_context(redis_database(urls["CLUSTERPEDIA_TEST_REDIS"]))
        return storage, queue

    def stop_services(self) -> None:
        self.say("stopping PostgreSQL, MariaDB and Redis (the demo started them)")
        subprocess.run(["bash", str(REPO_ROOT / "hack" / "services.sh"), "stop"], check=False)
        self.demo.update_state(services_started=False)

    def start_tiers(self, stack: contextlib.ExitStack, port: int, cert: Path, key: Path) -> None:
        storage, queue = self.connection_urls(stack)
        exe = str(Path(sys.executable).parent / "clusterpedia")
        common = [
            f"--storage={storage}",
            f"--queue={queue}",
            f"--kubeconfig={self.host.kubeconfig}",
            "--log-format=text",
        ]
        api = [
            f"--port={port}",
            f"--tls-cert-file={cert}",
            f"--tls-key-file={key}",
            "--authenticate",
            "--authorize",
            f"--requestheader-client-ca-file={self.host.front_proxy_ca_file}",
        ]
        plan: list[tuple[str, list[str]]]
        if queue == "memory://":
            plan = [("clusterpedia", ["all-in-one", *common, *api, f"--metrics-port={free_port()}"])]
        else:
            plan = [
                ("apiserver", ["apiserver", *common, *api]),
                ("synchro", ["synchro", *common, f"--metrics-port={free_port()}"]),
            ]
            plan += [
                (
                    f"writer-{i}",
                    ["writer", *common, f"--metrics-port={free_port()}", f"--consumer-name=demo-writer-{i}"],
                )
                for i in range(1, self.writers + 1)
            ]
        shown = storage.split("@")[-1] if "@" in storage else storage
        subprocess.run([exe, "migrate", *common], check=True, capture_output=True, text=True)
        self.say(f"starting Clusterpedia: {', '.join(n for n, _ in plan)} (storage {shown}, queue {queue})")
        for name, args in plan:
            proc = Process(name, [exe, *args], self.demo.logs / f"{name}.log")
            stack.callback(proc.stop, 20.0)
            proc.start()
            self.tiers.append(proc)
        self.demo.update_state(
            tiers=[{"name": p.name, "pid": p.pid, "log": str(p.log_path)} for p in self.tiers],
            storage_url=shown,
            queue_url=queue,
        )

    # ------------------------------------------------------------------ readiness

    def pediaclusters_ready(self) -> bool:
        items = self.host.get_json("pediaclusters.clusters.clusterpedia.io").get("items", [])
        ready = {
            i["metadata"]["name"]
            for i in items
            if any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in i.get("status", {}).get("conditions", [])
            )
        }
        return ready >= set(MEMBERS)

    def api_has_everything(self) -> bool:
        code, body = self.host.get(
            "/apis/clusterpedia.io/v1beta1/resources/apis/apps/v1/deployments", timeout=10
        )
        if code != 200:
            return False
        seen: dict[str, int] = {}
        for item in json.loads(body).get("items", []):
            cluster = item["metadata"].get("annotations", {}).get("shadow.clusterpedia.io/cluster-name", "")
            seen[cluster] = seen.get(cluster, 0) + 1
        return all(seen.get(name, 0) >= n for name, n in self.expected.items())

    def check_tiers(self) -> list[str]:
        for proc in self.tiers:
            if not proc.running():
                raise RuntimeError(
                    f"{proc.name} exited ({proc.exit_code()}); "
                    f"last lines of {proc.log_path}:\n{proc.log_tail(30)}"
                )
        return []

    # ------------------------------------------------------------------ kubeconfigs

    def write_kubeconfigs(self) -> None:
        self.demo.members.mkdir(parents=True, exist_ok=True)
        for name, member in self.members.items():
            shutil.copyfile(member.kubeconfig, self.demo.members / f"{name}.kubeconfig")
        config = yaml.safe_load(self.host.kubeconfig.read_text())
        self.demo.kubeconfig.touch(mode=0o600)
        self.demo.kubeconfig.write_text(yaml.safe_dump(config, sort_keys=False))
        script = REPO_ROOT / "hack" / "gen-clusterconfigs.sh"
        env = {**self.kubectl_env(self.host), "KUBECONFIG": str(self.demo.kubeconfig)}
        if script.exists():
            out = subprocess.run(
                ["bash", str(script)], env=env, capture_output=True, text=True, cwd=REPO_ROOT
            )
            if out.returncode != 0:
                raise RuntimeError(f"hack/gen-clusterconfigs.sh failed:\n{out.stdout}{out.stderr}")
            self.say("kubeconfig: hack/gen-clusterconfigs.sh added the clusterpedia cluster entries")
        config = yaml.safe_load(self.demo.kubeconfig.read_text())
        have = {c["name"] for c in config.get("clusters", [])}
        missing = [n for n in ("clusterpedia", *MEMBERS) if n not in have]
        if missing:
            # Same entries the script writes: the host's CA, the search API's paths.
            host_entry = next(c for c in config["clusters"] if c["name"] == "host")["cluster"]
            base = f"{self.host.server}/apis/clusterpedia.io/v1beta1/resources"
            for name in missing:
                server = base if name == "clusterpedia" else f"{base}/clusters/{name}"
                config["clusters"].append(
                    {
                        "name": name,
                        "cluster": {
                            "server": server,
                            "certificate-authority-data": host_entry["certificate-authority-data"],
                        },
                    }
                )
            self.demo.kubeconfig.write_text(yaml.safe_dump(config, sort_keys=False))
            self.say(f"kubeconfig: added cluster entries {', '.join(missing)}")

    # ------------------------------------------------------------------ main

    def run(self) -> None:
        signal.signal(signal.SIGTERM, _on_signal)
        signal.signal(signal.SIGINT, _on_signal)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        with contextlib.ExitStack() as stack:
            try:
                self.demo.update_state(phase="starting")
                self.start_clusters(stack)
                self.say("applying the PediaCluster CRD to the host")
                self.host.kubectl("apply", "-f", str(REPO_ROOT / "charts" / "clusterpedia" / "crds"))
                self.host.wait_crd("pediaclusters.clusters.clusterpedia.io")
                port = free_port()
                cert, key, ca_pem = self.serving_cert()
                self.say(
                    "registering APIServices v1beta1.clusterpedia.io and v1alpha1.pedia.clusterpedia.io "
                    f"-> localhost:{port}"
                )
                self.register_apiservices(port, ca_pem)
                pediaclusters = []
                for name in MEMBERS:
                    self.say(
                        f"{name}: applying examples/clusterpedia_synchro_rbac.yaml and "
                        "clusterpedia_control_rbac.yaml, "
                        "reading token and CA, seeding workloads"
                    )
                    token, ca = self.prepare_member(name)
                    pediaclusters.append(self.pediacluster(name, token, ca))
                self.start_tiers(stack, port, cert, key)
                self.say(
                    "creating PediaClusters cluster-1, cluster-2, cluster-3 "
                    "(built like examples/pediacluster.yaml)"
                )
                self.host.apply(yaml.safe_dump_all(pediaclusters))
                wait_until(
                    self.progress,
                    "every PediaCluster Ready",
                    lambda: not self.check_tiers() and self.pediaclusters_ready(),
                    READY_TIMEOUT_SECONDS,
                )
                wait_until(
                    self.progress,
                    "the search API (through the host) to list every cluster's deployments",
                    lambda: not self.check_tiers() and self.api_has_everything(),
                    READY_TIMEOUT_SECONDS,
                )
                self.write_kubeconfigs()
                self.demo.update_state(phase="ready", ready_after_seconds=round(self.progress.elapsed(), 1))
                self.say(f"demo ready after {self.progress.elapsed():.0f}s")
                self.idle()
            except Stop as sig:
                self.say(f"stopping ({sig})")
            except BaseException as exc:
                self.demo.update_state(phase="failed", error=f"{type(exc).__name__}: {exc}")
                self.say(f"FAILED: {type(exc).__name__}: {exc}")
                traceback.print_exc()
                raise
            finally:
                # a second signal must not interrupt the cleanup
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                self.say("stopping the tiers and clusters ...")
        self.demo.update_state(phase="stopped")
        self.say("stopped")

    def idle(self) -> None:
        while True:
            time.sleep(2.0)
            try:
                self.check_tiers()
            except RuntimeError as exc:
                if self.demo.read_state().get("phase") != "degraded":
                    self.say(f"DEGRADED: {exc}")
                    self.demo.update_state(phase="degraded", error=str(exc))


def run(demo_dir: Path, storage: str, queue: str, writers: int) -> int:
    Supervisor(DemoDir(demo_dir), storage, queue, writers).run()
    return 0
