"""A call in flight across a budget window boundary (admitted before local midnight in the
configured time zone, answered after it) counts in the window of its usage event's ``ts``
- the time it was recorded, its end - in the live counters as in the log, so the guard, the
reconciler and the Budgets page agree and a reconcile round changes nothing
(docs/architecture.md, "Reconcile"). Real Router on MemoryState, SharedState and Redis, real usage
log in this test's COSTLINE_HOME; the provider moves ``core.clock`` past midnight while it
answers."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from test_controls_support import ENGINEER, make_plane, make_router

from core import clock
from core.control import Budget, ControlPlane
from core.errors import BudgetExceeded
from core.providers.dryrun import DryRunProvider
from core.reconcile import MIN_LAG_S
from core.router import Router
from core.settings import Settings
from core.state import MemoryState, RedisState, SharedState
from core.types import ChatRequest, Message
from core.usage import Reader

ZONE = "America/New_York"
BEFORE = datetime(2026, 12, 4, 23, 59, 50, tzinfo=ZoneInfo(ZONE))  # admitted
AFTER = BEFORE + timedelta(seconds=20)  # answered: 00:00:10 on 5 Dec, local


class Now:
    """A clock the test (and the provider) moves."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


class Slow(DryRunProvider):
    """dryrun whose answer takes until ``until``: the clock moves while the call is out."""

    def __init__(self, now: Now, until: datetime = AFTER) -> None:
        super().__init__(Settings.from_env().provider("dryrun"))
        self.now, self.until = now, until

    def complete(self, req: ChatRequest, model: str) -> Any:
        self.now.at = self.until
        return super().complete(req, model)


@pytest.fixture
def now(monkeypatch: pytest.MonkeyPatch) -> Iterator[Now]:
    monkeypatch.setenv("COSTLINE_TIMEZONE", ZONE)  # budgets without a zone take it
    at = Now(BEFORE)
    previous = clock.set_clock(at)
    yield at
    clock.set_clock(previous)


@pytest.fixture
def plane(now: Now) -> Iterator[ControlPlane]:
    p = make_plane()
    p.upsert_budget(
        Budget(
            id="daily",
            name="daily",
            period="day",
            limit_usd=Decimal(100),
            limit_tokens=10**9,
            action="block",
        ),
        ENGINEER,
    )
    yield p
    p.close()


def windows(r: Router) -> dict[str, dict[str, tuple[int, int, int]]]:
    """Per window label, per metric: (live counter, committed counter, log's sum)."""
    assert r.reconciler is not None and r.controls is not None
    r.log.flush()
    out: dict[str, dict[str, tuple[int, int, int]]] = {}
    for at in (BEFORE, AFTER):
        for t in r.reconciler.targets(at):
            live, committed = r.controls.state.get_values([t.key, t.key + ":c"])
            out.setdefault(t.window, {})[t.metric] = (live, committed, t.log_value)
    return out


