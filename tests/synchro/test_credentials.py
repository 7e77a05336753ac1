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

from synchro.credentials import (
    CREDENTIALS_LABEL,
    InvalidConfig,
    credentials_from_spec,
    secret_data_if_labelled,
)


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
    creds = credentials_from_spec(
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
        ({"apiserverURL": "h:1", "tokenData": b64("t")}, "is not an http(s)://host[:port] URL"),
        ({"apiserverURL": "https://h:1"}, "no credentials"),
        ({"apiserverURL": "https://h:1", "caData": b64("junk"), "tokenData": b64("t")}, "unusable TLS"),
        ({"kubeconfig": b64("- a list")}, "spec.kubeconfig is not a kubeconfig"),
    ],
)
def test_invalid_config(spec: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidConfig, match=None) as info:
        credentials_from_spec(spec).ssl_context()
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
    creds = credentials_from_spec({"kubeconfig": b64(yaml.safe_dump(kubeconfig))})
    assert (creds.url, creds.token, creds.ca_pem) == ("https://127.0.0.1:7000", "kt", cert)
    # Secret keys as kube stores them (base64 in .data); spec fields win.
    secret = {"ca.crt": b64(cert), "token": b64("secret-token")}
    creds = credentials_from_spec({"apiserverURL": "https://h:1", "insecureSkipTLSVerify": True}, secret)
    assert (creds.token, creds.ca_pem, creds.insecure_skip_tls_verify) == ("secret-token", cert, True)
    creds = credentials_from_spec({"apiserverURL": "https://h:1", "tokenData": b64("spec")}, secret)
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


def test_a_given_ca_is_the_only_one_trusted(pem_pair: tuple[bytes, bytes]) -> None:
    """caData means "trust this CA" (client-go uses it alone); the system store is not loaded into
    each member's context (it cost ~0.8 MiB per cluster)."""
    cert, _ = pem_pair
    with_ca = credentials_from_spec(
        {"apiserverURL": "https://m:6443", "caData": b64(cert), "tokenData": b64("t")}
    ).ssl_context()
    subjects = [dict(entry[0] for entry in c["subject"]) for c in with_ca.get_ca_certs()]
    assert subjects == [{"commonName": "test"}]
    assert with_ca.verify_mode == ssl.CERT_REQUIRED and with_ca.check_hostname
    with pytest.raises(InvalidConfig):
        credentials_from_spec(
            {"apiserverURL": "https://m:6443", "caData": b64("not a pem"), "tokenData": b64("t")}
        ).ssl_context()
