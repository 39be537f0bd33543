"""Insights: spend forecasts, anomalies and savings advice over the usage log.

Two layers. The models take pandas frames (a daily (ds, y) series, a (ds, key, value) frame,
the events frame) and know nothing of storage: ``forecast_spend``, ``run_rate_forecast``,
``detect``/``scan``, ``attribute_events``, ``exhaustion``, ``advise`` (``_forecast_model``,
``_detect``, ``_attribution``, ``_exhaustion``, ``_advise``; forecasts cached by
``ForecastCache`` in ``_forecast_cache``). The functions below feed them from the usage log,
the control plane and the catalog:

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
from core.insights._advise import (
    TOKEN_CLASSES,
    Advice,
    AdviceReport,
    Tolerance,
    advise,
    model_switches,
    prompt_caching,
    response_cache,
)
from core.insights._alerts import alert_message, exact_spent, raise_anomaly_alerts
from core.insights._anomalies import Finding, attribute, by_series_day, lead, scan_usage
from core.insights._attribution import attribute as attribute_events
from core.insights._attribution import attribute_anomaly
from core.insights._backtest import Backtest
from core.insights._detect import (
    Anomaly,
    Contributor,
    detect,
    detect_iqr,
    detect_mad,
    detect_prophet,
    scan,
)
from core.insights._exhaustion import Exhaustion, exhaustion, window_spend
from core.insights._forecast_cache import ForecastCache, forecast_many
from core.insights._forecast_model import Forecast, forecast_spend, run_rate_forecast
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
    "Advice",
    "AdviceReport",
    "Anomaly",
    "Backtest",
    "BudgetOutlook",
    "Contributor",
    "DIMENSIONS",
    "Exhaustion",
    "FORECASTS",
    "Finding",
    "Forecast",
    "ForecastCache",
    "TOKEN_CLASSES",
    "Tolerance",
    "advise",
    "alert_message",
    "attribute",
    "attribute_anomaly",
    "attribute_events",
    "budget_outlook",
    "by_series_day",
    "catalog_cached_ratio",
    "catalog_reprice",
    "daily_history",
    "day_fraction_left",
    "detect",
    "detect_iqr",
    "detect_mad",
    "detect_prophet",
    "dimension_values",
    "exact_spent",
    "exhaustion",
    "forecast",
    "forecast_many",
    "forecast_spend",
    "forecasts_by",
    "lead",
    "local_midnight",
    "local_today",
    "model_switches",
    "policy_candidates",
    "prompt_caching",
    "raise_anomaly_alerts",
    "response_cache",
    "rest_of_today",
    "run_rate_forecast",
    "savings_advice",
    "scan",
    "scan_usage",
    "scoped",
    "scored_quality",
    "window_spend",
]
