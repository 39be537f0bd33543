"""The insights package's models: public surface and import contract (no Prophet at import)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import core.insights as analytics

ROOT = Path(__file__).resolve().parents[1]


def test_importing_analytics_loads_no_prophet_or_ui() -> None:
    code = (
        "import sys, core.insights, core.insights._forecast_model, core.insights._detect,"
        " core.insights._advise, core.insights._forecast_cache, core.insights._exhaustion\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in"
        " ('prophet', 'cmdstanpy', 'streamlit', 'altair'))\n"
        "print(','.join(bad))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == ""


def test_all_is_sorted_and_complete() -> None:
    names = analytics.__all__
    assert names == sorted(names)
    public = {
        n
        for n, v in vars(analytics).items()
        if not n.startswith("_") and getattr(v, "__module__", "").startswith("core.insights")
    }
    assert public <= set(names) and all(hasattr(analytics, n) for n in names)


def test_a_forecast_prints_nothing_to_stderr() -> None:
    """cmdstanpy logs INFO per fit and Prophet complains about plotly: both silenced."""
    code = (
        "import numpy as np, pandas as pd\n"
        "from core.insights import forecast_spend\n"
        "h = pd.DataFrame({'ds': pd.date_range('2024-01-01', periods=30),"
        " 'y': 10 + np.arange(30) % 7})\n"
        "print(forecast_spend(h, 7).method)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "prophet"
    assert out.stderr == ""
