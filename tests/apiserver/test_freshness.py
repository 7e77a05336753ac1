"""Freshness warnings: the text derived from a PediaCluster's status, and which responses carry it
(lists, gets, watches and collections whose scope includes the stale cluster), over the memory
store with the host's PediaCluster list at the protocol edge. The end-to-end version, a real
unreachable member through kubectl, is tests/e2e/test_kubectl_insight.py."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import httpx
import pytest

from apiserver.app import build_app
from apiserver.freshness import (
    Freshness,
    lag_reason,
    lagging_clusters,
    stale_clusters,
    stale_reason,
    warning_value,
)
from apiserver.pediaclusters import PediaClusterDirectory
from common.settings import ApiserverSettings, Settings
from common.storage import open_store
from tests.apiserver.hostlist import Host
from tests.apiserver.storefill import add_objects, add_type

R = "/apis/clusterpedia.io/v1beta1/resources"
SINCE = "2026-12-06T12:01:07Z"


def pc(name: str, status: dict[str, Any] | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = {"metadata": {"name": name}}
    if status is not None:
        obj["status"] = status
    return obj


def ready(status: str, reason: str, message: str = "", **resources: tuple[str, str]) -> dict[str, Any]:
    """A status as synchro/status.py renders it; ``resources``: name -> (sync status, progress)."""
    return {
        "conditions": [
            {
                "type": "Ready",
                "status": status,
                "reason": reason,
                "message": message,
                "lastTransitionTime": SINCE,
            }
        ],
        "resources": [
            {
                "group": "",
                "resources": [
                    {"resource": r, "syncConditions": [{"status": s, "initialListProgress": p}]}
                    for r, (s, p) in resources.items()
                ],
            }
        ],
    }


HEALTHY = ready("True", "Healthy", pods=("Syncing", "done"))
DOWN = ready(
    "False",
    "Unhealthy",
    'Get "https://127.0.0.1:9/version": dial tcp 127.0.0.1:9: connect: connection refused',
    pods=("Stop", "done"),
)


def test_the_reasons_a_cluster_is_not_in_sync() -> None:
    assert stale_reason(pc("c", HEALTHY)) == ""
    assert stale_reason(pc("c", DOWN)) == (
        'not synced: Unhealthy since 2026-12-06 12:01:07 UTC (Get "https://127.0.0.1:9/version": dial tcp'
        " 127.0.0.1:9: connect: connection refused); its rows may be stale"
    )
    assert stale_reason(pc("c")) == (
        "not synced: no status yet (the synchro has not reported on it); its rows may be missing"
    )
    listing = ready("True", "Healthy", pods=("Syncing", "120/500"), services=("Syncing", "done"))
    assert (
        stale_reason(pc("c", listing))
        == "not fully synced: pods initial list 120/500; its rows may be incomplete"
    )
    failing = ready("True", "Healthy", pods=("Error", ""), configmaps=("Pending", ""))
    assert stale_reason(pc("c", failing)) == (
        "not fully synced: pods Error, configmaps Pending; its rows may be incomplete"
    )
    long = ready("False", "Unauthorized", "x" * 500)
    assert stale_reason(pc("c", long)).endswith("x...); its rows may be stale")
    assert stale_reason({"metadata": {"name": "c"}, "status": "garbage"}).startswith("not synced: no status")
    assert stale_clusters({"items": [pc("a", HEALTHY), pc("b", DOWN), "junk", {}]}) == {
        "b": stale_reason(pc("b", DOWN))
    }


def test_the_header_is_one_quoted_printable_line() -> None:
    assert warning_value("c", 'not synced: "x"\\y\n\u00e9') == '299 - "c is not synced: \\"x\\"\\\\y??"'


@pytest.fixture(scope="module")
def host() -> Host:
    return Host([pc("c1", HEALTHY), pc("c2", DOWN)])


@pytest.fixture(scope="module")
def app(host: Host) -> Any:
    store = open_store("memory://freshness-app")
    for cluster in ("c1", "c2"):
        add_type(store, cluster, "", "v1", "configmaps", "ConfigMap")
        add_objects(
            store,
            cluster,
            "",
            "v1",
            "configmaps",
            [{"kind": "ConfigMap", "metadata": {"name": f"only-{cluster}", "namespace": "a"}}],
        )
    settings = Settings(
        storage="memory://freshness-app", apiserver=ApiserverSettings(authorization_mode="host-only")
    )
    directory = PediaClusterDirectory(host, refresh_seconds=0)
    return build_app(settings, store, freshness=Freshness(directory))


def warnings(app: Any, path: str) -> list[str]:
    async def go() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://t") as c:
            return await c.get(path)

    resp = asyncio.run(go())
    assert resp.status_code == 200, resp.text
    return resp.headers.get_list("warning")


def test_responses_that_include_the_stale_cluster_warn(app: Any) -> None:
    (value,) = warnings(app, f"{R}/api/v1/configmaps")
    assert value.startswith('299 - "c2 is not synced: Unhealthy since 2026-12-06 12:01:07 UTC (Get')
    assert warnings(app, f"{R}/clusters/c2/api/v1/namespaces/a/configmaps") == [value]
    assert warnings(app, f"{R}/clusters/c2/api/v1/namespaces/a/configmaps/only-c2") == [value]
    assert warnings(app, f"{R}/api/v1/namespaces/a/configmaps/only-c1") == [value]  # a get searches all
    assert warnings(app, f"{R}/api/v1/configmaps?watch=1&timeoutSeconds=1") == [value]
    assert warnings(app, "/apis/pedia.clusterpedia.io/v1alpha1/collectionresources/workloads") == [value]
    assert warnings(app, f"{R}/api/v1/configmaps?clusters=c2,c1") == [value]


def test_responses_without_the_stale_cluster_do_not(app: Any, host: Host) -> None:
    assert warnings(app, f"{R}/clusters/c1/api/v1/configmaps") == []
    assert warnings(app, f"{R}/api/v1/configmaps?clusters=c1") == []
    assert (
        warnings(app, f"{R}/api/v1/configmaps?labelSelector=search.clusterpedia.io/clusters+notin+(c2)") == []
    )
    assert warnings(app, f"{R}/api") == []  # discovery is not a cluster's rows


def test_the_warning_goes_when_the_cluster_is_healthy_or_removed(app: Any, host: Host) -> None:
    host.items = [pc("c1", HEALTHY), pc("c2", HEALTHY)]
    assert warnings(app, f"{R}/api/v1/configmaps") == []
    host.items = [pc("c1", HEALTHY), pc("c2", DOWN), pc("c3", DOWN)]
    assert len(warnings(app, f"{R}/api/v1/configmaps")) == 2  # c3 has no rows, it is still in scope
    host.items = [pc("c1", HEALTHY)]
    assert warnings(app, f"{R}/api/v1/configmaps") == []
    host.items = None  # the host stops answering: the last list read stands
    assert warnings(app, f"{R}/api/v1/configmaps") == []


def test_without_a_host_there_are_no_warnings() -> None:
    app = build_app(
        Settings(
            storage="memory://freshness-app", apiserver=ApiserverSettings(authorization_mode="host-only")
        ),
        open_store("memory://freshness-app"),
    )
    assert warnings(app, f"{R}/api/v1/configmaps") == []
    down = build_app(
        Settings(
            storage="memory://freshness-app", apiserver=ApiserverSettings(authorization_mode="host-only")
        ),
        open_store("memory://freshness-app"),
        freshness=Freshness(PediaClusterDirectory(Host(None))),
    )
    assert warnings(down, f"{R}/api/v1/configmaps") == []  # never read: nothing to say


def lagging(since: str) -> dict[str, Any]:
    return {**HEALTHY, "unappliedEventsSince": since}


def test_the_lag_a_status_reports() -> None:
    got = lagging_clusters(
        {
            "items": [
                pc("a", lagging("2026-12-06T12:01:07Z")),
                pc("b", HEALTHY),
                pc("c", lagging("yesterday")),
                pc("d", lagging("2026-12-06T12:01:07")),  # no zone: not what the synchro writes
                pc("e", {"unappliedEventsSince": 7}),
                pc("f", lagging("2026-12-06T12:01:07Z" + " " * 40)),
            ]
        }
    )
    assert got == {"a": 1796558467.0}
    assert lag_reason(1796558467.0, 1796558467.0 + 42.9) == (
        "lagging: its events since 2026-12-06 12:01:07 UTC are not stored yet (42 s behind); its rows"
        " may be stale"
    )
    assert "since long ago" in lag_reason(-1e20, 0)


def test_a_cluster_lagging_past_the_threshold_is_named() -> None:
    def stamp(seconds_ago: float) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - seconds_ago))

    host = Host(
        [
            pc("c1", lagging(stamp(120))),
            pc("c2", lagging(stamp(2))),
            pc("c3", {**DOWN, "unappliedEventsSince": stamp(120)}),
        ]
    )
    store = open_store("memory://freshness-app")
    settings = Settings(
        storage="memory://freshness-app", apiserver=ApiserverSettings(authorization_mode="host-only")
    )
    app = build_app(
        settings, store, freshness=Freshness(PediaClusterDirectory(host, refresh_seconds=0), lag_seconds=30)
    )
    c1, c3 = warnings(app, f"{R}/api/v1/configmaps")
    assert c1.startswith('299 - "c1 is lagging: its events since ')
    assert re.search(r"\(12[01] s behind\); its rows may be stale\"$", c1)
    assert c3.startswith('299 - "c3 is not synced: Unhealthy')  # the worse reason only
    assert warnings(app, f"{R}/clusters/c2/api/v1/configmaps") == []  # 2 s: within the threshold
    host.items = [pc("c1", HEALTHY)]  # caught up: the synchro removed the field
    assert warnings(app, f"{R}/api/v1/configmaps") == []
    never = Freshness(
        PediaClusterDirectory(Host([pc("c1", lagging(stamp(120)))]), refresh_seconds=0), lag_seconds=0
    )
    assert warnings(build_app(settings, store, freshness=never), f"{R}/api/v1/configmaps") == []
