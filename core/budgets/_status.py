"""Budget status for the console: committed spend, in-flight reservations, run-rate projection."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from core.alerts import AlertSink
from core.control import Budget
from core.state import State

from ._window import Window, window

US = timedelta(microseconds=1)


def reached(committed: int, limit: int, pct: int) -> bool:
    """Has committed spend reached ``pct`` % of ``limit``? (Exact integers; nothing spent
    never reaches a threshold, even of a $0 limit.)"""
    return committed > 0 and committed * 100 >= pct * limit


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    """One budget in its current window. ``spent_picousd``/``tokens`` are settled amounts;
    ``reserved_*`` are held by calls in flight. Projections are the linear run-rate since the
    window start carried to its end; ``exhausts_at`` is when that rate reaches the limit
    (None when it does not within the window)."""

    budget: Budget
    window: Window
    spent_picousd: int
    tokens: int
    reserved_picousd: int
    reserved_tokens: int
    limit_picousd: int | None
    limit_tokens: int | None
    utilisation: float
    projected_picousd: int
    projected_tokens: int
    projected_end_of_window: float  # projected utilisation at the window end
    exhausts_at: datetime | None
    alerts_fired: tuple[int, ...]

    @property
    def limit(self) -> int | None:
        """The USD limit in picodollars, else the token limit."""
        return self.limit_picousd if self.limit_picousd is not None else self.limit_tokens


def budget_status(
    state: State, budgets: Sequence[Budget], now: datetime, alerts: AlertSink | None = None
) -> list[BudgetStatus]:
    wins = [window(b, now) for b in budgets]
    keys: list[str] = []
    for w in wins:
        keys += [
            w.usd_key,
            Window.committed(w.usd_key),
            w.tokens_key,
            Window.committed(w.tokens_key),
        ]
    values = state.get_values(keys) if keys else []
    fired = _fired(alerts, budgets, wins)
    out: list[BudgetStatus] = []
    for i, (b, w) in enumerate(zip(budgets, wins, strict=True)):
        live_usd, usd, live_tok, tok = values[4 * i : 4 * i + 4]
        elapsed = max(timedelta(0), now.astimezone(UTC) - w.start.astimezone(UTC))
        proj_usd, proj_tok = _project(usd, elapsed, w), _project(tok, elapsed, w)
        util = proj_util = 0.0
        exhausts: list[datetime] = []
        for spent, proj, limit in (
            (usd, proj_usd, b.limit_picousd),
            (tok, proj_tok, b.limit_tokens),
        ):
            if limit is None:
                continue
            util = max(util, _ratio(spent, limit))
            proj_util = max(proj_util, _ratio(proj, limit))
            at = _exhausts(spent, limit, elapsed, w)
            if at is not None:
                exhausts.append(at)
        if fired is not None:
            got = fired.get((b.id, w.label), set())
        elif alerts is not None:
            got = {t for t in b.thresholds if alerts.seen("budget", b.id, w.label, t)}
        else:
            got = {
                t
                for t in b.thresholds
                if any(
                    lim is not None and reached(v, lim, t)
                    for v, lim in ((usd, b.limit_picousd), (tok, b.limit_tokens))
                )
            }
        out.append(
            BudgetStatus(
                b,
                w,
                usd,
                tok,
                max(0, live_usd - usd),
                max(0, live_tok - tok),
                b.limit_picousd,
                b.limit_tokens,
                util,
                proj_usd,
                proj_tok,
                proj_util,
                min(exhausts) if exhausts else None,
                tuple(sorted(got)),
            )
        )
    return out


def _ratio(value: int, limit: int) -> float:
    if limit > 0:
        return value / limit
    return 0.0 if value <= 0 else float("inf")


def _project(spent: int, elapsed: timedelta, w: Window) -> int:
    if spent <= 0 or elapsed <= timedelta(0):
        return spent
    return spent * (w.length() // US) // (elapsed // US)


def _exhausts(spent: int, limit: int, elapsed: timedelta, w: Window) -> datetime | None:
    if spent <= 0 or elapsed <= timedelta(0):
        return None
    offset_us = (elapsed // US) * limit // spent
    if offset_us >= w.length() // US:  # not within the window (and no date overflow)
        return None
    at = w.start.astimezone(UTC) + US * offset_us
    return at.astimezone(w.start.tzinfo)


def _fired(
    alerts: AlertSink | None, budgets: Sequence[Budget], wins: Sequence[Window]
) -> dict[tuple[str, str], set[int]] | None:
    """Thresholds recorded in the control plane, per (budget id, window label); None when
    there is no control plane to ask."""
    if alerts is None or alerts.plane is None:
        return None
    if not wins:
        return {}
    since = min(w.start for w in wins)
    wanted = {(b.id, w.label) for b, w in zip(budgets, wins, strict=True)}
    out: dict[tuple[str, str], set[int]] = {}
    for a in alerts.plane.alerts(since=since.astimezone(UTC), limit=100_000):
        if a.kind == "budget" and (a.budget_id, a.window_key) in wanted:
            out.setdefault((a.budget_id, a.window_key), set()).add(a.threshold_pct)
    return out
