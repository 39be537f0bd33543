"""Insights timings on the demo data (90 days, ~260k events; quick: 30 days).

- insights_forecast_page_s: first AppTest render of the Forecast page, cold caches (Prophet fit
  and backtest of the total, one forecast per budget, the anomaly scan with attribution, the
  savings advice), signed in as a viewer. ``_rerender_s``: the next run (all cached).
- insights_scan_s, insights_budget_outlook_s, insights_advice_s: the core parts alone, cold.
"""

from __future__ import annotations

import os
import time
from pathlib import Path


def run(quick: bool) -> dict[str, float]:
    from core import insights
    from core.control import ControlPlane
    from core.demo import load_demo
    from core.insights import ForecastCache
    from core.pricing import load_catalog
    from core.usage import Reader
    from tests.console_support import ADMIN_PASSWORD, app, make_users

    saved = {k: os.environ.get(k) for k in ("COSTLINE_HOME", "COSTLINE_ADMIN_PASSWORD")}
    home = Path(os.environ.get("COSTLINE_HOME", "/tmp")) / "bench-insights"
    home.mkdir(parents=True, exist_ok=True)
    os.environ["COSTLINE_HOME"] = str(home)
    os.environ["COSTLINE_ADMIN_PASSWORD"] = ADMIN_PASSWORD
    out: dict[str, float] = {}
    try:
        load_demo(home, days=30 if quick else 90)
        make_users(home)
        with Reader(home) as reader, ControlPlane(f"sqlite:///{home / 'control.db'}") as plane:
            t0 = time.perf_counter()
            insights.scan_usage(reader)
            out["insights_scan_s"] = round(time.perf_counter() - t0, 3)
            insights.forecast(reader, backtest=False, cache=ForecastCache())  # Stan warm-up
            t0 = time.perf_counter()
            insights.budget_outlook(reader, plane.budgets(), cache=ForecastCache())
            out["insights_budget_outlook_s"] = round(time.perf_counter() - t0, 3)
            t0 = time.perf_counter()
            insights.savings_advice(reader, load_catalog(), policies=plane.policies())
            out["insights_advice_s"] = round(time.perf_counter() - t0, 3)
        at = app("viewer", timeout=600).run()
        t0 = time.perf_counter()
        at.switch_page("app_pages/forecast.py").run()
        out["insights_forecast_page_s"] = round(time.perf_counter() - t0, 3)
        t0 = time.perf_counter()
        at.run()
        out["insights_forecast_page_rerender_s"] = round(time.perf_counter() - t0, 3)
        if at.exception:
            raise RuntimeError(f"forecast page failed: {at.exception[0].value}")
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return out
