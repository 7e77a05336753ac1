import base64
import datetime
import ssl
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from common.credentials import (
    CREDENTIALS_LABEL,
    ClusterCredentials,
    InvalidConfig,
    credentials_from_spec,
    secret_data_if_labelled,
    secret_ref_path,
)
from common.destinations import parse_networks
from common.pediacluster import spec_of
from common.settings import SynchroSettings


def from_spec(spec: dict[str, Any], *args: Any, **kwargs: Any) -> ClusterCredentials:
    """Credentials of a PediaCluster whose spec is ``spec``, decoded as the manager does."""
    return credentials_from_spec(spec_of({"spec": spec}), *args, **kwargs)


def b64(data: bytes | str) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


@pytest.fixture(scope="module")
def pem_pair() -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def test_seed_fields(pem_pair: tuple[bytes, bytes]) -> None:
    cert, key = pem_pair
    creds = from_spec(
        {
            "apiserverURL": "https://127.0.0.1:6443/",
            "caData": b64(cert),
            "tokenData": b64("tok\n"),
            "certData": b64(cert),
            "keyData": b64(key),
        }
    )
    assert creds.url == "https://127.0.0.1:6443"
    assert creds.token == "tok"
    assert creds.headers() == {"Authorization": "Bearer tok"}
    assert not creds.insecure_skip_tls_verify
    creds.ssl_context()  # loads CA and client pair


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"apiserverURL": "https://h:1", "tokenData": "not base64!!"}, "spec.tokenData is not valid base64"),
        ({"apiserverURL": "", "tokenData": b64("t")}, "spec.apiserverURL is empty"),
        ({"apiserverURL": "h:1", "tokenData": b64("t")}, "is not an https://host[:port] URL"),
        ({"apiserverURL": "https://h:1"}, "no credentials"),
        ({"apiserverURL": "https://h:1", "caData": b64("junk"), "tokenData": b64("t")}, "unusable TLS"),
        ({"kubeconfig": b64("- a list")}, "spec.kubeconfig is not a kubeconfig"),
    ],
)
def test_invalid_config(spec: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidConfig, match=None) as info:
        from_spec(spec).ssl_context()
    assert message in str(info.value)


def test_kubeconfig_and_secret(pem_pair: tuple[bytes, bytes]) -> None:
    cert, _key = pem_pair
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "m",
                "cluster": {"server": "https://127.0.0.1:7000", "certificate-authority-data": b64(cert)},
            }
        ],
        "users": [{"name": "u", "user": {"token": "kt"}}],
        "contexts": [{"name": "ctx", "context": {"cluster": "m", "user": "u"}}],
        "current-context": "ctx",
    }
    creds = from_spec({"kubeconfig": b64(yaml.safe_dump(kubeconfig))})
    assert (creds.url, creds.token, creds.ca_pem) == ("https://127.0.0.1:7000", "kt", cert)
    # Secret keys as kube stores them (base64 in .data); spec fields win.
    secret = {"ca.crt": b64(cert), "token": b64("secret-token")}
    creds = from_spec({"apiserverURL": "https://h:1", "insecureSkipTLSVerify": True}, secret)
    assert (creds.token, creds.ca_pem, creds.insecure_skip_tls_verify) == ("secret-token", cert, True)
    creds = from_spec({"apiserverURL": "https://h:1", "tokenData": b64("spec")}, secret)
    assert creds.token == "spec"


def test_secret_ref_needs_the_credentials_label() -> None:
    secret: dict[str, Any] = {"metadata": {"name": "s"}, "data": {"token": "dA=="}}
    with pytest.raises(InvalidConfig, match=r'clusterpedia\.io/credentials="true"'):
        secret_data_if_labelled(secret, "ns/s")
    secret["metadata"]["labels"] = {CREDENTIALS_LABEL: "yes"}
    with pytest.raises(InvalidConfig, match="ns/s"):
        secret_data_if_labelled(secret, "ns/s")
    secret["metadata"]["labels"] = {CREDENTIALS_LABEL: "true"}
    assert secret_data_if_labelled(secret, "ns/s") == {"token": "dA=="}


