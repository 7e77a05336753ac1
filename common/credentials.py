"""Credentials of a member cluster, from a PediaCluster spec (and an optional Secret).

Everything a user can get wrong about a cluster's configuration is found here, before any network
call, and reported as :class:`InvalidConfig` with a message naming the field: the cluster's status
then says ``Ready=False, reason InvalidConfig`` instead of a worker crashing.

A PediaCluster (and the Secret or kubeconfig it names) is written by someone who is not the
operator, so its kubeconfig is parsed here and never handed to the ``kubernetes`` package's
loader, which runs ``exec`` and ``auth-provider`` plugins and reads files named by the kubeconfig
(``tokenFile``, ``client-key``...): a spec could otherwise run a program in the synchro or send
one of its files (its own ServiceAccount token) to a server of its choice. Only inline data is
accepted (:data:`CLUSTER_FIELDS`, :data:`USER_FIELDS`); anything else is refused, naming the field.
The operator's own host kubeconfig still goes through the loader
(common/hostcluster.py, :func:`credentials_from_host`): plugins and files are the operator's to use.
"""

from __future__ import annotations

import base64
import binascii
import re
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from common.destinations import InvalidConfig as InvalidConfig
from common.destinations import validate_url
from common.hostcluster import HostCredentials
from common.http import IPNetwork, load_cert_chain
from common.pediacluster import PediaClusterSpec


@dataclass(frozen=True, slots=True)
class ClusterCredentials:
    url: str
    ca_pem: bytes = b""
    token: str = ""
    cert_pem: bytes = b""
    key_pem: bytes = b""
    insecure_skip_tls_verify: bool = False
    tls_server_name: str = ""
    """The name the member's serving certificate is checked against (and sent as SNI) instead of
    the URL's host (kubeconfig ``tls-server-name``)."""

    def __repr__(self) -> str:  # never print the token or the key
        return f"ClusterCredentials(url={self.url!r})"

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
                load_cert_chain(ctx, self.cert_pem, self.key_pem)
        except ssl.SSLError as exc:
            raise InvalidConfig(f"unusable TLS material: {exc}") from exc
        return ctx

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}


def _b64(spec: dict[str, Any], field: str, where: str = "spec") -> bytes:
    value = spec.get(field) or ""
    if not isinstance(value, str):
        raise InvalidConfig(f"{where}.{field} must be a base64 string")
    try:
        return base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidConfig(f"{where}.{field} is not valid base64: {exc}") from exc


CLUSTER_FIELDS = frozenset(
    {"server", "certificate-authority-data", "insecure-skip-tls-verify", "tls-server-name"}
)
"""What a PediaCluster's kubeconfig may say about the member's server."""
USER_FIELDS = frozenset({"token", "client-certificate-data", "client-key-data"})
"""What it may say about the identity: inline credentials only."""
IGNORED_FIELDS = frozenset({"extensions", "disable-compression"})
"""Read by nobody here, harmless: accepted and ignored."""
_WHY_REFUSED = {
    "exec": "credential plugins are not run for PediaCluster kubeconfigs",
    "auth-provider": "auth-provider plugins are not run for PediaCluster kubeconfigs",
    "tokenFile": "files are not read for PediaCluster kubeconfigs: use token",
    "client-certificate": "files are not read for PediaCluster kubeconfigs: use client-certificate-data",
    "client-key": "files are not read for PediaCluster kubeconfigs: use client-key-data",
    "certificate-authority": (
        "files are not read for PediaCluster kubeconfigs: use certificate-authority-data"
    ),
    "username": "basic authentication is not supported: use token or client certificates",
    "password": "basic authentication is not supported: use token or client certificates",
    "proxy-url": "per-cluster proxies are not accepted: the operator routes the synchro through a "
    "proxy with HTTPS_PROXY/NO_PROXY in its environment",
}


