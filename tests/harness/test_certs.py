"""TLS material from harness/certs.py: chains verify, SANs and identities are what we asked."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from harness.certs import CertificateAuthority
from harness.paths import kubectl_binary


def test_serving_cert_is_issued_by_the_ca_for_loopback() -> None:
    ca = CertificateAuthority("test-ca")
    pair = ca.serving_cert("kube-apiserver")
    cert = pair.certificate
    cert.verify_directly_issued_by(ca.certificate)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert sans.get_values_for_type(x509.DNSName) == ["localhost"]
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.SERVER_AUTH]


def test_client_cert_carries_user_and_groups() -> None:
    ca = CertificateAuthority("test-ca")
    other = CertificateAuthority("other-ca")
    cert = ca.client_cert("admin", ["system:masters", "team-a"]).certificate
    cert.verify_directly_issued_by(ca.certificate)
    with pytest.raises((ValueError, TypeError)):
        cert.verify_directly_issued_by(other.certificate)
    assert [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)] == ["admin"]
    orgs = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    assert orgs == ["system:masters", "team-a"]


def test_key_files_are_private(tmp_path: Path) -> None:
    cert_path, key_path = CertificateAuthority("ca").client_cert("u").write(tmp_path, "u")
    assert cert_path.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    assert key_path.stat().st_mode & 0o077 == 0


def test_missing_kubectl_version_is_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match=r"kubectl 0\.99 not found .*kubectl\.1\.32"):
        kubectl_binary("0.99")
