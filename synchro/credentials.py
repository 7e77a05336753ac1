"""Credentials of a member cluster, from a PediaCluster spec (and an optional Secret).

Everything a user can get wrong about a cluster's configuration is found here, before any network
call, and reported as :class:`InvalidConfig` with a message naming the field: the cluster's status
then says ``Ready=False, reason InvalidConfig`` instead of a worker crashing. Kubeconfigs are read
with the ``kubernetes`` package's loader (contexts, embedded or file certificates, tokens).
"""

from __future__ import annotations

import base64
import binascii
import os
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from common.kubeconfig import LOADER_LOCK


class InvalidConfig(Exception):
    """The PediaCluster's credentials or URL cannot be used (the message says which field)."""


@dataclass(frozen=True, slots=True)
class ClusterCredentials:
    url: str
    ca_pem: bytes = b""
    token: str = ""
    cert_pem: bytes = b""
    key_pem: bytes = b""
    insecure_skip_tls_verify: bool = False

    def ssl_context(self) -> ssl.SSLContext:
        """TLS settings for httpx; raises InvalidConfig for unusable PEM material.

        With a CA given, that CA alone is trusted (as client-go does with certificate-authority
        data) and the system trust store is not loaded: it costs ~0.8 MiB per context, i.e. per
        member cluster, for certificates a member's own CA makes irrelevant."""
        try:
            if self.insecure_skip_tls_verify:
                ctx = ssl.create_default_context()
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            elif self.ca_pem:
                ctx = ssl.create_default_context(cadata=self.ca_pem.decode("ascii", "replace"))
            else:
                ctx = ssl.create_default_context()
            if self.cert_pem or self.key_pem:
                if not (self.cert_pem and self.key_pem):
                    raise InvalidConfig("certData and keyData must be set together")
                _load_cert_chain(ctx, self.cert_pem, self.key_pem)
        except ssl.SSLError as exc:
            raise InvalidConfig(f"unusable TLS material: {exc}") from exc
        return ctx

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}


def _load_cert_chain(ctx: ssl.SSLContext, cert_pem: bytes, key_pem: bytes) -> None:
    # ssl only loads client certificates from files: write them to a private directory briefly.
    with tempfile.TemporaryDirectory(prefix="clusterpedia-tls-") as tmp:
        cert_file, key_file = Path(tmp, "tls.crt"), Path(tmp, "tls.key")
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key_pem)
        cert_file.write_bytes(cert_pem)
        ctx.load_cert_chain(str(cert_file), str(key_file))


def _b64(spec: dict[str, Any], field: str) -> bytes:
    value = spec.get(field) or ""
    if not isinstance(value, str):
        raise InvalidConfig(f"spec.{field} must be a base64 string")
    try:
        return base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidConfig(f"spec.{field} is not valid base64: {exc}") from exc


def _check_url(url: str, where: str) -> str:
    if not url:
        raise InvalidConfig(f"{where} is empty: set the member's kube-apiserver URL")
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise InvalidConfig(f"{where} {url!r} is not an http(s)://host[:port] URL")
    return url.rstrip("/")


def credentials_from_kubeconfig(data: bytes, where: str = "spec.kubeconfig") -> ClusterCredentials:
    """Server and credentials of a kubeconfig's current context (via the kubernetes loader)."""
    from kubernetes.client import Configuration
    from kubernetes.config.config_exception import ConfigException
    from kubernetes.config.kube_config import KubeConfigLoader

    try:
        config = yaml.safe_load(data)
    except yaml.YAMLError as exc:
        raise InvalidConfig(f"{where} is not YAML: {exc}") from exc
    if not isinstance(config, dict):
        raise InvalidConfig(f"{where} is not a kubeconfig mapping")
    cfg = Configuration()
    try:
        with LOADER_LOCK:
            KubeConfigLoader(config_dict=config).load_and_set(cfg)  # type: ignore[no-untyped-call]
    except (ConfigException, KeyError, TypeError, ValueError) as exc:
        raise InvalidConfig(f"{where}: {exc}") from exc
    return credentials_from_configuration(cfg, where)


