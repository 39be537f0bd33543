"""Analytics over the usage log: spend forecasts, anomalies and savings advice.

Inputs are pandas frames (a daily (ds, y) series, a (ds, key, value) frame, the events
frame), so this package does not depend on how the usage log is stored. Prophet is imported
lazily, inside the functions that fit it.
"""

from core.analytics.advice import (
    TOKEN_CLASSES,
    Advice,
    AdviceReport,
    Tolerance,
    advise,
    model_switches,
    prompt_caching,
    response_cache,
)
from core.analytics.anomalies import (
    Anomaly,
    Contributor,
    detect,
    detect_iqr,
    detect_mad,
    detect_prophet,
    scan,
)
from core.analytics.attribution import attribute, attribute_anomaly
from core.analytics.backtest import Backtest
from core.analytics.cache import ForecastCache, forecast_many
from core.analytics.exhaustion import Exhaustion, exhaustion, window_spend
from core.analytics.forecast import Forecast, forecast_spend, run_rate_forecast

__all__ = [
    "TOKEN_CLASSES",
    "Advice",
    "AdviceReport",
    "Anomaly",
    "Backtest",
    "Contributor",
    "Exhaustion",
    "Forecast",
    "ForecastCache",
    "Tolerance",
    "advise",
    "attribute",
    "attribute_anomaly",
    "detect",
    "detect_iqr",
    "detect_mad",
    "detect_prophet",
    "exhaustion",
    "forecast_many",
    "forecast_spend",
    "model_switches",
    "prompt_caching",
    "response_cache",
    "run_rate_forecast",
    "scan",
    "window_spend",
]
