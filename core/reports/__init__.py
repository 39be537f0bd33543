"""Figures the console shows and the REST API serves, computed once, in core.

    spend(reader, filters, "model", "day", tz)      # the Overview's chart and totals
    window_spend(reader, filters, tz, now)          # today / month to date / last 30 days
    utilisation(reader, plane, budgets, now)        # each budget in its current window
    coverage(reader, start, end)                    # did retention prune raw rows there?
    unpriced_calls(reader, filters)                 # calls in no total (also in spend's)
    accounting(reader, filters, "org", tz, "EUR", rate)  # month x org, unpriced apart

Each takes a ``core.usage.Reader`` and plain values and returns dataclasses or DataFrames
with money as exact integer picodollars (see docs/architecture.md, "Money").
"""

from core.reports._accounting import ACCOUNTING_DIMS, Accounting, accounting
from core.reports._budgets import (
    ADMITTED_EVENTS,
    ADMITTED_FACTS,
    METHOD,
    Utilisation,
    condition,
    percent_text,
    reset_times,
    utilisation,
)
from core.reports._overview import (
    NONE,
    TOP_WHO,
    Coverage,
    Spend,
    Totals,
    coverage,
    spend,
    top_spenders,
    unpriced_calls,
    window_spend,
)
from core.reports._routing import provider_health, sampling_savings

__all__ = [
    "ACCOUNTING_DIMS",
    "ADMITTED_EVENTS",
    "ADMITTED_FACTS",
    "Accounting",
    "accounting",
    "METHOD",
    "NONE",
    "TOP_WHO",
    "Coverage",
    "Spend",
    "Totals",
    "Utilisation",
    "condition",
    "coverage",
    "percent_text",
    "provider_health",
    "reset_times",
    "sampling_savings",
    "spend",
    "top_spenders",
    "unpriced_calls",
    "utilisation",
    "window_spend",
]
