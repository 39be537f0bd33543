"""The alerts inbox as the console reads it (the control plane's ``alert_page``)."""

from __future__ import annotations

from collections.abc import Sequence

from console import auth
from core.control import Alert, AlertMute


def inbox(
    kinds: Sequence[str], severities: Sequence[str], state: str | None, limit: int = 200
) -> list[Alert]:
    """Newest first, filtered as the page's controls say."""
    return auth.plane().alert_page(kinds=kinds, severities=severities, state=state, limit=limit)


def mutes() -> list[AlertMute]:
    return auth.plane().mutes()
