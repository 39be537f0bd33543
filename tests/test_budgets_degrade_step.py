"""A degrade refusal and the degraded re-admission in one state step (``MemoryState.admit_or``)
decide exactly what two admissions decide."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from core.budgets import BudgetGuard, Estimate, admit_first, window
from core.control import Budget, RateLimit
from core.errors import PolicyError
from core.state import Admission, MemoryState, RateItem, Reservation
from core.types import PICO, ChatRequest, Message


@dataclass(frozen=True)
class Item:
    key: str
    limit: int | None
    amount: int
    ttl_s: float | None = None
    soft: bool = False


def bucket(limit: int) -> RateItem:
    return RateItem("rl:u:user:ann", "token_bucket", limit, 60.0)


def test_admit_or_admits_the_first_when_it_fits() -> None:
    st = MemoryState("t:")
    first, second = st.admit_or([bucket(5)], [Item("a", 10, 4, soft=True)], [], [], 0.0)
    assert first.ok and second is None
    assert st.get_values(["a"]) == [4]


def test_admit_or_tries_the_second_after_a_soft_refusal_only() -> None:
    st = MemoryState("t:")
    st.add("a", 8)
    rate = [bucket(2)]
    first, second = st.admit_or(rate, [Item("a", 10, 4, soft=True)], rate, [Item("a", 20, 1)], 0.0)
    assert (first.ok, first.reason, first.failed_index, first.budget_values) == (
        False,
        "budget",
        0,
        [8],
    )
    assert second is not None and second.ok and second.budget_values == [8]
    assert st.get_values(["a"]) == [9]  # the second's reservation, not the first's
    assert st.admit(rate, [], 0.0).ok  # the rate was taken once: 1 of 2 left
    assert not st.admit(rate, [], 0.0).ok


def test_admit_or_does_not_try_the_second_after_a_hard_or_rate_refusal() -> None:
    st = MemoryState("t:")
    st.add("a", 8)
    st.add("h", 8)
    soft, hard, cheap = Item("a", 10, 4, soft=True), Item("h", 10, 4), Item("a", 20, 1)
    first, second = st.admit_or([], [soft, hard], [], [cheap], 0.0)
    assert first.reason == "budget" and second is None  # a hard limit blocks
    assert st.admit([bucket(1)], [], 0.0).ok  # the bucket is empty now
    first, second = st.admit_or([bucket(1)], [soft], [], [cheap], 0.0)
    assert first.reason == "rate" and second is None
    assert st.get_values(["a", "h"]) == [8, 8]


def test_admit_or_checks_other_rates_and_keys_of_the_second() -> None:
    st = MemoryState("t:")
    st.add("a", 8)
    other = RateItem("rl:m:model:mini", "token_bucket", 1, 60.0)
    assert st.admit([other], [], 0.0).ok  # the cheaper model's bucket is empty
    first, second = st.admit_or([], [Item("a", 10, 4, soft=True)], [other], [Item("b", 5, 1)], 0.0)
    assert not first.ok and second is not None and second.reason == "rate"
    assert st.get_values(["a", "b"]) == [8, 0]


class TwoSteps:
    """A MemoryState without the one-step form: the guard admits twice."""

    def __init__(self) -> None:
        self.inner = MemoryState("t:")

    def admit(
        self, rates: Sequence[RateItem], budgets: Sequence[Reservation], now: float | None = None
    ) -> Admission:
        return self.inner.admit(rates, budgets, now)

    def __getattr__(self, name: str) -> Any:
        if name == "admit_or":
            raise AttributeError(name)
        return getattr(self.inner, name)


class Counted(MemoryState):
    one_step = 0

    def admit_or(self, *args: Any, **kw: Any) -> tuple[Admission, Admission | None]:
        got = super().admit_or(*args, **kw)
        self.one_step += got[1] is not None
        return got


GPT, MINI, CLAUDE = (
    Estimate("gpt-4o", "openai", PICO, 100),
    Estimate("gpt-4o-mini", "openai", PICO // 10, 100),
    Estimate("claude-haiku-4-5", "anthropic", PICO // 5, 100),
)
SOFT = Budget(
    id="soft",
    name="acme soft",
    scope="org",
    scope_value="acme",
    limit_usd=Decimal(3),
    action="degrade",
    degrade_to="gpt-4o-mini",
    soft_multiplier=2.0,
)
HARD = Budget(id="hard", name="all", limit_usd=Decimal("3.5"), action="block")
RATES = (
    RateLimit(id="per-user", scope="user", limit=100, window_s=60),
    RateLimit(id="per-org", scope="org", limit=6, window_s=60, algorithm="sliding_window"),
)


def run(state: Any) -> list[Any]:
    at = [datetime(2026, 11, 16, 12, tzinfo=UTC)]
    guard = BudgetGuard(state, clock=lambda: at[0])
    budgets = (SOFT, HARD)

    def degrade(model: str, degrade_to: str | None) -> Estimate | None:
        return {"gpt-4o-mini": MINI}.get(degrade_to or "")

    out: list[Any] = []
    for n in range(16):
        if n in (7, 14):
            at[0] += timedelta(seconds=61)  # the org's sliding window empties
        crit = "critical" if n == 12 else "normal"
        r = ChatRequest([Message("user", "hi")], org="acme", user="ann", criticality=crit)
        try:
            c = admit_first(guard, r, [GPT, CLAUDE], budgets, RATES, degrade=degrade)
        except PolicyError as exc:
            out.append((type(exc).__name__, str(exc)))
            continue
        d, asked = c.decision, c.asked
        out.append(
            (
                c.estimate,
                c.index,
                c.skipped,
                c.degraded_from,
                d.degraded,
                d.over_soft,
                [(ln.key, ln.value, ln.amount, ln.cap) for ln in d.lines],
                None if asked is None else (asked.reason, asked.budget, asked.utilisation),
            )
        )
        guard.settle(d, c.estimate.cost_picousd // (1 + n % 2), 50)
    keys = [window(b, at[0]).usd_key for b in budgets]
    out.append(guard.state.get_values(keys + [k + ":c" for k in keys]))
    return out


def test_one_step_decides_what_two_admissions_decide() -> None:
    one = Counted("t:")
    got, want = run(one), run(TwoSteps())
    assert got == want
    assert one.one_step >= 2  # the one-step form was used, not only the two-step path
    kinds = [x[0] if isinstance(x[0], str) else "ok" for x in want[:-1]]
    assert "RateLimitExceeded" in kinds and "BudgetExceeded" in kinds
    assert sum(1 for x in want[:-1] if not isinstance(x[0], str) and x[3]) >= 3  # degraded


def test_an_expected_refusal_that_does_not_come_admits_the_first() -> None:
    """After a degrade the guard expects the next one; the spend was lowered meanwhile
    (as reconciliation may), so the first candidate fits and nothing else is reserved."""
    st = Counted("t:")
    at = datetime(2026, 11, 16, 12, tzinfo=UTC)
    guard = BudgetGuard(st, clock=lambda: at)
    r = ChatRequest([Message("user", "hi")], org="acme")
    asked: list[str | None] = []

    def degrade(model: str, degrade_to: str | None) -> Estimate | None:
        asked.append(degrade_to)
        return MINI

    soft = (SOFT,)
    for _ in range(3):
        guard.settle(admit_first(guard, r, [GPT], soft, (), degrade=degrade).decision, PICO, 0)
    c = admit_first(guard, r, [GPT], soft, (), degrade=degrade)
    assert c.degraded and c.estimate == MINI and asked == ["gpt-4o-mini"]
    guard.release(c.decision)
    key = window(SOFT, at).usd_key
    st.add(key, -2 * PICO)  # $1 left
    c = admit_first(guard, r, [GPT], soft, (), degrade=degrade)
    assert c.estimate == GPT and not c.degraded and c.asked is None
    assert len(asked) == 2  # estimated ahead, not used
    assert st.get_values([key]) == [2 * PICO]  # $1 spent + GPT's $1 reserved
