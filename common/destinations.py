"""Where the synchro may connect with a member's credentials: URL validation and denied networks.

A PediaCluster is written by someone who is not the operator (DESIGN section 10), and its URL
decides where the synchro sends the member's token. So before any connection the URL must be an
``https://host[:port][/path]`` URL with a valid host and port, no user information (which would
replace the token with Basic credentials, and end up in status messages) and no control
characters (header injection); plain ``http://`` only with the PediaCluster's explicit
``spec.insecureAllowHTTP``. Addresses in the operator's denied networks (by default link-local
169.254.0.0/16 and fe80::/10, where cloud metadata services answer, and AWS's IPv6 metadata
address) are refused twice: here when the host is an IP literal, and by the connection itself
after DNS resolution (:class:`common.http.CancelSafeBackend`), so a name that resolves to a
denied address (or is rebound to one later) is refused too.

Every refusal is :class:`InvalidConfig` naming the field; messages never repeat user information.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from urllib.parse import urlsplit

from common.http import IPNetwork, denied_rule

DEFAULT_DENIED_NETWORKS = ("169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128")


class InvalidConfig(Exception):
    """The PediaCluster's credentials or URL cannot be used (the message says which field)."""


def parse_networks(values: Sequence[str], where: str = "synchro.denied_networks") -> tuple[IPNetwork, ...]:
    """CIDRs (or single addresses) as networks; ValueError naming the bad entry."""
    out: list[IPNetwork] = []
    for value in values:
        try:
            out.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError as exc:
            raise ValueError(f"{where}: {value!r} is not a network: {exc}") from None
    return tuple(out)


def _shown(url: str) -> str:
    """The URL as a message repeats it (only after user information and control characters were
    refused, so nothing secret or unprintable), shortened."""
    return repr(url if len(url) <= 200 else url[:200] + "...")


def validate_url(url: str, where: str, *, allow_http: bool = False, denied: Sequence[IPNetwork] = ()) -> str:
    """The member URL without a trailing slash, or InvalidConfig saying what is wrong with it."""
    if not url:
        raise InvalidConfig(f"{where} is empty: set the member's kube-apiserver URL")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        raise InvalidConfig(f"{where} contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        # "Invalid IPv6 URL", "Port could not be cast to integer value", "Port out of range 0-65535"
        raise InvalidConfig(f"{where} is not a valid URL ({exc})") from None
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise InvalidConfig(
            f"{where} must not contain user information (user:password@): put credentials in "
            "tokenData, certData/keyData or a Secret"
        )
    if parts.scheme == "http":
        if not allow_http:
            raise InvalidConfig(
                f"{where} uses plain http://, which would send the credentials unencrypted: use "
                "https://, or set spec.insecureAllowHTTP: true if this member really serves plain HTTP"
            )
    elif parts.scheme != "https":
        raise InvalidConfig(f"{where} {_shown(url)} is not an https://host[:port] URL")
    host = parts.hostname or ""
    if not host:
        raise InvalidConfig(f"{where} {_shown(url)} has no host")
    if port == 0:
        raise InvalidConfig(f"{where} {_shown(url)}: port 0 is not a port")
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        raise InvalidConfig(f"{where} {_shown(url)} must not have a query or a fragment")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        if not _is_dns_name(host):
            raise InvalidConfig(f"{where} {_shown(url)}: {host[:100]!r} is not a valid host name") from None
    else:
        rule = denied_rule(ip, denied)
        if rule is not None:
            raise InvalidConfig(
                f"{where}: {ip} is in the denied network {rule} (synchro.denied_networks): "
                "the synchro does not send member credentials there"
            )
    return url.rstrip("/")


def _is_dns_name(host: str) -> bool:
    if len(host) > 253:
        return False
    try:
        labels = host.rstrip(".").encode("idna").decode("ascii").split(".")
    except UnicodeError:
        return False
    return all(
        0 < len(label) <= 63
        and label[0] != "-"
        and label[-1] != "-"
        and all(c.isalnum() or c in "-_" for c in label)
        for label in labels
    )