def _checked_token(token: str, where: str) -> str:
    """A bearer token that can go into a header (no CR/LF: no header injection)."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in token):
        raise InvalidConfig(f"{where} contains control characters")
    return token


def _yaml(data: bytes, where: str) -> Any:
    try:
        return yaml.safe_load(data)
    except yaml.MarkedYAMLError as exc:
        # Not str(exc): it quotes the offending line, which may hold a token or a key.
        mark = exc.problem_mark
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise InvalidConfig(f"{where} is not YAML: {exc.problem or exc.context}{at}") from None
    except yaml.YAMLError:
        raise InvalidConfig(f"{where} is not YAML") from None


def _entry(config: dict[str, Any], section: str, inner: str, name: Any, where: str) -> dict[str, Any]:
    """``config[section]`` entry called ``name`` (its ``inner`` mapping)."""
    entries = config.get(section) or []
    if not isinstance(entries, list):
        raise InvalidConfig(f"{where}: {section} must be a list")
    for entry in entries:
        if isinstance(entry, dict) and entry.get("name") == name:
            body = entry.get(inner) or {}
            if not isinstance(body, dict):
                raise InvalidConfig(f"{where}: {section}[{name}].{inner} must be a mapping")
            return body
    raise InvalidConfig(f"{where}: no {section} entry named {str(name)[:100]!r}")


def _check_fields(body: dict[str, Any], allowed: frozenset[str], where: str) -> None:
    for key in body:
        if key in allowed or key in IGNORED_FIELDS:
            continue
        shown = str(key)[:100]
        why = _WHY_REFUSED.get(shown, "not an accepted field (only inline credentials are)")
        raise InvalidConfig(f"{where}.{shown} is refused: {why}")


def _str_field(body: dict[str, Any], key: str, where: str) -> str:
    value = body.get(key) or ""
    if not isinstance(value, str):
        raise InvalidConfig(f"{where}.{key} must be a string")
    return value


def credentials_from_kubeconfig(
    data: bytes,
    where: str = "spec.kubeconfig",
    *,
    url: str = "",
    allow_http: bool = False,
    denied: Sequence[IPNetwork] = (),
) -> ClusterCredentials:
    """Server and credentials of a kubeconfig's current context (the only context when
    ``current-context`` is unset); ``url`` replaces its server (``spec.apiserverURL``)."""
    config = _yaml(data, where)
    if not isinstance(config, dict):
        raise InvalidConfig(f"{where} is not a kubeconfig mapping")
    current = config.get("current-context")
    if not current:
        contexts = config.get("contexts") or []
        if not isinstance(contexts, list) or len(contexts) != 1 or not isinstance(contexts[0], dict):
            raise InvalidConfig(f"{where} has no current-context")
        current = contexts[0].get("name")
    context = _entry(config, "contexts", "context", current, where)
    cluster_where = f"{where} clusters[{str(context.get('cluster'))[:100]}].cluster"
    cluster = _entry(config, "clusters", "cluster", context.get("cluster"), where)
    _check_fields(cluster, CLUSTER_FIELDS, cluster_where)
    user: dict[str, Any] = {}
    user_where = f"{where} users[{str(context.get('user'))[:100]}].user"
    if context.get("user"):
        user = _entry(config, "users", "user", context.get("user"), where)
        _check_fields(user, USER_FIELDS, user_where)
    insecure = cluster.get("insecure-skip-tls-verify", False)
    if not isinstance(insecure, bool):
        raise InvalidConfig(f"{cluster_where}.insecure-skip-tls-verify must be true or false")
    server_name = _str_field(cluster, "tls-server-name", cluster_where)
    if server_name:  # a host name (or IP), as it would stand in a URL
        validate_url(f"https://{server_name}", f"{cluster_where}.tls-server-name")
    token = _checked_token(_str_field(user, "token", user_where).strip(), f"{user_where}.token")
    return ClusterCredentials(
        url=url
        or validate_url(
            _str_field(cluster, "server", cluster_where),
            f"{cluster_where}.server",
            allow_http=allow_http,
            denied=denied,
        ),
        ca_pem=_b64(cluster, "certificate-authority-data", cluster_where),
        token=token,
        cert_pem=_b64(user, "client-certificate-data", user_where),
        key_pem=_b64(user, "client-key-data", user_where),
        insecure_skip_tls_verify=insecure,
        tls_server_name=server_name,
    )


def credentials_from_host(host: HostCredentials) -> ClusterCredentials:
    """The operator's host credentials (common/hostcluster.py: the loader ran its plugins and read
    its files) as the client's credentials."""
    return ClusterCredentials(
        url=validate_url(host.server, f"host kubeconfig ({host.source}) server", allow_http=True),
        ca_pem=host.ca_pem,
        token=host.bearer_token,
        cert_pem=host.cert_pem,
        key_pem=host.key_pem,
        insecure_skip_tls_verify=not host.verify,
        tls_server_name=host.tls_server_name,
    )


