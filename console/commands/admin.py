"""Admin writes: users, roles and display settings. Each passes the signed-in Actor to the
control plane, which checks the role (PermissionDenied) and audits the change."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from console import auth
from core.control import Actor, User
from core.errors import ConfigError


def create_user(actor: Actor, username: str, password: str, role: str) -> User:
    return auth.plane().create_user(username.strip(), password, role, actor)


def set_role(actor: Actor, username: str, role: str) -> User:
    return auth.plane().set_role(username, role, actor)


def set_disabled(actor: Actor, username: str, disabled: bool) -> User:
    return auth.plane().disable_user(username, actor, disabled)


def reset_password(actor: Actor, username: str, password: str) -> None:
    auth.plane().set_password(username, password, actor)


def save_settings(actor: Actor, timezone: str, currency: str, rates: Mapping[str, str]) -> None:
    plane = auth.plane()
    if currency not in rates and currency != "USD":
        raise ConfigError(f"currency: no rate for {currency}; add one first", field="currency")
    plane.set_setting("timezone", timezone, actor)
    plane.set_setting("currency_rates", {"USD": "1", **rates}, actor)
    plane.set_setting("currency", currency, actor)


def save_notifications(
    actor: Actor,
    notifications: Mapping[str, Any],
    thresholds: Mapping[str, Any],
    interval_s: int,
    retention_days: int | None,
) -> None:
    """The alert worker's settings (each validated and audited by the control plane)."""
    plane = auth.plane()
    plane.set_setting("notifications", dict(notifications), actor)
    plane.set_setting("alert_thresholds", dict(thresholds), actor)
    plane.set_setting("alert_scan_interval_s", interval_s, actor)
    if retention_days is None:
        plane.delete_setting("retention_days", actor)
    else:
        plane.set_setting("retention_days", retention_days, actor)


def create_token(actor: Actor, username: str, name: str) -> str:
    """A new API token for ``username``; returns the secret (shown once)."""
    secret, _ = auth.plane().create_api_token(username, actor, name=name.strip())
    return secret


def revoke_token(actor: Actor, token_id: str) -> bool:
    return auth.plane().revoke_api_token(token_id, actor)
