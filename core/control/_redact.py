"""Webhook URLs hold secrets (a Slack or Discord token in the path, a key in the query): the
audit log stores them redacted. A redacted URL keeps its scheme and host and a digest of the
whole URL, so two URLs (and a change of one) still tell apart, and the digest is the one the
alert worker names the channel by (``webhook:<host>#<digest>``)::

    https://hooks.slack.com/services/T0/B0/secret  ->  https://hooks.slack.com/[redacted]#1a2b3c4d

This module is pure (no schema import): a migration uses it to redact the rows written
before it existed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

WEBHOOK_KEYS = frozenset({"webhook_url", "webhook_urls"})
MARK = "/[redacted]#"


def url_digest(url: str) -> str:
    """8 hex of the URL's SHA-256 (the alert worker's channel names use the same)."""
    return hashlib.sha256(url.encode()).hexdigest()[:8]


def redact_url(url: str) -> str:
    """``scheme://host[:port]/[redacted]#<digest>``; a value already redacted is returned as is."""
    if is_redacted(url):
        return url
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = parts.port
    except ValueError:
        host, port = "?", None
    scheme = parts.scheme if parts.scheme else "?"
    netloc = f"{host}:{port}" if port else host
    return f"{scheme}://{netloc}{MARK}{url_digest(url)}"


def is_redacted(url: str) -> bool:
    head, mark, digest = url.rpartition(MARK)
    return bool(mark) and "://" in head and len(digest) == 8 and "/" not in head.split("://")[1]


def redact_webhooks(value: Any) -> Any:
    """A copy of a JSON-ready value with every webhook URL (under a key ``webhook_url`` or
    ``webhook_urls``, at any depth) redacted."""
    if isinstance(value, Mapping):
        return {
            k: _redact_field(v) if k in WEBHOOK_KEYS else redact_webhooks(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact_webhooks(v) for v in value]
    return value


def _redact_field(value: Any) -> Any:
    if isinstance(value, str):
        return redact_url(value)
    if isinstance(value, list):
        return [redact_url(v) if isinstance(v, str) else v for v in value]
    return value