def live_state(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if kind == "memory":
        return MemoryState("t:")
    if kind == "shared":
        return SharedState(tmp_path / "s.db")
    url = request.getfixturevalue("redis_url")  # its own key prefix, removed after
    return RedisState(url, os.environ["COSTLINE_TEST_PREFIX"], socket_timeout=5.0)


KINDS = ["memory", "shared", "redis"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_call_across_midnight_counts_in_the_window_of_its_event(
    plane, now, tmp_path, request, kind
):
    state = live_state(kind, request, tmp_path)
    ask = ChatRequest([Message("user", "late call")], model="dryrun-large", max_tokens=50)
    with make_router(plane, state, providers={"dryrun": Slow(now)}) as r:
        done = r.complete(ask)
        assert done.cost.total > 0
        assert clock.now() == AFTER
        r.log.flush()
        with Reader(r.settings.home) as rd:
            ev = rd.events()
        assert len(ev) == 1
        logged_day = ev.ts[0].to_pydatetime().astimezone(ZoneInfo(ZONE)).date()
        assert str(logged_day) == "2026-12-05"  # the event's ts: when it was recorded

        views = windows(r)
        assert set(views) == {"2026-12-04", "2026-12-05"}, views
        tokens = done.usage.input_tokens + done.usage.output_tokens
        assert views["2026-12-05"] == {
            "usd": (done.cost.total,) * 3,
            "tokens": (tokens,) * 3,
        }, views
        assert views["2026-12-04"] == {"usd": (0, 0, 0), "tokens": (0, 0, 0)}, views

        rec = r.reconciler
        assert rec is not None
        assert rec.reconcile() == []
        time.sleep(MIN_LAG_S + 0.1)  # a lowering compares counters at least MIN_LAG_S old
        assert rec.reconcile() == []  # nothing raised or lowered: the counters were right
        assert windows(r) == views
        st = next(s for s in r.controls.guard.status(r.controls.snapshot().budgets))  # type: ignore[union-attr]
        assert st.spent_picousd == done.cost.total and st.reserved_picousd == 0


@pytest.mark.parametrize("kind", KINDS)
def test_midnight_between_the_settle_and_the_record_splits_nothing(
    plane, now, tmp_path, request, kind
):
    """The settle and the usage event take one instant: when the clock passes midnight
    right after the settle's state step, the event is still logged in the settle's window
    (the guard and the log each read the clock: counter on the 4th, event on the 5th)."""
    state = live_state(kind, request, tmp_path)
    for name in ("apply_deltas", "settle_and_close"):
        step = getattr(state, name, None)
        if step is not None:

            def then_midnight(*a: Any, _step: Any = step, **kw: Any) -> Any:
                got = _step(*a, **kw)
                now.at = AFTER  # midnight passes as the settle returns
                return got

            setattr(state, name, then_midnight)
    answered = BEFORE + timedelta(seconds=9)  # 23:59:59 on the 4th
    ask = ChatRequest([Message("user", "last call")], model="dryrun-large", max_tokens=50)
    with make_router(plane, state, providers={"dryrun": Slow(now, answered)}) as r:
        done = r.complete(ask)
        assert clock.now() == AFTER
        r.log.flush()
        with Reader(r.settings.home) as rd:
            ev = rd.events()
        assert len(ev) == 1 and ev.ts[0].to_pydatetime() == answered

        views = windows(r)
        tokens = done.usage.input_tokens + done.usage.output_tokens
        assert views["2026-12-04"] == {
            "usd": (done.cost.total,) * 3,
            "tokens": (tokens,) * 3,
        }, views
        assert views["2026-12-05"] == {"usd": (0, 0, 0), "tokens": (0, 0, 0)}, views
        rec = r.reconciler
        assert rec is not None
        assert rec.reconcile() == []
        assert windows(r) == views


@pytest.mark.parametrize("kind", KINDS)
def test_a_settle_in_the_new_window_fires_its_thresholds_there(plane, now, tmp_path, request, kind):
    """A hard budget: the call was admitted under the 4th's limit (nothing to refuse in the
    5th: it is already answered), its spend counts in the 5th, and the thresholds that spend
    crosses fire as the 5th's alerts (never the 4th's), from the settle itself; the next
    call in the 5th is refused."""
    state = live_state(kind, request, tmp_path)
    slow = Slow(now, BEFORE + timedelta(seconds=1))  # the first call: answered on the 4th
    msgs = [Message("user", "late call")]
    with make_router(plane, state, providers={"dryrun": slow}, poll_s=0.0) as r:
        cost = r.complete(ChatRequest(msgs, model="dryrun-large", max_tokens=50, org="x"))
        tight = Budget(
            id="tight",
            name="tight",
            scope="org",
            scope_value="acme",
            period="day",
            limit_usd=Decimal(cost.cost.total) * Decimal("0.8") / 10**12,  # one call: 125 %
            action="block",
            soft_multiplier=10.0,  # a critical call is admitted up to 10x
        )
        plane.upsert_budget(tight, ENGINEER)
        slow.until = AFTER
        ask = ChatRequest(msgs, model="dryrun-large", max_tokens=50, org="acme")
        done = r.complete(replace(ask, criticality="critical"))  # on the 4th, answered the 5th
        assert clock.now() == AFTER and done.cost.total == cost.cost.total
        fired = {
            (a.window_key, a.threshold_pct)
            for a in plane.alerts()
            if a.kind == "budget" and a.budget_id == "tight"
        }
        assert fired == {("2026-12-05", t) for t in (50, 75, 90, 100)}, fired
        with pytest.raises(BudgetExceeded) as refused:  # the 5th is over its limit
            r.complete(replace(ask, messages=[Message("user", "next call")], cache=False))
        assert refused.value.budget == "tight"
