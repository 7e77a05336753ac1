"""The kubeconfig loader is used under one lock (common/kubeconfig.py).

The kubernetes client records the name of a temporary file for inline credentials before it writes
their bytes; all-in-one loads the host kubeconfig from two threads (synchro and API tier) at start.
The write is slowed down here (the loader's ``open``, the filesystem edge) so that the interleaving
happens every time: the stock loader then hands the second thread an empty key file, the tiers'
own loaders never do."""

from __future__ import annotations

import base64
import builtins
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client import Configuration
from kubernetes.config import kube_config

from apiserver.host import load_host_connection
from common.settings import Settings
from synchro.host import host_credentials
from tests.harness.certs import CertificateAuthority


def _kubeconfig(tmp_path: Path) -> tuple[Path, bytes]:
    ca = CertificateAuthority("kubeconfig-race-ca")  # fresh bytes: nothing cached by the loader yet
    client = ca.client_cert("admin", ["system:masters"])
    b64 = lambda data: base64.b64encode(data).decode()  # noqa: E731
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "host",
                "cluster": {
                    "server": "https://127.0.0.1:6443",
                    "certificate-authority-data": b64(ca.cert_pem),
                },
            }
        ],
        "users": [
            {
                "name": "admin",
                "user": {
                    "client-certificate-data": b64(client.cert_pem),
                    "client-key-data": b64(client.key_pem),
                },
            }
        ],
        "contexts": [{"name": "host", "context": {"cluster": "host", "user": "admin"}}],
        "current-context": "host",
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path, client.key_pem


@pytest.fixture
def slow_writes(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every file the loader writes takes 0.3 s before its bytes land."""

    def slow_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if "w" in mode:
            time.sleep(0.3)
        return builtins.open(file, mode, *args, **kwargs)

    monkeypatch.setattr(kube_config, "open", slow_open, raising=False)
    yield


def _twice_at_once(load: Callable[[], bytes]) -> list[bytes]:
    got: list[bytes] = []
    threads = [threading.Thread(target=lambda: got.append(load())) for _ in range(2)]
    for t in threads:
        t.start()
        time.sleep(0.05)  # the second starts while the first is writing
    for t in threads:
        t.join(10)
    return got


@pytest.mark.usefixtures("slow_writes")
def test_the_stock_loader_races(tmp_path: Path) -> None:
    path, key = _kubeconfig(tmp_path)

    def load() -> bytes:
        cfg = Configuration()
        kube_config.load_kube_config(config_file=str(path), client_configuration=cfg)  # type: ignore[no-untyped-call]
        return Path(cfg.key_file).read_bytes()

    assert sorted(_twice_at_once(load)) == [b"", key]  # what the demo once met


@pytest.mark.usefixtures("slow_writes")
def test_the_tiers_load_the_host_kubeconfig_from_two_threads(tmp_path: Path) -> None:
    path, key = _kubeconfig(tmp_path)
    settings = Settings(kubeconfig=str(path))
    got: list[bytes] = []

    def api_tier() -> bytes:
        return Path(str(load_host_connection(settings).key_file)).read_bytes()

    def synchro() -> bytes:
        return host_credentials(settings).key_pem

    for load in (api_tier, synchro):
        got += _twice_at_once(load)
    assert got == [key] * 4