def test_secret_ref_path_takes_only_kubernetes_names() -> None:
    assert secret_ref_path("clusterpedia-system", "member-1.creds") == (
        "/api/v1/namespaces/clusterpedia-system/secrets/member-1.creds"
    )
    for name in ("../x", "a/b", "a?labelSelector=x", "A", "a..b", "a b", "a\n", "", "x" * 254, "-a", "a."):
        with pytest.raises(InvalidConfig, match="not a valid Secret name"):
            secret_ref_path("ns", name)
    for namespace in ("kube-system/secrets/x", "..", "a.b", "", "N", "x" * 64, "a%2Fb"):
        with pytest.raises(InvalidConfig, match="not a valid namespace name"):
            secret_ref_path(namespace, "creds")


def test_a_given_ca_is_the_only_one_trusted(pem_pair: tuple[bytes, bytes]) -> None:
    """caData means "trust this CA" (client-go uses it alone); the system store is not loaded into
    each member's context (it cost ~0.8 MiB per cluster)."""
    cert, _ = pem_pair
    with_ca = from_spec(
        {"apiserverURL": "https://m:6443", "caData": b64(cert), "tokenData": b64("t")}
    ).ssl_context()
    subjects = [dict(entry[0] for entry in c["subject"]) for c in with_ca.get_ca_certs()]
    assert subjects == [{"commonName": "test"}]
    assert with_ca.verify_mode == ssl.CERT_REQUIRED and with_ca.check_hostname
    with pytest.raises(InvalidConfig):
        from_spec(
            {"apiserverURL": "https://m:6443", "caData": b64("not a pem"), "tokenData": b64("t")}
        ).ssl_context()


def kubeconfig(cluster: dict[str, Any], user: dict[str, Any], *, current: bool = True) -> str:
    config: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "m", "cluster": cluster}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "ctx", "context": {"cluster": "m", "user": "u"}}],
    }
    if current:
        config["current-context"] = "ctx"
    return b64(yaml.safe_dump(config))


SERVER = {"server": "https://127.0.0.1:7000"}


@pytest.mark.parametrize(
    ("cluster", "user", "field"),
    [
        (
            SERVER,
            {"exec": {"apiVersion": "client.authentication.k8s.io/v1beta1", "command": "/bin/sh"}},
            "exec",
        ),
        (SERVER, {"auth-provider": {"name": "oidc", "config": {}}}, "auth-provider"),
        (SERVER, {"tokenFile": "/var/run/secrets/kubernetes.io/serviceaccount/token"}, "tokenFile"),
        (SERVER, {"client-certificate": "/etc/passwd", "client-key": "/etc/shadow"}, "client-certificate"),
        (SERVER, {"username": "admin", "password": "pw"}, "password"),
        (SERVER, {"token": "t", "as": "system:admin"}, "as"),
        (
            {**SERVER, "certificate-authority": "/etc/ssl/private/key.pem"},
            {"token": "t"},
            "certificate-authority",
        ),
        ({**SERVER, "proxy-url": "http://127.0.0.1:3128"}, {"token": "t"}, "proxy-url"),
    ],
)
def test_kubeconfig_refuses_plugins_files_and_passwords(
    cluster: dict[str, Any], user: dict[str, Any], field: str
) -> None:
    """Only inline data: the field is named, nothing is run or read (the loader is never called)."""
    with pytest.raises(InvalidConfig) as info:
        from_spec({"kubeconfig": kubeconfig(cluster, user)})
    assert f".{field} is refused" in str(info.value)
    # the same kubeconfig in a Secret
    with pytest.raises(InvalidConfig) as info:
        from_spec({}, {"kubeconfig": kubeconfig(cluster, user)})
    assert f".{field} is refused" in str(info.value) and "the Secret's kubeconfig" in str(info.value)


