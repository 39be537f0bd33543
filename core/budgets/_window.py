"""Budget windows and scope matching.

A window is a calendar day, ISO week (Monday start) or calendar month in the budget's IANA time
zone. Its ``key`` names the live counter, so a new window (or a "reset now", which bumps
``reset_generation``) simply starts a fresh counter: there is no reset job. Counters live until
the window ends plus one day (``ttl_s``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from core.control import Budget
from core.ratelimits import same_model
from core.types import ChatRequest

GRACE = timedelta(days=1)  # counters outlive their window by this much
GRACE_S = GRACE.total_seconds()


@dataclass(frozen=True, slots=True)
class Window:
    """``key``: live-counter key; ``label``: the control plane's window key ('2026-11',
    '2026-W47', '2026-11-05', '.rN' after a reset), used for alerts and messages.
    ``start``/``end`` are aware datetimes in the budget's zone, ``end`` exclusive."""

    key: str
    start: datetime
    end: datetime
    label: str
    period: str
    tz: str
    # derived once (the guard reuses a window for every call until it ends)
    usd_key: str = field(init=False, repr=False, compare=False)
    tokens_key: str = field(init=False, repr=False, compare=False)
    start_ts: float = field(init=False, repr=False, compare=False)  # POSIX seconds
    end_ts: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "usd_key", self.key + ":usd")
        set_(self, "tokens_key", self.key + ":tok")
        set_(self, "start_ts", self.start.timestamp())
        set_(self, "end_ts", self.end.timestamp())

    @staticmethod
    def committed(key: str) -> str:
        """Settled spend only (the live counter also holds in-flight reservations)."""
        return key + ":c"

    def ttl_s(self, now: datetime) -> float:
        return self.ttl_at(now.timestamp())

    def ttl_at(self, ts: float) -> float:
        """``ttl_s`` for a POSIX time: the counter lives until the window end + GRACE."""
        return max(1.0, self.end_ts - ts + GRACE_S)

    def holds(self, ts: float) -> bool:
        """Is the POSIX time ``ts`` inside [start, end)?"""
        return self.start_ts <= ts < self.end_ts

    def length(self) -> timedelta:
        """Real elapsed time of the window (23 h or 25 h on DST days): computed in UTC."""
        return self.end.astimezone(UTC) - self.start.astimezone(UTC)


def window(budget: Budget, now: datetime) -> Window:
    start, end = budget.window_bounds(now)
    key = f"{budget.id}:{budget.period}:{start:%Y-%m-%d}:{budget.reset_generation}"
    return Window(key, start, end, budget.window_key(now), budget.period, budget.timezone or "UTC")


def scope_text(budget: Budget) -> str:
    return "global" if budget.scope == "global" else f"{budget.scope}={budget.scope_value}"


def matches(
    budget: Budget,
    req: ChatRequest,
    model: str,
    provider: str,
    canonical: Callable[[str], str] | None = None,
) -> bool:
    """Does ``budget`` apply to this request sent to ``model`` at ``provider``?"""
    if not budget.enabled:
        return False
    scope, want = budget.scope, budget.scope_value
    if scope == "global":
        return True
    if want is None:
        return False
    if scope == "model":
        return same_model(want, model, provider, canonical)
    if scope == "provider":
        return want.lower() == provider.lower()
    if scope in REQUEST_SCOPES:
        return bool(getattr(req, scope) == want)
    return False


def model_names(want: str, canonical: Callable[[str], str] | None = None) -> tuple[str, ...]:
    """The usage log's model names (lower case) a model-scoped budget on ``want`` counts:
    those ``matches`` takes for the same model at admission. The router logs a call by its
    candidate's name - a priced model's catalog name, an unpriced one's name as asked - which
    is its own canonical name; admission compares canonical names in lower case. So a logged
    name counts when, in lower case, it is ``want`` or ``want``'s canonical name.
    ``core.reports.condition`` (SQL) and the reconciler's journal sums both use this."""
    names = {want.strip().lower()}
    if canonical is not None:
        with contextlib.suppress(Exception):  # unknown to the catalog: the plain name
            names.add(canonical(want).lower())
    return tuple(sorted(names))


REQUEST_SCOPES = frozenset({"org", "project", "user", "task", "key"})
