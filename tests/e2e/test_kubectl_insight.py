"""What kubectl learns beyond a flat list, end to end: a real member, the real synchro and writer
filling the store, the API tier serving it, and kubectl 1.32.

* ``kubectl --cluster cluster-1 describe configmap x`` through Clusterpedia shows the same Events
  section as describe against the member (events are synced like any resource; kubectl finds them
  with a field selector on ``involvedObject.*``).
* A PediaCluster pointing at an unreachable member makes every list and watch whose scope includes
  it print a ``Warning`` naming it on stderr, and the warning goes once that PediaCluster is removed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.cluster import Cluster, free_port
from harness.paths import kubectl_binary
from tests.e2e.kubectl_support import ApiTier, kubectl_run
from tests.e2e.sync_support import (
    install_crd,
    make_settings,
    pediacluster,
    start_synchro,
    start_writer,
    wait_for,
)

pytestmark = pytest.mark.e2e

KUBECTL = "1.32"


@dataclass
class Setup:
    host: Cluster
    member: Cluster
    kubeconfig: Path


@pytest.fixture(scope="module")
def setup(host_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    workdir = tmp_path_factory.mktemp("insight")
    member = Cluster("cluster-1", "current", workdir=tmp_path_factory.mktemp("cluster-1"))
    member.start()
    store_url = f"sqlite:///{workdir / 'store.db'}"
    install_crd(host_cluster)
    host_cluster.apply(pediacluster("cluster-1", member, {"": ["configmaps", "events"]}))
    settings = make_settings(host_cluster, store_url, "memory://")
    writer = start_writer(settings)
    synchro = start_synchro(settings)
    api = ApiTier(workdir, store_url, extra_args=[f"--kubeconfig={host_cluster.kubeconfig}"])
    try:
        api.start()
        yield Setup(host_cluster, member, api.kubeconfig(workdir / "kubeconfig", ["cluster-1"]))
    finally:
        api.stop()
        synchro.stop()
        writer.stop()
        member.stop()


def event(name: str, about: dict[str, str], reason: str, message: str, *, kind: str, count: int) -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": "default"},
            "involvedObject": about,
            "reason": reason,
            "message": message,
            "type": kind,
            "count": count,
            "firstTimestamp": "2026-01-01T00:00:00Z",
            "lastTimestamp": "2026-01-01T00:05:00Z",
            "source": {"component": "insight-test"},
        }
    )


def events_block(describe: str) -> list[list[str]]:
    """The rows of describe's Events section, without the AGE column (time-dependent)."""
    lines = describe.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Events:"))
    rows = [re.split(r"\s{2,}", line.strip()) for line in lines[start + 1 :] if line.strip()]
    rows = [r for r in rows if not all(set(cell) <= {"-"} for cell in r)]  # the ---- underline
    return [r[:2] + r[3:] for r in rows]


def test_describe_shows_the_members_events(setup: Setup) -> None:
    member = setup.member
    member.kubectl("create", "configmap", "x", "-n", "default", "--from-literal=a=b")
    uid = member.get_json("configmap", "x", "-n", "default")["metadata"]["uid"]
    about = {"kind": "ConfigMap", "namespace": "default", "name": "x", "uid": uid, "apiVersion": "v1"}
    member.apply(event("x.1", about, "Checked", "looks fine", kind="Normal", count=1))
    member.apply(event("x.2", about, "Drifted", "value a changed twice", kind="Warning", count=3))
    other = {**about, "name": "y", "uid": "not-x"}  # another object's event: not x's
    member.apply(event("y.1", other, "Other", "not about x", kind="Normal", count=1))
    expected = events_block(
        member.kubectl("describe", "configmap", "x", "-n", "default", version=KUBECTL).stdout
    )
    assert [r[:2] for r in expected] == [["Type", "Reason"], ["Normal", "Checked"], ["Warning", "Drifted"]]

    def through_clusterpedia() -> list[list[str]] | None:
        out = kubectl_run(
            kubectl_binary(KUBECTL),
            setup.kubeconfig,
            "--cluster",
            "cluster-1",
            "describe",
            "configmap",
            "x",
            "-n",
            "default",
            check=False,
        )
        if out.returncode != 0:
            return None
        got = events_block(out.stdout)
        return got if got == expected else None

    wait_for(through_clusterpedia, "describe through Clusterpedia shows the member's events", timeout=60)


def warnings_of(setup: Setup, *args: str) -> list[str]:
    out = kubectl_run(kubectl_binary(KUBECTL), setup.kubeconfig, *args, "get", "configmaps", "-A")
    return [line for line in out.stderr.splitlines() if line.startswith("Warning:")]


def test_an_unreachable_cluster_is_named_in_a_warning(setup: Setup) -> None:
    closed = free_port()  # nothing listens there
    unreachable = json.loads(pediacluster("cluster-9", setup.member, {"": ["configmaps"]}))
    unreachable["spec"]["apiserverURL"] = f"https://127.0.0.1:{closed}"
    setup.host.apply(json.dumps(unreachable))

    def warned() -> str | None:
        lines = [w for w in warnings_of(setup, "--cluster", "clusterpedia") if "cluster-9" in w]
        return lines[0] if lines and "Unhealthy" in lines[0] else None

    line = wait_for(warned, "a Warning naming cluster-9", timeout=60)
    assert line.startswith("Warning: cluster-9 is not synced: Unhealthy since ")
    assert f"127.0.0.1:{closed}" in line and line.endswith("its rows may be stale")
    assert warnings_of(setup, "--cluster", "cluster-1") == []  # out of this request's scope
    watch = kubectl_run(
        kubectl_binary(KUBECTL),
        setup.kubeconfig,
        "--cluster",
        "clusterpedia",
        "get",
        "--raw",
        "/apis/clusterpedia.io/v1beta1/resources/api/v1/configmaps?watch=1&timeoutSeconds=1",
    )
    assert [w for w in watch.stderr.splitlines() if w.startswith("Warning: cluster-9 ")], watch.stderr
    setup.host.kubectl("delete", "pediacluster", "cluster-9")
    wait_for(
        lambda: warnings_of(setup, "--cluster", "clusterpedia") == [],
        "the warning gone with the PediaCluster",
        timeout=60,
    )
