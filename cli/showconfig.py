"""``clusterpedia config``: the effective settings as YAML, with secrets masked.

Passwords live inside the storage and queue URLs (``postgresql://user:pw@host/db``,
``redis://:pw@host``); anything whose key names a secret is masked too.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import msgspec
import yaml

from cli.flags import setting_fields
from common.settings import Settings

MASK = "***"
SECRET_WORDS = ("password", "secret", "token")


def mask_url(url: str) -> str:
    """Replace the password of a URL with ``***``; anything else is returned as is."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if not parts.password:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    netloc = f"{user}:{MASK}@{host}{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _mask(value: Any, key: str = "") -> Any:
    if isinstance(value, dict):
        return {k: _mask(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v, key) for v in value]
    if isinstance(value, str):
        if value and any(word in key.lower() for word in SECRET_WORDS):
            return MASK
        if "://" in value:
            return mask_url(value)
    return value


def render_settings(settings: Settings, *, show_secrets: bool = False) -> str:
    data = msgspec.to_builtins(settings)
    if not show_secrets:
        data = _mask(data)
    return str(yaml.safe_dump(data, sort_keys=False, default_flow_style=False))


def reference_table() -> str:
    """Markdown table of every setting: key, flag, environment variable, default, meaning."""
    rows = [
        "| Setting (config file key) | Flag | Environment | Default | Meaning |",
        "|---|---|---|---|---|",
    ]
    for f in setting_fields():
        flag = f"`--{f.name.replace('_', '-')}`" if f.scalar is not None else "`--set " + f.key + "=...`"
        default = (
            "`" + yaml.safe_dump(f.default, default_flow_style=True).strip().removesuffix("...").strip() + "`"
        )
        doc = f.doc.replace("|", "\\|")
        rows.append(f"| `{f.key}` | {flag} | `{f.env}` | {default} | {doc} |")
    return "\n".join(rows) + "\n"