def test_kubeconfig_inline_fields(pem_pair: tuple[bytes, bytes]) -> None:
    cert, key = pem_pair
    creds = from_spec(
        {
            "kubeconfig": kubeconfig(
                {
                    "server": "https://10.0.0.1:6443/",
                    "certificate-authority-data": b64(cert),
                    "tls-server-name": "kubernetes.default.svc",
                    "extensions": [{"name": "x", "extension": {}}],
                },
                {"client-certificate-data": b64(cert), "client-key-data": b64(key)},
                current=False,  # the only context is used
            )
        }
    )
    assert (creds.url, creds.tls_server_name, creds.cert_pem, creds.key_pem) == (
        "https://10.0.0.1:6443",
        "kubernetes.default.svc",
        cert,
        key,
    )
    creds.ssl_context()
    # spec.apiserverURL replaces the kubeconfig's server, and is validated as such
    creds = from_spec(
        {"apiserverURL": "https://m:1", "kubeconfig": kubeconfig({"server": "http://x"}, {"token": "t"})}
    )
    assert (creds.url, creds.token) == ("https://m:1", "t")


def test_kubeconfig_yaml_errors_do_not_quote_the_document() -> None:
    secret = "sekrit-token-value"
    bad = f"users:\n- name: u\n  user: {{token: {secret}\n  : :\n"
    with pytest.raises(InvalidConfig) as info:
        from_spec({"kubeconfig": b64(bad)})
    assert "is not YAML" in str(info.value) and secret not in str(info.value)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://[::1", "is not a valid URL"),
        ("https://127.0.0.1:notaport", "is not a valid URL"),
        ("https://127.0.0.1:99999", "is not a valid URL"),
        ("https://127.0.0.1:0", "port 0"),
        ("https://127.0.0.1:6443/\x00", "control characters"),
        ("https://127.0.0.1:6443/\r\nX-Injected: 1", "control characters"),
        ("https://h:1 x", "control characters"),
        ("http://127.0.0.1:6443", "plain http://"),
        ("https://user:s3cr3t@127.0.0.1:6443", "must not contain user information"),
        ("https://t0k3n@127.0.0.1:6443", "must not contain user information"),
        ("ftp://127.0.0.1", "is not an https://host[:port] URL"),
        ("https://", "has no host"),
        ("https://h:1/?a=b", "query"),
        ("https://bad_host!.example:1", "not a valid host name"),
        ("https://169.254.169.254/latest/meta-data", "denied network 169.254.0.0/16"),
        ("https://[fe80::1]:443", "denied network fe80::/10"),
        ("https://[::ffff:169.254.169.254]:443", "denied network 169.254.0.0/16"),
    ],
)
def test_apiserver_url_validation(url: str, message: str) -> None:
    denied = parse_networks(SynchroSettings().denied_networks)
    with pytest.raises(InvalidConfig) as info:
        from_spec({"apiserverURL": url, "tokenData": b64("t")}, denied=denied)
    text = str(info.value)
    assert message in text and text.startswith("spec.apiserverURL")
    assert "s3cr3t" not in text and "t0k3n" not in text  # user information is never repeated
    # the same URL as a kubeconfig's server
    with pytest.raises(InvalidConfig) as info:
        from_spec({"kubeconfig": kubeconfig({"server": url}, {"token": "t"})}, denied=denied)
    assert message in str(info.value) and ".server" in str(info.value)


def test_plain_http_needs_the_per_cluster_opt_in() -> None:
    creds = from_spec(
        {"apiserverURL": "http://127.0.0.1:8080", "insecureAllowHTTP": True, "tokenData": b64("t")}
    )
    assert creds.url == "http://127.0.0.1:8080"


def test_token_with_a_line_break_is_refused() -> None:
    with pytest.raises(InvalidConfig, match="control characters"):
        from_spec({"apiserverURL": "https://h:1", "tokenData": b64("t\r\nX-Evil: 1")})


def test_repr_hides_credentials() -> None:
    creds = from_spec({"apiserverURL": "https://h:1", "tokenData": b64("very-secret")})
    assert "very-secret" not in repr(creds)


def test_denied_networks_setting_is_validated() -> None:
    assert [str(n) for n in parse_networks(["10.0.0.0/8", "127.0.0.5"])] == ["10.0.0.0/8", "127.0.0.5/32"]
    with pytest.raises(ValueError, match="'nonsense' is not a network"):
        parse_networks(["nonsense"])
