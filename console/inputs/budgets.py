"""Budget editor values <-> Budget, and the what-if replay's proposal table -> Budgets."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

import pandas as pd

from console.inputs.text import parse_int, text_value, ungrouped
from core.control import DEFAULT_THRESHOLDS, Budget, validate_budget
from core.errors import ConfigError
from core.pricing import Catalog

FIELDS = (
    "id",
    "name",
    "scope",
    "scope_value",
    "period",
    "limit_usd",
    "limit_tokens",
    "soft_multiplier",
    "thresholds",
    "action",
    "degrade_to",
    "timezone",
    "webhook_url",
    "enabled",
)


LABELS = {  # as the editor labels them
    "id": "Id",
    "name": "Name",
    "scope": "Scope",
    "scope_value": "Scope value",
    "period": "Period",
    "limit_usd": "USD limit",
    "limit_tokens": "Token limit",
    "soft_multiplier": "Soft multiplier",
    "thresholds": "Alert thresholds (%)",
    "action": "Action at the limit",
    "degrade_to": "Degrade to (model)",
    "timezone": "Time zone (IANA)",
    "webhook_url": "Webhook URL",
    "enabled": "Enabled",
}
FILLER = {  # valid stand-ins: to find every bad field of a failed save at once
    "id": "valid-id",
    "name": "valid name",
    "scope": "org",
    "scope_value": "valid-value",
    "period": "month",
    "limit_usd": "1",
    "limit_tokens": "",
    "soft_multiplier": 2.0,
    "thresholds": "50, 75, 90, 100",
    "action": "alert",
    "degrade_to": "",
    "timezone": "",
    "webhook_url": "",
}


def form_values(b: Budget | None) -> dict[str, Any]:
    """A budget as the editor's widget values (text for numbers, so nothing is rounded)."""
    if b is None:
        return {
            "id": "",
            "name": "",
            "scope": "global",
            "scope_value": "",
            "period": "month",
            "limit_usd": "",
            "limit_tokens": "",
            "soft_multiplier": 2.0,
            "thresholds": ", ".join(map(str, DEFAULT_THRESHOLDS)),
            "action": "alert",
            "degrade_to": "",
            "timezone": "",
            "webhook_url": "",
            "enabled": True,
        }
    return {
        "id": b.id,
        "name": b.name,
        "scope": b.scope,
        "scope_value": b.scope_value or "",
        "period": b.period,
        "limit_usd": "" if b.limit_usd is None else str(b.limit_usd),
        "limit_tokens": "" if b.limit_tokens is None else str(b.limit_tokens),
        "soft_multiplier": float(b.soft_multiplier),
        "thresholds": ", ".join(str(t) for t in b.thresholds),
        "action": b.action,
        "degrade_to": b.degrade_to or "",
        "timezone": b.timezone or "",
        "webhook_url": b.webhook_url or "",
        "enabled": bool(b.enabled),
    }


def parse_usd(text: str, field: str) -> Decimal | None:
    """A USD amount as typed: '1,234.50', '$5', '0.25' ('1,50' is an error: ``ungrouped``)."""
    if not text.strip():
        return None
    try:
        return Decimal(ungrouped(text, field))
    except InvalidOperation:
        raise ConfigError(f"{field}: must be a number of USD (got {text!r})", field=field) from None


def parse_thresholds(text: str) -> tuple[int, ...]:
    parts = [p.strip().rstrip("%") for p in text.replace(";", ",").split(",") if p.strip()]
    try:
        return tuple(int(p) for p in parts)
    except ValueError:
        raise ConfigError(
            f"thresholds: write whole percentages such as 50, 75, 90, 100 (got {text!r})",
            field="thresholds",
        ) from None


def parse_budget(values: Mapping[Any, Any]) -> Budget:
    """Widget (or table) values -> Budget; a value that is not even a number raises
    ConfigError naming its field. Everything else is core's validation, at save time."""
    multiplier = values.get("soft_multiplier")
    try:
        soft = float(multiplier) if multiplier not in (None, "") else 2.0
    except (TypeError, ValueError):
        raise ConfigError("soft_multiplier: must be a number", field="soft_multiplier") from None
    return Budget(
        id=text_value(values, "id"),
        name=text_value(values, "name"),
        scope=text_value(values, "scope") or "global",
        scope_value=text_value(values, "scope_value") or None,
        period=text_value(values, "period"),
        limit_usd=parse_usd(text_value(values, "limit_usd"), "limit_usd"),
        limit_tokens=parse_int(text_value(values, "limit_tokens"), "limit_tokens"),
        soft_multiplier=soft,
        thresholds=parse_thresholds(text_value(values, "thresholds")),
        action=text_value(values, "action"),
        degrade_to=text_value(values, "degrade_to") or None,
        timezone=text_value(values, "timezone") or None,
        webhook_url=text_value(values, "webhook_url") or None,
        enabled=bool(values.get("enabled", True)),
    )


def budgets_from_frame(frame: pd.DataFrame, cat: Catalog) -> list[Budget]:
    """The edited proposal table -> Budgets, each checked by core's validation against the
    catalog in force; an error names the row and the field."""
    out = []
    for i, values in enumerate(frame.to_dict("records"), start=1):
        if not any(text_value(values, c) for c in ("id", "name", "limit_usd", "limit_tokens")):
            continue  # an empty row the editor added
        try:
            out.append(validate_budget(parse_budget(values), model_exists=cat.has))
        except ConfigError as exc:
            raise ConfigError(
                f"row {i} ({text_value(values, 'id') or 'no id'}): {exc}", field=exc.field
            ) from None
    return out