CREDENTIALS_LABEL = "clusterpedia.io/credentials"
"""A Secret named by ``spec.secretRef`` must carry this label set to ``"true"``: whoever may create
a PediaCluster must not be able to send any Secret of the synchro's namespace to a URL they
choose, only the Secrets an administrator marked as member credentials."""


_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"(?=.{1,253}\Z)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def secret_ref_path(namespace: str, name: str) -> str:
    """The host path of the Secret ``namespace/name`` named by ``spec.secretRef``.

    Both parts go into a URL path read with the reader's own host credentials, so they must be what
    Kubernetes accepts as a namespace (a DNS label) and a Secret name (a DNS subdomain): anything else
    (``..``, ``/``, ``?``, upper case) is :class:`InvalidConfig`, never a request."""
    if not _DNS_LABEL.fullmatch(namespace):
        raise InvalidConfig(f"spec.secretRef.namespace {namespace[:64]!r} is not a valid namespace name")
    if not _DNS_SUBDOMAIN.fullmatch(name):
        raise InvalidConfig(f"spec.secretRef.name {name[:64]!r} is not a valid Secret name")
    return f"/api/v1/namespaces/{namespace}/secrets/{name}"


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
    spec: PediaClusterSpec,
    secret_data: dict[str, str] | None = None,
    *,
    denied: Sequence[IPNetwork] = (),
) -> ClusterCredentials:
    """Credentials of a PediaCluster. ``secret_data`` is the referenced Secret's ``data`` (base64,
    as the API returns it); fields set in the spec take precedence over the Secret's. ``denied``:
    networks no member URL may point into (``synchro.denied_networks``)."""
    merged: dict[str, Any] = {}
    if secret_data:
        for key, field in SECRET_KEYS.items():
            if key in secret_data:
                merged[field] = secret_data[key]
        if "kubeconfig" in secret_data:
            merged["kubeconfig"] = secret_data["kubeconfig"]
    merged.update(spec.credential_fields())
    insecure = merged.get("insecureSkipTLSVerify") is True
    allow_http = spec.insecureAllowHTTP is True
    url = ""
    if merged.get("apiserverURL") or not merged.get("kubeconfig"):
        raw_url = merged.get("apiserverURL") or ""
        if not isinstance(raw_url, str):
            raise InvalidConfig("spec.apiserverURL must be a string")
        url = validate_url(raw_url, "spec.apiserverURL", allow_http=allow_http, denied=denied)
    try:
        token = _checked_token(_b64(merged, "tokenData").decode("utf-8").strip(), "spec.tokenData")
    except UnicodeDecodeError as exc:
        raise InvalidConfig("spec.tokenData does not decode to a text token") from exc
    kubeconfig = _b64(merged, "kubeconfig")
    if kubeconfig:
        where = "spec.kubeconfig" if spec.kubeconfig else "the Secret's kubeconfig"
        base = credentials_from_kubeconfig(kubeconfig, where, url=url, allow_http=allow_http, denied=denied)
        return ClusterCredentials(
            url=base.url,
            ca_pem=_b64(merged, "caData") or base.ca_pem,
            token=token or base.token,
            cert_pem=_b64(merged, "certData") or base.cert_pem,
            key_pem=_b64(merged, "keyData") or base.key_pem,
            insecure_skip_tls_verify=insecure or base.insecure_skip_tls_verify,
            tls_server_name=base.tls_server_name,
        )
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
