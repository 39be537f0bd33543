"""A reset budget counts from its last reset however often it was edited since: the reset is
read directly from the audit log (it was looked for in the budget's last 50 audit entries
only, so 50 edits after a reset hid it and the window counted spend from before it)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from core import clock, reports
from core.control import SYSTEM, Budget, ControlPlane
from core.types import PICO
from core.usage import Reader, UsageLog
from tests.events_support import spend_event

NOW = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
RESET = datetime(2026, 11, 12, 15, 0, tzinfo=UTC)


def test_a_reset_followed_by_many_edits_still_starts_the_window(costline_home: Path) -> None:
    log = UsageLog(costline_home)
    log.append(spend_event("before", RESET - timedelta(hours=6), 5))
    log.append(spend_event("after", RESET + timedelta(hours=1), 3))
    log.close()
    budget = Budget(
        id="org-a",
        name="Org a",
        scope="org",
        scope_value="a",
        limit_usd=Decimal(60),
        timezone="UTC",
    )
    with ControlPlane(f"sqlite:///{costline_home / 'control.db'}") as plane:
        plane.upsert_budget(budget, SYSTEM)
        with clock.frozen(RESET - timedelta(days=2)):
            plane.reset_budget("org-a", SYSTEM)  # an older reset, not the last one
        with clock.frozen(RESET):
            plane.reset_budget("org-a", SYSTEM)
        with clock.frozen(RESET + timedelta(hours=2)):
            for n in range(60):  # 60 edits after the reset
                plane.upsert_budget(replace(budget, limit_usd=Decimal(60 + n)), SYSTEM)
        stored = plane.budgets()
        other = replace(budget, id="never")  # never reset: no entry
        assert reports.reset_times(plane, [*stored, other]) == {"org-a": RESET}
        with Reader(costline_home) as reader:
            (u,) = reports.utilisation(reader, plane, stored, NOW)
    assert u.spent_picousd == 3 * PICO  # the $5 before the reset is not counted
