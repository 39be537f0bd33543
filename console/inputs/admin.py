"""Admin settings values: display rates typed as 'EUR=0.92, GBP=0.79'."""

from __future__ import annotations

from core.errors import ConfigError
from core.settings import comma_list


def parse_rates(text: str) -> dict[str, str]:
    """'EUR=0.92, GBP=0.79' -> {'EUR': '0.92', 'GBP': '0.79'} (core validates the values)."""
    rates: dict[str, str] = {}
    for part in text.replace("\n", ",").split(","):
        if not part.strip():
            continue
        code, sep, rate = part.partition("=")
        if not sep:
            raise ConfigError(
                f"currency_rates: write CODE=rate, not {part.strip()!r}", field="currency_rates"
            )
        rates[code.strip().upper()] = rate.strip()
    return rates


def parse_list(text: str) -> list[str]:
    """One value per line or comma-separated; blanks dropped (core validates each)."""
    return list(comma_list(text.replace("\n", ",")))


def parse_retention(text: str) -> int | None:
    """'' -> None (keep raw events forever), else a whole number of days."""
    text = text.strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise ConfigError(
            f"retention_days: a whole number of days, or empty for forever (got {text!r})",
            field="retention_days",
        ) from None


def notifications(
    webhooks: str,
    emails: str,
    host: str,
    port: int | None,
    sender: str,
    username: str,
    tls: bool,
    ssl: bool = False,
) -> dict[str, object]:
    """The ``notifications`` setting from the form's fields (``port`` None: the one for the
    chosen security, filled in when the setting is checked)."""
    out: dict[str, object] = {"webhook_urls": parse_list(webhooks), "email_to": parse_list(emails)}
    if host.strip():
        smtp: dict[str, object] = {"host": host.strip()}
        if port is not None:
            smtp["port"] = int(port)
        out["smtp"] = {
            **smtp,
            "sender": sender.strip() or "costline@localhost",
            "username": username.strip(),
            "starttls": tls,
            "ssl": ssl,
        }
    return out
