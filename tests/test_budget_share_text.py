"""A budget's shown share and its outlook never disagree: the Budgets table showed "80%" next to
"on track" for a budget projected at 79.7 % of its limit (rounded half up for the text, compared
unrounded for the colour). Shares are shown rounded down, and the outlook reads the same number."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from console.frames.budgets import severity_text, status_frame, utilisation_text
from core.control import Budget
from core.reports import Utilisation, percent_text

PICO = 10**12
LIMIT = 100 * PICO  # $100


def used(spent: int, projected: int, limit: Decimal = Decimal(100)) -> Utilisation:
    budget = Budget(
        id="b", name="team", scope="org", scope_value="acme", limit_usd=limit, action="block"
    )
    start, end = datetime(2027, 12, 1, tzinfo=UTC), datetime(2028, 1, 1, tzinfo=UTC)
    return Utilisation(budget, start, end, "2027-12", spent, 0, projected, 0, ())


@pytest.mark.parametrize(
    ("projected", "shown", "outlook"),
    [
        (79_740_000_000_000, "79%", "on track"),  # was "80%" beside "on track"
        (79_999_999_999_999, "79%", "on track"),  # a picodollar under 80 %
        (80 * PICO, "80%", "near the limit"),
        (29 * PICO, "29%", "on track"),  # 0.29 * 100 is 28.999... in floats
        (99_999_999_999_999, "99%", "near the limit"),  # not yet at the limit: not "100%"
        (100 * PICO, "100%", "over the limit"),
        (125_070_000_000_000, "125%", "over the limit"),
        (12_345 * PICO, "12,345%", "over the limit"),
    ],
)
def test_the_shown_projected_share_and_the_outlook_agree(
    projected: int, shown: str, outlook: str
) -> None:
    u = used(10 * PICO, projected)
    row = status_frame([u]).iloc[0]
    assert (row["projected share"], row["outlook"]) == (shown, outlook)
    assert severity_text(u) == outlook


def test_the_used_share_is_rounded_down_too() -> None:
    u = used(99_600_000_000_000, 99_600_000_000_000)  # $99.60 of $100: not used up
    row = status_frame([u]).iloc[0]
    assert (row["used"], row["outlook"]) == ("99%", "near the limit")
    assert utilisation_text(u) == "$99.60 of $100.00 (99%)"


def test_spend_against_a_limit_of_zero_reads_infinite_and_over() -> None:
    assert percent_text(float("inf")) == "∞%"
    assert percent_text(1250) == "1,250%"
    u = used(PICO, PICO, limit=Decimal(0))
    assert severity_text(u) == "over the limit"
