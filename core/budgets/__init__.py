"""Budgets: step 5 of the call path (docs/architecture.md, "The call path").

    guard = BudgetGuard(state, alerts=AlertSink(plane), canonical=catalog.canonical)
    snap = watcher.current()
    choice = admit_first(guard, req, estimates, snap.active_budgets(), snap.rate_limits,
                         degrade=lambda d: estimate(d.degrade_to or policy_degrade_to))
    ... call choice.estimate.model ...
    guard.settle(choice.decision, cost.total, usage.total_tokens)   # or guard.release(...)

Windows are calendar windows in each budget's time zone (``window``); every matching budget
applies (``matches``); ``BudgetGuard.status`` feeds the console.
"""

from core.budgets._format import exceeded, threshold

from ._decision import BudgetUse, Decision, Hold, Line, utilisation
from ._guard import BudgetGuard, hard_cap
from ._select import Choice, Estimate, admit_first, none_left
from ._status import BudgetStatus, reached
from ._window import Window, matches, model_names, scope_text, window

__all__ = [
    "BudgetGuard",
    "BudgetStatus",
    "BudgetUse",
    "Choice",
    "Decision",
    "Estimate",
    "Hold",
    "Line",
    "Window",
    "admit_first",
    "hard_cap",
    "matches",
    "model_names",
    "none_left",
    "reached",
    "scope_text",
    "utilisation",
    "window",
    "exceeded",
    "threshold",
]
