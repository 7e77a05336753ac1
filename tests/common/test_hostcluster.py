"""The host kubeconfig (common/hostcluster.py): one documented order for both tiers, and the loader
used under one lock.

The order is tested with real kubeconfig files, a real service-account directory and the process
environment a user would set.

The race: the kubernetes client records the name of a temporary file for inline credentials before
it writes their bytes; all-in-one loads the host kubeconfig from two threads (synchro and API tier)
at start. The write is slowed down here (the loader's ``open``, the filesystem edge) so that the
interleaving happens every time: the stock loader then hands the second thread an empty key file,
the tiers' loaders never do."""

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

from apiserver.host import HostClient
from common.hostcluster import HostConfigError, load_host_credentials
from common.settings import Settings
from harness.certs import CertificateAuthority
from synchro.host import host_credentials


def _kubeconfig(tmp_path: Path, name: str = "kubeconfig") -> tuple[Path, bytes]:
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
    path = tmp_path / name
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
        return HostClient(load_host_credentials(settings)).conn.key_pem

    def synchro() -> bytes:
        return host_credentials(settings).key_pem

    for load in (api_tier, synchro):
        got += _twice_at_once(load)
    assert got == [key] * 4


# -- the order: --kubeconfig, $KUBECONFIG, in-cluster service account, ~/.kube/config -----------------


def _token_kubeconfig(path: Path, server: str, token: str, context: str = "host") -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": context, "cluster": {"server": server, "insecure-skip-tls-verify": True}}],
        "users": [{"name": context, "user": {"token": token}}],
        "contexts": [{"name": context, "context": {"cluster": context, "user": context}}],
        "current-context": context,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Every source present at once, each naming a different server; a test removes the ones that
    must lose. The environment is what a user (or a pod) sets."""
    flag = _token_kubeconfig(tmp_path / "flag.kubeconfig", "https://127.0.0.1:1001", "flag-token")
    env = _token_kubeconfig(tmp_path / "env.kubeconfig", "https://127.0.0.1:1002", "env-token")
    home = tmp_path / "home"
    _token_kubeconfig(home / ".kube" / "config", "https://127.0.0.1:1004", "home-token")
    sa = tmp_path / "serviceaccount"
    sa.mkdir()
    (sa / "token").write_text("pod-token")
    (sa / "ca.crt").write_bytes(CertificateAuthority("in-cluster-ca").cert_pem)
    monkeypatch.setenv("KUBECONFIG", str(env))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "1003")
    monkeypatch.setenv("HOME", str(home))
    return {"flag": flag, "env": env, "home": home, "sa": sa}


def _load(sources: dict[str, Any], settings: Settings | None = None) -> tuple[str, str, str]:
    """(server, source, bearer token) as the API tier gets them, checked against the synchro's."""
    settings = settings or Settings()
    host = load_host_credentials(settings, service_account_dir=sources["sa"])
    return host.server, host.source, host.bearer_token


def test_the_kubeconfig_setting_comes_first(sources: dict[str, Any]) -> None:
    settings = Settings(kubeconfig=str(sources["flag"]))
    assert _load(sources, settings) == (
        "https://127.0.0.1:1001",
        f"--kubeconfig {sources['flag']}",
        "flag-token",
    )
    assert host_credentials(settings).url == "https://127.0.0.1:1001"  # the synchro's view: the same


def test_then_the_kubeconfig_environment_variable(sources: dict[str, Any]) -> None:
    assert _load(sources) == ("https://127.0.0.1:1002", "$KUBECONFIG", "env-token")


def test_then_the_in_cluster_service_account(
    sources: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBECONFIG")
    host = load_host_credentials(Settings(), service_account_dir=sources["sa"])
    assert (host.server, host.source) == ("https://127.0.0.1:1003", "in-cluster service account")
    # the in-cluster loader writes "bearer <token>": the token still reaches the Authorization header
    assert host.headers() == {"Authorization": "Bearer pod-token"}
    assert host.bearer_token == "pod-token"
    assert host.ca_pem == (sources["sa"] / "ca.crt").read_bytes()


def test_then_the_home_kubeconfig(sources: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBECONFIG")
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST")
    assert _load(sources) == ("https://127.0.0.1:1004", "~/.kube/config", "home-token")
    assert host_credentials(Settings()).url == "https://127.0.0.1:1004"


def test_no_source_is_a_clear_error(sources: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBECONFIG")
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST")
    monkeypatch.setenv("HOME", str(sources["home"] / "nowhere"))
    with pytest.raises(HostConfigError, match=r"no host kubeconfig: set --kubeconfig .* \$KUBECONFIG"):
        _load(sources)


def test_a_broken_source_is_reported_not_skipped(
    sources: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A source that is there but does not load is an error naming it, never a silent fall-back to
    the next source (which could be another cluster)."""
    missing = tmp_path / "missing.kubeconfig"
    with pytest.raises(HostConfigError, match=f"host kubeconfig from --kubeconfig {missing}"):
        _load(sources, Settings(kubeconfig=str(missing)))
    monkeypatch.delenv("KUBECONFIG")
    (sources["sa"] / "token").write_text("")
    with pytest.raises(HostConfigError, match="from in-cluster service account: Token file exists but empty"):
        _load(sources)


def test_a_kubeconfig_list_is_merged_as_kubectl_does(
    sources: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """$KUBECONFIG=a:b: the current context may be set in one file and defined in another."""
    contexts = sources["env"].with_name("contexts.kubeconfig")
    _token_kubeconfig(contexts, "https://127.0.0.1:1005", "second-token", context="second")
    first = sources["env"].with_name("current.kubeconfig")
    first.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "Config", "current-context": "second"}))
    monkeypatch.setenv("KUBECONFIG", f"{first}:{contexts}")
    assert _load(sources) == ("https://127.0.0.1:1005", "$KUBECONFIG", "second-token")
