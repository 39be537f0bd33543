"""Keys page form values -> a KeySpec, each bad value a ConfigError naming its field."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from console.inputs.text import parse_int, text_value, ungrouped
from core.errors import ConfigError
from core.keys import KeySpec

FIELDS = ("name", "org", "project", "user", "models", "budget_usd", "period", "rpm", "tpm")
FIELDS += ("expires",)
LABELS = {  # as the form labels them
    "name": "Name",
    "org": "Org (bound)",
    "project": "Project (bound)",
    "user": "User (bound)",
    "models": "Models",
    "budget_usd": "Budget USD",
    "period": "Per",
    "rpm": "Requests / min",
    "tpm": "Tokens / min",
    "expires": "Expires after",
}


def _positive(value: int | None, field: str) -> int | None:
    if value is not None and value < 1:
        raise ConfigError(f"{field}: must be at least 1 (got {value})", field=field)
    return value


def parse_key(v: Mapping[str, Any], today: date) -> KeySpec:
    name = text_value(v, "name")
    if not name:
        raise ConfigError("name: give the key a name", field="name")
    money = text_value(v, "budget_usd")
    budget = None
    if money:
        try:
            budget = Decimal(ungrouped(money, "budget_usd"))
        except InvalidOperation:
            raise ConfigError(
                f"budget_usd: not an amount (got {money!r})", field="budget_usd"
            ) from None
        if not budget.is_finite() or budget <= 0:
            raise ConfigError(f"budget_usd: must be positive (got {money!r})", field="budget_usd")
    expires = v.get("expires")
    when = None
    if isinstance(expires, date):
        if expires < today:
            raise ConfigError(f"expires: {expires} is in the past", field="expires")
        when = datetime.combine(expires + timedelta(days=1), time(), tzinfo=UTC)
    return KeySpec(
        name=name,
        org=text_value(v, "org") or None,
        project=text_value(v, "project") or None,
        user=text_value(v, "user") or None,
        models=tuple(v.get("models") or ()),
        budget_usd=budget,
        period=text_value(v, "period") or "month",
        rpm=_positive(parse_int(text_value(v, "rpm"), "rpm"), "rpm"),
        tpm=_positive(parse_int(text_value(v, "tpm"), "tpm"), "tpm"),
        expires_at=when,
    )
