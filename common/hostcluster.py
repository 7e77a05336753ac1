"""Where the operator's host cluster is and who Clusterpedia is there: one loader for every tier.

The host cluster holds the PediaClusters, their Secrets and the synchro's Leases, and answers the
API tier's TokenReviews and SubjectAccessReviews. Its kubeconfig is the operator's own
configuration, so it goes through the ``kubernetes`` package's loader, which knows every form of
it: contexts, inline data and files, token files, exec and auth-provider plugins (DESIGN section
10: only the operator's configuration may use plugins and files; a PediaCluster's kubeconfig is
parsed by ``synchro/credentials.py`` and never comes here).

:func:`load_host_credentials` looks in one order, the first that is there wins (the order of
controller-runtime's ``GetConfig``, which Kubernetes operators share):

1. ``settings.kubeconfig`` (``--kubeconfig``, ``CLUSTERPEDIA_KUBECONFIG``, the config file);
2. ``$KUBECONFIG`` (a ``:``-separated list is merged, as kubectl does);
3. the in-cluster service account (``KUBERNETES_SERVICE_HOST`` and ``_PORT`` set, as in any pod);
4. ``~/.kube/config``.

The loader writes inline credentials to temporary files it caches by content in a module-level
dict, and records a file's name there *before* writing the bytes: two threads loading at once
(``clusterpedia all-in-one`` starts the synchro and the API tier together) could be handed a file
that is still empty (the demo once failed with "certData and keyData must be set together"). Every
load holds :data:`_LOADER_LOCK`, and the files are read into bytes before it is released.
"""

from __future__ import annotations

import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.http import load_cert_chain
from common.settings import Settings, env_value

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
"""Where a pod's service-account token and CA are mounted."""

_LOADER_LOCK = threading.Lock()


class HostConfigError(Exception):
    """No usable host kubeconfig: the message says where it was looked for and what was wrong."""


@dataclass(frozen=True, slots=True)
class HostCredentials:
    """The host's API server and Clusterpedia's identity there, read into memory."""

    server: str
    """``https://host:port`` (no trailing slash)."""
    source: str
    """Where it came from, for logs: ``--kubeconfig <path>``, ``$KUBECONFIG``, ``in-cluster
    service account`` or ``~/.kube/config``."""
    ca_pem: bytes = b""
    authorization: str = ""
    """The ``Authorization`` header value (``Bearer <token>``, as the loader's plugins gave it)."""
    cert_pem: bytes = b""
    key_pem: bytes = b""
    verify: bool = True
    tls_server_name: str = ""

    def __repr__(self) -> str:  # never print the token or the key
        return f"HostCredentials(server={self.server!r}, source={self.source!r})"

    @property
    def bearer_token(self) -> str:
        scheme, _, token = self.authorization.partition(" ")
        return token if scheme.lower() == "bearer" else ""

    def headers(self) -> dict[str, str]:
        return {"Authorization": self.authorization} if self.authorization else {}

    def ssl_context(self) -> ssl.SSLContext | bool:
        """For httpx: False when the kubeconfig says ``insecure-skip-tls-verify``."""
        if not self.verify:
            return False
        if self.ca_pem:
            ctx = ssl.create_default_context(cadata=self.ca_pem.decode("ascii", "replace"))
        else:
            ctx = ssl.create_default_context()
        if self.cert_pem and self.key_pem:
            load_cert_chain(ctx, self.cert_pem, self.key_pem)
        return ctx


def load_host_credentials(
    settings: Settings, *, service_account_dir: Path = SERVICE_ACCOUNT_DIR
) -> HostCredentials:
    """The host's credentials from the first source of the order above; :class:`HostConfigError`
    when none is usable. ``service_account_dir``: where the pod's token and CA are (tests)."""
    from kubernetes import config as kube_config
    from kubernetes.client import Configuration
    from kubernetes.config.incluster_config import InClusterConfigLoader

    cfg = Configuration()
    explicit = settings.kubeconfig or env_value("KUBECONFIG")
    default = Path.home() / ".kube" / "config"
    source = ""
    with _LOADER_LOCK:
        try:
            if explicit:
                source = f"--kubeconfig {explicit}" if settings.kubeconfig else "$KUBECONFIG"
                kube_config.load_kube_config(config_file=explicit, client_configuration=cfg)  # type: ignore[no-untyped-call]
            elif env_value("KUBERNETES_SERVICE_HOST"):
                source = "in-cluster service account"
                InClusterConfigLoader(  # type: ignore[no-untyped-call]
                    token_filename=str(service_account_dir / "token"),
                    cert_filename=str(service_account_dir / "ca.crt"),
                ).load_and_set(cfg)
            elif default.is_file():
                source = "~/.kube/config"
                kube_config.load_kube_config(config_file=str(default), client_configuration=cfg)  # type: ignore[no-untyped-call]
            else:
                raise HostConfigError(
                    "no host kubeconfig: set --kubeconfig (CLUSTERPEDIA_KUBECONFIG) or $KUBECONFIG, "
                    f"run in a pod with a service account, or create {default}"
                )
            return _read(cfg, source)
        except (kube_config.ConfigException, OSError, ValueError) as exc:
            raise HostConfigError(f"host kubeconfig from {source}: {exc}") from exc


def _read(cfg: Any, source: str) -> HostCredentials:
    """The loader's Configuration (file paths, api_key) as bytes, read while the lock is held."""

    def read(path: str | None) -> bytes:
        return Path(path).read_bytes() if path else b""

    # the loader keeps the header under "BearerToken" (recent) or "authorization" (older); the
    # in-cluster loader writes its scheme in lower case ("bearer <token>")
    authorization = (cfg.api_key or {}).get("BearerToken") or (cfg.api_key or {}).get("authorization") or ""
    scheme, _, rest = authorization.partition(" ")
    if scheme.lower() == "bearer":
        authorization = f"Bearer {rest.strip()}"
    if not cfg.host:
        raise HostConfigError(f"host kubeconfig from {source}: no server")
    return HostCredentials(
        server=cfg.host.rstrip("/"),
        source=source,
        ca_pem=read(cfg.ssl_ca_cert),
        authorization=authorization,
        cert_pem=read(cfg.cert_file),
        key_pem=read(cfg.key_file),
        verify=bool(cfg.verify_ssl),
        tls_server_name=getattr(cfg, "tls_server_name", None) or "",
    )
