"""The health/metrics server and the log formats, as a prober and a log shipper see them."""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client import Counter

from common.observability import HealthState, ObservabilityServer, setup_logging, start_observability_server
from common.settings import Settings


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


@pytest.fixture
def server() -> Iterator[tuple[ObservabilityServer, HealthState]]:
    health = HealthState()
    srv = ObservabilityServer("127.0.0.1", 0, health).start()
    yield srv, health
    srv.stop()


def test_probes_follow_the_components(server: tuple[ObservabilityServer, HealthState]) -> None:
    srv, health = server
    assert get(srv.port, "/readyz")[0] == 200  # nothing registered yet
    health.set_ready("writer", False, "database unreachable")
    health.set_ready("synchro", True)
    code, body = get(srv.port, "/readyz")
    assert code == 500
    assert "[-]writer failed: database unreachable" in body
    assert "[+]synchro ok" in body
    health.set_ready("writer", True)
    assert get(srv.port, "/readyz?verbose")[0] == 200
    assert get(srv.port, "/livez")[0] == 200
    assert get(srv.port, "/healthz")[0] == 200
    health.set_dead("writer", "RuntimeError: boom")
    code, body = get(srv.port, "/livez")
    assert code == 500 and "writer failed: RuntimeError: boom" in body
    assert get(srv.port, "/nope")[0] == 404


def test_metrics_serves_the_default_registry(server: tuple[ObservabilityServer, HealthState]) -> None:
    srv, _ = server
    counter = Counter("clusterpedia_test_observability_total", "A counter only this test uses")
    counter.inc(3)
    code, body = get(srv.port, "/metrics")
    assert code == 200
    assert "clusterpedia_test_observability_total 3.0" in body
    assert "python_info" in body


def test_no_server_when_metrics_port_is_zero() -> None:
    assert start_observability_server(Settings(metrics_port=0)) is None


def test_json_logs_carry_tier_and_extra_fields(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        setup_logging(Settings(log_format="json", log_level="DEBUG"), "writer")
        logging.getLogger("writer.batching").info("committed %d events", 5, extra={"cluster": "cluster-1"})
        line = capsys.readouterr().err.strip().splitlines()[-1]
        record = json.loads(line)
        assert record["msg"] == "committed 5 events"
        assert record["level"] == "INFO"
        assert record["tier"] == "writer"
        assert record["cluster"] == "cluster-1"
        assert record["logger"] == "writer.batching"

        setup_logging(Settings(log_format="text", log_level="WARNING"), "synchro")
        logging.getLogger("x").info("hidden")
        logging.getLogger("x").warning("shown", extra={"cluster": "c2"})
        err = capsys.readouterr().err
        assert "hidden" not in err
        assert "WARNING x: shown tier=synchro cluster=c2" in err
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


def test_bad_log_settings_are_rejected() -> None:
    with pytest.raises(ValueError, match="log_format"):
        setup_logging(Settings(log_format="xml"))
    with pytest.raises(ValueError, match="log_level"):
        setup_logging(Settings(log_level="LOUD"))
