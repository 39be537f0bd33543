"""Insights: the usage log, the control plane and the catalog fed to ``core.analytics``.

    forecast(reader, "org", "acme", horizon_days=30)      # cached on reader.data_version()
    forecasts_by(reader, "model", top=10)                  # one per value, in parallel
    budget_outlook(reader, plane.budgets())                # when each budget runs out
    findings = scan_usage(reader, tz="UTC")                # anomalies, attributed
    raise_anomaly_alerts(findings, AlertSink(plane))       # once per series and day
    savings_advice(reader, catalog, policies=plane.policies())

Functions take a ``Reader`` (and plain values from the control plane), return dataclasses
and DataFrames, and never import a UI package. Prophet is imported only inside a fit.
"""

from core.insights._advice import (
    catalog_cached_ratio,
    catalog_reprice,
    policy_candidates,
    savings_advice,
    scored_quality,
)
from core.insights._alerts import alert_message, raise_anomaly_alerts
from core.insights._anomalies import Finding, attribute, by_series_day, lead, scan_usage
from core.insights._forecasts import (
    FORECASTS,
    BudgetOutlook,
    budget_outlook,
    forecast,
    forecasts_by,
    rest_of_today,
)
from core.insights._series import (
    DIMENSIONS,
    daily_history,
    day_fraction_left,
    dimension_values,
    local_midnight,
    local_today,
    scoped,
)

__all__ = [
    "BudgetOutlook",
    "DIMENSIONS",
    "FORECASTS",
    "Finding",
    "alert_message",
    "attribute",
    "budget_outlook",
    "by_series_day",
    "catalog_cached_ratio",
    "catalog_reprice",
    "daily_history",
    "day_fraction_left",
    "dimension_values",
    "forecast",
    "forecasts_by",
    "lead",
    "local_midnight",
    "local_today",
    "policy_candidates",
    "raise_anomaly_alerts",
    "rest_of_today",
    "savings_advice",
    "scan_usage",
    "scoped",
    "scored_quality",
]
