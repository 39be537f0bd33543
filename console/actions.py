"""The console's write side: every function takes the signed-in Actor and passes it to core,
which checks the role against the users table (PermissionDenied) and audits the change.
Hiding a control in the UI is only a convenience; these calls are the enforcement path.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

from console import auth, data
from core import demo
from core.control import Actor, User
from core.demo import DemoSummary
from core.errors import ConfigError
from core.importer import ImportResult, import_csv

# ---- users and settings (admin) ------------------------------------------------------------


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


# ---- data: import, demo (engineer+) --------------------------------------------------------


def import_usage(
    actor: Actor,
    name: str,
    content: bytes,
    mapping: Mapping[str, str],
    tokens_inclusive: bool,
    answers: Mapping[str, str | None] | None = None,
    *,
    skip_bad_rows: bool = False,
    replace: tuple[str, datetime, datetime] | None = None,
) -> ImportResult:
    """Import a CSV into the usage log (engineer+; core checks the role). ``answers``: the
    decimal mark and date order the user chose; ``skip_bad_rows`` only after the user saw
    them listed and confirmed; ``replace`` is audited by core."""
    file = io.BytesIO(content)
    file.name = name
    given = dict(answers or {})
    return import_csv(
        file,
        dict(mapping),
        home=Path(data.home()),
        tokens_inclusive=tokens_inclusive,
        actor=actor,
        decimal=given.get("decimal"),
        date_order=given.get("date_order"),
        skip_bad_rows=skip_bad_rows,
        replace=replace,
    )


def load_demo(actor: Actor) -> DemoSummary:
    return demo.load_demo(Path(data.home()), actor=actor)


def remove_demo(actor: Actor) -> int:
    return demo.remove_demo(Path(data.home()), actor=actor)
