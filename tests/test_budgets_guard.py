"""BudgetGuard.admit/settle on MemoryState: scopes, soft/hard/critical caps, $0 models, tokens."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from core.budgets import BudgetGuard, Decision, window
from core.control import Budget
from core.errors import BudgetExceeded, ConfigError
from core.state import MemoryState
from core.types import PICO, ChatRequest, Criticality, Message

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)
MODEL, PROVIDER = "gpt-4o", "openai"


def usd(text: str) -> int:
    return int(Decimal(text) * PICO)


def req(criticality: Criticality = "normal", /, **kw: str | None) -> ChatRequest:
    return ChatRequest([Message("user", "hi")], criticality=criticality, **kw)  # type: ignore[arg-type]


ACME = Budget(
    id="acme-month",
    name="acme monthly",
    scope="org",
    scope_value="acme",
    period="month",
    limit_usd=Decimal("100"),
    action="block",
    timezone="Europe/London",
)


@pytest.fixture
def guard() -> BudgetGuard:
    return BudgetGuard(MemoryState("t:"), clock=lambda: NOW)


def spend(
    guard: BudgetGuard, b: Budget, amount: str, r: ChatRequest | None = None, tokens: int = 0
) -> None:
    """Record settled spend as a call that reserved and settled exactly ``amount``."""
    alert_only = replace(b, action="alert")
    d = guard.admit(r or req(org="acme"), MODEL, PROVIDER, usd(amount), tokens, [alert_only], [])
    assert d.admitted
    guard.settle(d, usd(amount), tokens)


def live(guard: BudgetGuard, b: Budget, metric: str = "usd") -> int:
    w = window(b, NOW)
    return guard.state.get_values([w.usd_key if metric == "usd" else w.tokens_key])[0]


def test_blocked_message_names_budget_limit_spend_and_window(guard: BudgetGuard) -> None:
    spend(guard, ACME, "93.10")
    d = guard.admit(req(org="acme"), MODEL, PROVIDER, usd("7.50"), 100, [ACME], [])
    assert not d.admitted and d.blocked is not None and d.budget == ACME
    assert str(d.blocked) == (
        "budget 'acme monthly' (org=acme): spent $93.10 of $100.00 limit in window 2026-11 "
        "(month, Europe/London); critical requests may reach $200.00; this call's estimate "
        "of $7.50 would go $0.60 past the limit"
    )
    assert isinstance(d.error, BudgetExceeded)
    assert (d.blocked.budget, d.blocked.window) == ("acme-month", "2026-11")
    assert (d.blocked.limit, d.blocked.spent) == (Decimal("100"), Decimal("93.1"))
    assert d.utilisation == pytest.approx(0.931)
    assert live(guard, ACME) == usd("93.10")  # nothing reserved


def test_non_critical_admitted_exactly_up_to_the_limit(guard: BudgetGuard) -> None:
    spend(guard, ACME, "93.10")
    over = guard.admit(req(org="acme"), MODEL, PROVIDER, usd("6.90") + 1, 0, [ACME], [])
    assert over.blocked is not None
    exact = guard.admit(req(org="acme"), MODEL, PROVIDER, usd("6.90"), 0, [ACME], [])
    assert exact.admitted and not exact.over_soft
    assert live(guard, ACME) == usd("100")


def test_critical_runs_to_the_soft_multiplier(guard: BudgetGuard) -> None:
    spend(guard, ACME, "93.10")
    d = guard.admit(req("critical", org="acme"), MODEL, PROVIDER, usd("7.50"), 0, [ACME], [])
    assert d.admitted and d.critical and d.over_soft
    guard.settle(d, usd("7.50"), 0)
    spend(guard, ACME, "94.40")  # 195.00
    ok = guard.admit(req("critical", org="acme"), MODEL, PROVIDER, usd("5"), 0, [ACME], [])
    assert ok.admitted  # exactly 200.00
    guard.release(ok)
    d = guard.admit(req("critical", org="acme"), MODEL, PROVIDER, usd("5.01"), 0, [ACME], [])
    assert d.blocked is not None
    assert str(d.blocked).endswith(
        "critical requests may reach $200.00; this call's estimate of $5.01 would go $0.01 "
        "past the hard cap"
    )
    assert "spent $195.00 of $100.00 limit" in str(d.blocked)


def test_multiplier_one_means_no_critical_headroom(guard: BudgetGuard) -> None:
    strict = replace(ACME, soft_multiplier=1.0)
    spend(guard, strict, "99.99")
    d = guard.admit(req("critical", org="acme"), MODEL, PROVIDER, usd("0.02"), 0, [strict], [])
    assert d.blocked is not None and "critical requests may reach" not in str(d.blocked)


def test_a_budget_on_one_org_never_blocks_another(guard: BudgetGuard) -> None:
    spend(guard, ACME, "100")
    blocked = guard.admit(req(org="acme"), MODEL, PROVIDER, usd("1"), 0, [ACME], [])
    assert blocked.blocked is not None
    other = guard.admit(req(org="beta"), MODEL, PROVIDER, usd("1"), 0, [ACME], [])
    assert other.admitted and other.uses == () and other.holds == ()
    anonymous = guard.admit(req(), MODEL, PROVIDER, usd("1"), 0, [ACME], [])
    assert anonymous.admitted and anonymous.uses == ()


@pytest.mark.parametrize(
    ("scope", "value", "hit", "miss"),
    [
        ("project", "p1", dict(project="p1"), dict(project="p2")),
        ("user", "alice", dict(user="alice"), dict(user="bob")),
        ("task", "summarize", dict(task="summarize"), dict(task="chat")),
    ],
)
def test_request_field_scopes(
    guard: BudgetGuard,
    scope: str,
    value: str,
    hit: dict[str, str | None],
    miss: dict[str, str | None],
) -> None:
    b = Budget(
        id="b", name="B", scope=scope, scope_value=value, limit_usd=Decimal("1"), action="block"
    )
    assert guard.admit(req(**hit), MODEL, PROVIDER, usd("2"), 0, [b], []).blocked is not None
    assert guard.admit(req(**miss), MODEL, PROVIDER, usd("2"), 0, [b], []).admitted


def test_model_and_provider_budgets_match_the_candidate(guard: BudgetGuard) -> None:
    on_model = Budget(
        id="m",
        name="M",
        scope="model",
        scope_value="gpt-4o",
        limit_usd=Decimal("1"),
        action="block",
    )
    on_provider = Budget(
        id="p",
        name="P",
        scope="provider",
        scope_value="anthropic",
        limit_usd=Decimal("1"),
        action="block",
    )
    both = [on_model, on_provider]
    r = req(org="acme")
    assert guard.admit(r, "gpt-4o", "openai", usd("2"), 0, both, []).budget == on_model
    assert guard.admit(r, "openai/gpt-4o", "openai", usd("2"), 0, both, []).budget == on_model
    assert guard.admit(r, "gpt-4o-mini", "openai", usd("2"), 0, both, []).admitted
    d = guard.admit(r, "claude-haiku-4-5", "anthropic", usd("2"), 0, both, [])
    assert d.budget == on_provider and d.blocked is not None
    assert "(provider=anthropic)" in str(d.blocked)


def test_every_matching_budget_applies_and_reports_utilisation(guard: BudgetGuard) -> None:
    glob = Budget(id="all", name="Everything", limit_usd=Decimal("1000"), action="block")
    spend(guard, glob, "250")
    spend(guard, ACME, "40")
    d = guard.admit(req(org="acme"), MODEL, PROVIDER, usd("1"), 0, [glob, ACME], [])
    assert d.admitted
    utils = {u.budget.id: u.utilisation for u in d.uses}
    assert utils == {"all": pytest.approx(0.25), "acme-month": pytest.approx(0.40)}
    spent = {u.budget.id: u.spent_picousd for u in d.uses}
    assert spent == {"all": usd("250"), "acme-month": usd("40")}
    assert len(d.holds) == 2


def test_disabled_budget_is_ignored(guard: BudgetGuard) -> None:
    off = replace(ACME, enabled=False)
    spend(guard, ACME, "100")
    assert guard.admit(req(org="acme"), MODEL, PROVIDER, usd("5"), 0, [off], []).admitted


def test_zero_cost_model_is_never_blocked_by_a_usd_budget(guard: BudgetGuard) -> None:
    spend(guard, ACME, "150")  # far over
    d = guard.admit(req(org="acme"), "llama3", "ollama", 0, 500, [ACME], [])
    assert d.admitted and d.uses[0].utilisation == pytest.approx(1.5)
    guard.settle(d, 0, 500)
    assert live(guard, ACME) == usd("150")


def test_zero_cost_model_still_counts_token_budgets(guard: BudgetGuard) -> None:
    b = replace(ACME, limit_tokens=1000)
    d = guard.admit(req(org="acme"), "llama3", "ollama", 0, 600, [b], [])
    assert d.admitted
    guard.settle(d, 0, 600)
    d = guard.admit(req(org="acme"), "llama3", "ollama", 0, 600, [b], [])
    assert d.blocked is not None
    assert "spent 600 of 1,000 token limit" in str(d.blocked)
    assert "estimate of 600 tokens would go 200 tokens past the limit" in str(d.blocked)
    assert d.blocked.limit == 1000 and d.blocked.spent == 600


def test_token_only_budget(guard: BudgetGuard) -> None:
    b = Budget(id="tok", name="Tokens", period="day", limit_tokens=10_000, action="block")
    first = guard.admit(req(), MODEL, PROVIDER, usd("1"), 9_000, [b], [])
    assert first.admitted
    guard.settle(first, usd("1"), 8_000)
    assert live(guard, b, "tokens") == 8_000
    assert guard.admit(req(), MODEL, PROVIDER, usd("1"), 2_000, [b], []).admitted
    assert guard.admit(req(), MODEL, PROVIDER, usd("1"), 1, [b], []).blocked is not None


def test_alert_action_tracks_but_never_blocks_or_degrades(guard: BudgetGuard) -> None:
    watch = replace(ACME, action="alert")
    spend(guard, watch, "500")
    d = guard.admit(req(org="acme"), MODEL, PROVIDER, usd("10"), 0, [watch], [])
    assert d.admitted and not d.degrade and not d.over_soft
    assert d.uses[0].utilisation == pytest.approx(5.0)


def test_degrade_action(guard: BudgetGuard) -> None:
    soft = replace(ACME, action="degrade", degrade_to="gpt-4o-mini")
    spend(guard, soft, "93")
    d = guard.admit(req(org="acme"), MODEL, PROVIDER, usd("7.50"), 0, [soft], [])
    assert (d.admitted, d.degrade, d.degrade_to, d.blocked) == (False, True, "gpt-4o-mini", None)
    assert d.budget == soft and d.utilisation == pytest.approx(0.93)
    assert live(guard, soft) == usd("93")  # nothing reserved
    cheap = guard.admit(
        req(org="acme"), "gpt-4o-mini", PROVIDER, usd("7.50"), 0, [soft], [], degraded=True
    )
    assert cheap.admitted and cheap.degraded and cheap.over_soft
    guard.settle(cheap, usd("7.50"), 0)
    crit = guard.admit(req("critical", org="acme"), MODEL, PROVIDER, usd("7.50"), 0, [soft], [])
    assert crit.admitted and not crit.degrade
    guard.settle(crit, usd("7.50"), 0)  # 108.00
    spend(guard, soft, "90")  # 198.00
    past = guard.admit(
        req(org="acme"), "gpt-4o-mini", PROVIDER, usd("2.01"), 0, [soft], [], degraded=True
    )
    assert past.blocked is not None and str(past.blocked).endswith("$0.01 past the hard cap")


def test_degrade_only_when_the_call_would_pass_the_limit(guard: BudgetGuard) -> None:
    soft = replace(ACME, action="degrade")
    spend(guard, soft, "93")
    assert guard.admit(req(org="acme"), MODEL, PROVIDER, usd("7"), 0, [soft], []).admitted


def test_block_beats_degrade_when_both_are_exceeded(guard: BudgetGuard) -> None:
    soft = replace(ACME, id="soft", action="degrade")
    hard = Budget(id="hard", name="Hard", limit_usd=Decimal("50"), action="block")
    spend(guard, soft, "99")
    spend(guard, hard, "49")
    d = guard.admit(req(org="acme"), MODEL, PROVIDER, usd("2"), 0, [soft, hard], [])
    assert d.blocked is not None and d.budget == hard and not d.degrade


def test_settle_moves_reservation_to_actual_and_release_gives_it_back(guard: BudgetGuard) -> None:
    d = guard.admit(req(org="acme"), MODEL, PROVIDER, usd("5"), 0, [ACME], [])
    assert live(guard, ACME) == usd("5")
    guard.settle(d, usd("1.25"), 0)
    assert live(guard, ACME) == usd("1.25")
    guard.settle(d, usd("3"), 0)  # a second settle does nothing
    assert live(guard, ACME) == usd("1.25")
    failed = guard.admit(req(org="acme"), MODEL, PROVIDER, usd("5"), 0, [ACME], [])
    guard.release(failed)
    assert live(guard, ACME) == usd("1.25")
    w = window(ACME, NOW)
    committed = guard.state.get_values([w.committed(w.usd_key)])[0]
    assert committed == usd("1.25")


def test_next_window_and_reset_start_fresh(guard: BudgetGuard) -> None:
    spend(guard, ACME, "100")
    assert guard.admit(req(org="acme"), MODEL, PROVIDER, usd("1"), 0, [ACME], []).blocked
    reset = replace(ACME, reset_generation=1)
    assert guard.admit(req(org="acme"), MODEL, PROVIDER, usd("1"), 0, [reset], []).admitted
    december = BudgetGuard(guard.state, clock=lambda: datetime(2026, 12, 1, tzinfo=UTC))
    d = december.admit(req(org="acme"), MODEL, PROVIDER, usd("1"), 0, [ACME], [])
    assert d.admitted and d.uses[0].window.label == "2026-12"


def test_no_budget_no_state_call(guard: BudgetGuard) -> None:
    d = guard.admit(req(), MODEL, PROVIDER, usd("1"), 10, [], [])
    assert isinstance(d, Decision) and d.admitted and d.holds == ()
    guard.settle(d, usd("1"), 10)  # harmless


def test_invalid_budget_raises_config_error_naming_the_field(guard: BudgetGuard) -> None:
    bad = replace(ACME, timezone="Mars/Olympus")
    with pytest.raises(ConfigError) as err:
        guard.admit(req(org="acme"), MODEL, PROVIDER, 1, 0, [bad], [])
    assert err.value.field == "timezone"


def test_a_budget_listed_twice_counts_once(guard: BudgetGuard) -> None:
    d = guard.admit(req(org="acme"), MODEL, PROVIDER, usd("60"), 0, [ACME, ACME], [])
    assert d.admitted and len(d.holds) == 1
    assert live(guard, ACME) == usd("60")


@pytest.mark.parametrize("action", ["block", "degrade"])
def test_refused_utilisation_is_its_budgets_use_the_larger_of_usd_and_tokens(
    guard: BudgetGuard, action: str
) -> None:
    """A refusal's utilisation (and the text naming it) is the budget's entry in ``uses``:
    the larger of spent/limit and tokens/limit, other matching budgets left out."""
    both = replace(ACME, action=action, limit_tokens=1_000, degrade_to="gpt-4o-mini")
    glob = Budget(id="all", name="Everything", limit_usd=Decimal("1000"), action="alert")
    spend(guard, glob, "900")
    spend(guard, both, "20", tokens=970)  # tokens at 97 %, USD at 20 %
    d = guard.admit(req(org="acme"), MODEL, PROVIDER, usd("1"), 100, [glob, both], [])
    assert not d.admitted and d.budget == both
    use = next(u for u in d.uses if u.budget.id == both.id)
    assert d.utilisation == use.utilisation == pytest.approx(0.97)
    if action == "degrade":
        assert d.degrade and "at 97%" in d.reason
    else:
        assert d.blocked is not None


def test_each_snapshot_of_rows_is_applied_as_it_is(guard: BudgetGuard) -> None:
    """Rows are worked out once per tuple of rows (a snapshot's); another tuple is another
    snapshot, and a list is read afresh on every call."""
    snap = (ACME,)
    assert guard.admit(req(org="acme"), MODEL, PROVIDER, usd("60"), 0, snap, ()).admitted
    assert not guard.admit(req(org="acme"), MODEL, PROVIDER, usd("60"), 0, snap, ()).admitted
    raised = (replace(ACME, limit_usd=Decimal("200")),)  # the control plane's next version
    assert guard.admit(req(org="acme"), MODEL, PROVIDER, usd("60"), 0, raised, ()).admitted
    rows: list[Budget] = []
    assert guard.admit(req(org="acme"), MODEL, PROVIDER, usd("60"), 0, rows, ()).admitted
    rows.append(ACME)  # 120 of 100 held
    assert not guard.admit(req(org="acme"), MODEL, PROVIDER, usd("1"), 0, rows, ()).admitted
    with pytest.raises(ConfigError):  # an invalid row is refused on every call
        guard.admit(req(org="acme"), MODEL, PROVIDER, 1, 0, (replace(ACME, scope="moon"),), ())
    with pytest.raises(ConfigError):
        guard.admit(req(org="acme"), MODEL, PROVIDER, 1, 0, (replace(ACME, scope="moon"),), ())
