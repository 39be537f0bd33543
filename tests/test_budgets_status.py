"""Threshold alerts after settle (once per budget, window and threshold) and BudgetStatus."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from core.alerts import AlertSink
from core.budgets import BudgetGuard
from core.control import Budget, ControlPlane
from core.state import MemoryState
from core.types import PICO, ChatRequest, Message

REQ = ChatRequest([Message("user", "hi")], org="acme")
ACME = Budget(
    id="acme",
    name="Acme",
    scope="org",
    scope_value="acme",
    period="month",
    limit_usd=Decimal("100"),
    action="block",
    timezone="UTC",
)


class Clock:
    def __init__(self, at: datetime):
        self.at = at

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 11, 16, tzinfo=UTC))


@pytest.fixture
def plane(clock: Clock) -> ControlPlane:
    return ControlPlane(now=clock)


def pay(guard: BudgetGuard, dollars: str, budget: Budget = ACME, tokens: int = 0) -> None:
    cost = int(Decimal(dollars) * PICO)
    d = guard.admit(REQ, "gpt-4o", "openai", cost, tokens, [budget], [])
    assert d.admitted, d.reason
    guard.settle(d, cost, tokens)


def fired(plane: ControlPlane) -> list[tuple[str, str, int]]:
    return sorted((a.budget_id, a.window_key, a.threshold_pct) for a in plane.alerts())


def test_thresholds_fire_once_per_window(plane: ControlPlane, clock: Clock) -> None:
    guard = BudgetGuard(MemoryState("t:"), clock=clock, alerts=AlertSink(plane))
    pay(guard, "40")
    assert fired(plane) == []
    pay(guard, "15")  # 55%
    assert fired(plane) == [("acme", "2026-11", 50)]
    pay(guard, "1")
    pay(guard, "24")  # 80%
    assert fired(plane) == [("acme", "2026-11", 50), ("acme", "2026-11", 75)]
    alert = plane.alerts()[0]
    assert alert.threshold_pct == 75 and alert.kind == "budget"
    assert alert.spent_picousd == 80 * PICO and alert.limit_picousd == 100 * PICO
    assert alert.message == (
        "budget 'Acme' (org=acme) reached 75% in window 2026-11 "
        "(month, UTC): spent $80.00 of $100.00 limit"
    )


def test_a_jump_fires_every_threshold_it_crosses(plane: ControlPlane, clock: Clock) -> None:
    guard = BudgetGuard(MemoryState("t:"), clock=clock, alerts=AlertSink(plane))
    pay(guard, "95")
    assert [t for _, _, t in fired(plane)] == [50, 75, 90]


def test_two_routers_sharing_state_and_database_fire_once(
    plane: ControlPlane, clock: Clock
) -> None:
    state = MemoryState("t:")  # stands in for the shared Redis
    other_plane = ControlPlane(now=clock)  # another process, same database
    a = BudgetGuard(state, clock=clock, alerts=AlertSink(plane))
    b = BudgetGuard(state, clock=clock, alerts=AlertSink(other_plane))
    pay(a, "60")
    pay(b, "1")  # b sees 61%: 50% is already recorded by a
    pay(b, "20")  # 81%: b records 75%
    pay(a, "1")
    assert fired(plane) == [("acme", "2026-11", 50), ("acme", "2026-11", 75)]


def test_next_window_and_reset_fire_again(plane: ControlPlane, clock: Clock) -> None:
    state = MemoryState("t:")
    guard = BudgetGuard(state, clock=clock, alerts=AlertSink(plane))
    pay(guard, "60")
    pay(guard, "1", replace(ACME, reset_generation=1))  # fresh window: 1%
    pay(guard, "59", replace(ACME, reset_generation=1))
    clock.at = datetime(2026, 12, 2, tzinfo=UTC)
    pay(guard, "50")
    assert fired(plane) == [
        ("acme", "2026-11", 50),
        ("acme", "2026-11.r1", 50),
        ("acme", "2026-12", 50),
    ]


def test_token_thresholds(plane: ControlPlane, clock: Clock) -> None:
    b = Budget(
        id="tok", name="Tokens", period="day", limit_tokens=1000, action="alert", thresholds=(90,)
    )
    guard = BudgetGuard(MemoryState("t:"), clock=clock, alerts=AlertSink(plane))
    pay(guard, "1", b, tokens=899)
    assert fired(plane) == []
    pay(guard, "1", b, tokens=1)
    assert fired(plane) == [("tok", "2026-11-16", 90)]
    assert plane.alerts()[0].spent_tokens == 900


def test_released_reservations_never_fire(plane: ControlPlane, clock: Clock) -> None:
    guard = BudgetGuard(MemoryState("t:"), clock=clock, alerts=AlertSink(plane))
    d = guard.admit(REQ, "gpt-4o", "openai", 99 * PICO, 0, [ACME], [])
    guard.release(d)
    pay(guard, "10")
    assert fired(plane) == []


def test_status_reports_spend_reservations_and_projection(
    plane: ControlPlane, clock: Clock
) -> None:
    guard = BudgetGuard(MemoryState("t:"), clock=clock, alerts=AlertSink(plane))
    pay(guard, "30")  # 15 of 30 November days gone: run-rate $60 by month end
    held = guard.admit(REQ, "gpt-4o", "openai", 5 * PICO, 0, [ACME], [])
    tight = replace(ACME, id="tight", limit_usd=Decimal("50"))
    pay(guard, "30", tight)
    s, t = guard.status([ACME, tight])
    assert (s.spent_picousd, s.reserved_picousd, s.limit_picousd) == (
        30 * PICO,
        5 * PICO,
        100 * PICO,
    )
    assert s.limit == 100 * PICO and s.tokens == 0
    assert s.utilisation == pytest.approx(0.30)
    assert s.projected_picousd == 60 * PICO and s.projected_end_of_window == pytest.approx(0.6)
    assert s.exhausts_at is None and s.alerts_fired == ()
    assert s.window.label == "2026-11"
    assert t.alerts_fired == (50,)
    assert t.projected_end_of_window == pytest.approx(1.2)
    assert t.exhausts_at == datetime(2026, 11, 26, tzinfo=UTC)  # $50 at $2/day
    guard.release(held)


def test_status_without_a_control_plane_lists_thresholds_reached(clock: Clock) -> None:
    guard = BudgetGuard(MemoryState("t:"), clock=clock)
    pay(guard, "76")
    (s,) = guard.status([ACME])
    assert s.alerts_fired == (50, 75)
    later = guard.status([ACME], clock.at + timedelta(days=30))[0]
    assert later.window.label == "2026-12" and later.spent_picousd == 0


@pytest.mark.parametrize(
    "pico, text",
    [
        (1_005_000_000_000, "$1.01"),  # an exact half cent: half up, as every table shows it
        (2_675_000_000_000, "$2.68"),
        (1_234_567_005_000_000_000, "$1,234,567.01"),
        (93_104_999_999_999, "$93.10"),
    ],
)
def test_alert_and_block_messages_round_dollars_as_the_console_does(pico: int, text: str) -> None:
    """A threshold or run-out alert (worker), a blocked call's message (guard) and the
    console's tables name the same amount to the cent."""
    from console.selection import Money
    from core.budgets._format import usd
    from core.worker._checks import _usd

    assert Money().fmt(pico) == text
    assert usd(pico) == text
    assert _usd(pico) == text
