"""The tier's HTTP face: its own access rule (bearer token), 503 until the first collection, the
last collection streamed with the tier's own series, a failed collection keeping the previous one,
and the command line refusing a bad configuration."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import httpx
import pytest

from cli.main import main
from common.settings import KubeStateMetricsSettings
from common.storage import StorageUnavailable, Store, open_store
from kubestate.families import RESOURCES
from kubestate.server import Collector, create_app
from tests.kubestate.objects import fleet_events
from tests.kubestate.support import parse, samples

TOKEN = b"s3cret-token"


@pytest.fixture
def store() -> Store:
    s = open_store(f"memory://ksm-{uuid.uuid4().hex}")
    ups, types = fleet_events()
    s.apply(ups, [], types)
    return s


class Down:
    """A store that does not answer (what the memory backend cannot be made to do)."""

    async def list_objects(self, search: object) -> object:
        raise StorageUnavailable("connection refused")


async def _get(collector: Collector, path: str, token: bytes = TOKEN, **headers: str) -> httpx.Response:
    app = create_app(collector, token, own_lifecycle=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        return await client.get(path, headers=headers)


def test_scrape_lifecycle(store: Store, tmp_path: Path) -> None:
    async def scenario() -> None:
        collector = Collector(store, RESOURCES, KubeStateMetricsSettings(page_rows=5), tmp_path)
        auth = {"authorization": "Bearer s3cret-token"}
        r = await _get(collector, "/metrics", **auth)
        assert r.status_code == 503 and "first collection" in r.text
        assert (await _get(collector, "/readyz")).status_code == 503
        assert (await _get(collector, "/healthz")).status_code == 200

        await collector.collect_once()
        assert (await _get(collector, "/readyz")).status_code == 200
        for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": "Basic czNjcmV0LXRva2Vu"}):
            r = await _get(collector, "/metrics", **headers)
            assert r.status_code == 401, headers
            assert r.headers["www-authenticate"].startswith("Bearer")
            assert "kube_pod" not in r.text
        r = await _get(collector, "/metrics", **auth)
        assert r.status_code == 200
        assert r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
        fams = parse(r.text)
        s = samples(fams)
        assert s[("clusterpedia_kube_state_metrics_objects", ())] == 16
        assert s[("clusterpedia_kube_state_metrics_truncated", ())] == 0
        assert s[("clusterpedia_kube_state_metrics_collection_failures_total", ())] == 0
        series = s[("clusterpedia_kube_state_metrics_series", ())]
        assert series == len([k for k in s if not k[0].startswith("clusterpedia_")])
        first = collector.current
        assert first is not None

        # a failing store: the previous collection stays served, the failure is counted
        collector.reader = Down()  # type: ignore[assignment]
        await collector.collect_once()
        assert collector.current is first
        r = await _get(collector, "/metrics", **auth)
        s2 = samples(parse(r.text))
        assert s2[("clusterpedia_kube_state_metrics_collection_failures_total", ())] == 1
        assert {k: v for k, v in s2.items() if not k[0].startswith("clusterpedia_")} == {
            k: v for k, v in s.items() if not k[0].startswith("clusterpedia_")
        }

        # a new collection replaces the file; the old one is removed
        collector.reader = store
        await collector.collect_once()
        assert collector.current is not first and not first.path.exists()

    asyncio.run(scenario())
    assert len(list(tmp_path.iterdir())) == 1  # the current collection only: spools and old ones gone


def test_no_token_configured_serves_anyone(store: Store, tmp_path: Path) -> None:
    async def scenario() -> None:
        collector = Collector(store, RESOURCES, KubeStateMetricsSettings(), tmp_path)
        await collector.collect_once()
        r = await _get(collector, "/metrics", token=b"")
        assert r.status_code == 200 and "kube_node_info{" in r.text

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "kube_state_metrics.resources=[pods, ingresses]"], "unknown ingresses"),
        (["--bearer-token-file", "/nonexistent/token"], "/nonexistent/token"),
        (["--bearer-token-file", "{empty}"], "is empty"),
    ],
)
def test_cli_refuses_bad_configuration(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    argv = ["kube-state-metrics", "--storage", f"sqlite:///{tmp_path}/s.db", "--log-format", "text"]
    argv += [a.replace("{empty}", str(empty)) for a in args]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