def credentials_from_configuration(cfg: Any, where: str) -> ClusterCredentials:
    """Convert a ``kubernetes.client.Configuration`` (file paths, api_key) into bytes."""
    keys = cfg.api_key or {}
    # the loader stores the token under "BearerToken" (recent) or "authorization" (older)
    auth = keys.get("BearerToken") or keys.get("authorization") or ""
    token = auth[len("Bearer ") :] if auth.startswith("Bearer ") else ""

    def read(path: str | None) -> bytes:
        return Path(path).read_bytes() if path else b""

    return ClusterCredentials(
        url=_check_url(cfg.host or "", f"{where} server"),
        ca_pem=read(cfg.ssl_ca_cert),
        token=token,
        cert_pem=read(cfg.cert_file),
        key_pem=read(cfg.key_file),
        insecure_skip_tls_verify=not cfg.verify_ssl,
    )


CREDENTIALS_LABEL = "clusterpedia.io/credentials"
"""A Secret named by ``spec.secretRef`` must carry this label set to ``"true"``: whoever may create
a PediaCluster must not be able to send any Secret of the synchro's namespace to a URL they
choose, only the Secrets an administrator marked as member credentials."""


def secret_data_if_labelled(secret: dict[str, Any], where: str) -> dict[str, str]:
    """The Secret's ``data``, or :class:`InvalidConfig` when it lacks the credentials label."""
    labels = (secret.get("metadata") or {}).get("labels") or {}
    if labels.get(CREDENTIALS_LABEL) != "true":
        raise InvalidConfig(
            f'spec.secretRef {where}: the Secret is not labelled {CREDENTIALS_LABEL}="true" '
            "(only Secrets marked as member credentials may be referenced)"
        )
    return dict(secret.get("data") or {})


SECRET_KEYS = {"ca.crt": "caData", "token": "tokenData", "tls.crt": "certData", "tls.key": "keyData"}


def credentials_from_spec(
    spec: dict[str, Any], secret_data: dict[str, str] | None = None
) -> ClusterCredentials:
    """Credentials of a PediaCluster. ``secret_data`` is the referenced Secret's ``data`` (base64,
    as the API returns it); fields set in the spec take precedence over the Secret's."""
    merged: dict[str, Any] = {}
    if secret_data:
        for key, field in SECRET_KEYS.items():
            if key in secret_data:
                merged[field] = secret_data[key]
        if "kubeconfig" in secret_data:
            merged["kubeconfig"] = secret_data["kubeconfig"]
    merged.update({k: v for k, v in spec.items() if v not in (None, "")})
    insecure = merged.get("insecureSkipTLSVerify") is True
    kubeconfig = _b64(merged, "kubeconfig")
    if kubeconfig:
        base = credentials_from_kubeconfig(kubeconfig)
        url = (
            _check_url(merged["apiserverURL"], "spec.apiserverURL")
            if merged.get("apiserverURL")
            else base.url
        )
        return ClusterCredentials(
            url=url,
            ca_pem=_b64(merged, "caData") or base.ca_pem,
            token=_b64(merged, "tokenData").decode("utf-8", "replace").strip() or base.token,
            cert_pem=_b64(merged, "certData") or base.cert_pem,
            key_pem=_b64(merged, "keyData") or base.key_pem,
            insecure_skip_tls_verify=insecure or base.insecure_skip_tls_verify,
        )
    url = _check_url(str(merged.get("apiserverURL") or ""), "spec.apiserverURL")
    try:
        token = _b64(merged, "tokenData").decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise InvalidConfig("spec.tokenData does not decode to a text token") from exc
    creds = ClusterCredentials(
        url=url,
        ca_pem=_b64(merged, "caData"),
        token=token,
        cert_pem=_b64(merged, "certData"),
        key_pem=_b64(merged, "keyData"),
        insecure_skip_tls_verify=insecure,
    )
    if not (creds.token or creds.cert_pem):
        raise InvalidConfig("no credentials: set tokenData, certData/keyData, kubeconfig or secretRef")
    return creds
