"""Anomalies: an injected runaway loop is found and attributed; flat data reports nothing."""

from __future__ import annotations

import math
from datetime import date

import numpy as np
import pandas as pd
import pytest

from core.errors import ConfigError
from core.insights import (
    attribute_anomaly,
    detect,
    detect_iqr,
    detect_mad,
    detect_prophet,
    scan,
)
from core.insights import (
    attribute_events as attribute,
)

PICO = 10**12
DAY0 = pd.Timestamp("2025-01-01", tz="UTC")
INCIDENT_DAY = 45


def usage_events(days: int = 60, seed: int = 0, incident: bool = True) -> pd.DataFrame:
    """One event per (org, user, model, day); acme-u3 runs away on gpt-4o on INCIDENT_DAY."""
    rng = np.random.default_rng(seed)
    rows = []
    for org in ("acme", "globex", "initech"):
        for u in range(8):
            user = f"{org}-u{u}"
            base = rng.uniform(1.0, 3.0)
            for d in range(days):
                weekly = 1.0 + 0.25 * math.sin(2 * math.pi * d / 7)
                for model, share in (("gpt-4o", 1.0), ("gpt-4o-mini", 0.2)):
                    usd = base * share * weekly * rng.lognormal(0.0, 0.1)
                    if incident and (org, u, model, d) == ("acme", 3, "gpt-4o", INCIDENT_DAY):
                        usd *= 10
                    rows.append(
                        {
                            "ts": DAY0 + pd.Timedelta(days=d, hours=int(rng.integers(0, 24))),
                            "org": org,
                            "project": "p",
                            "user": user,
                            "task": "chat" if u % 2 else "summarize",
                            "model": model,
                            "provider": "openai",
                            "status": "ok",
                            "cost_picousd": int(usd * PICO),
                            "latency_ms": 500.0,
                            "cache_hit": False,
                        }
                    )
    return pd.DataFrame(rows)


def daily_by_org(events: pd.DataFrame) -> pd.DataFrame:
    day = events["ts"].dt.floor("D")
    out = events.groupby([day, "org"])["cost_picousd"].sum() / PICO
    return out.rename("value").reset_index().rename(columns={"ts": "ds", "org": "key"})


@pytest.mark.parametrize("method", ["mad", "iqr"])
def test_runaway_loop_is_found_and_attributed(method: str) -> None:
    events = usage_events()
    found = scan(daily_by_org(events), method)
    assert len(found) == 1, found
    a = found[0]
    assert a.key == "acme" and a.method == method and a.freq == "D"
    assert a.ts == DAY0 + pd.Timedelta(days=INCIDENT_DAY)  # tz-aware in, tz-aware out
    assert a.ratio > 1.5 and a.excess_usd > 10 and a.score > {"mad": 3.5, "iqr": 2.0}[method]
    dims = ("user", "model", "task", ("user", "model"))
    a = attribute_anomaly(events, a, key_dim="org", dims=dims)
    top = {}
    for c in a.contributors:
        top.setdefault(c.dim, c)
    assert top["user"].value == "acme-u3" and top["user"].share > 0.8
    assert top["model"].value == "gpt-4o"
    assert top["user+model"].value == "acme-u3 / gpt-4o"
    runaway = (
        events[
            (events["user"] == "acme-u3")
            & (events["model"] == "gpt-4o")
            & (events["ts"].dt.floor("D") == DAY0 + pd.Timedelta(days=INCIDENT_DAY))
        ]["cost_picousd"].sum()
        / PICO
    )
    assert top["user+model"].spend_usd == pytest.approx(runaway)
    assert top["user+model"].excess_usd == pytest.approx(runaway * 0.9, rel=0.15)


def test_no_incident_no_anomalies() -> None:
    assert scan(daily_by_org(usage_events(incident=False))) == []


@pytest.mark.parametrize("method", ["mad", "iqr"])
def test_flat_series_report_nothing(method: str) -> None:
    idx = pd.date_range("2024-01-01", periods=365, freq="D")
    rng = np.random.default_rng(1)
    for values in (
        np.full(365, 100.0),
        100.0 + rng.normal(0, 1e-6, 365),
        100.0 * (1 + rng.normal(0, 0.001, 365)),
        np.zeros(365),
    ):
        assert detect(pd.Series(values, index=idx), method) == []


def test_zero_mad_guard_still_finds_a_real_spike() -> None:
    idx = pd.date_range("2024-01-01", periods=120, freq="D")
    values = np.full(120, 100.0)
    values[90] = 300.0
    found = detect_mad(pd.Series(values, index=idx), key="acme")
    assert [(a.ts, a.key) for a in found] == [(idx[90], "acme")]
    assert math.isfinite(found[0].score) and found[0].expected == 100.0
    assert found[0].ratio == pytest.approx(3.0) and found[0].excess_usd == pytest.approx(200.0)
    zeros = np.zeros(120)
    zeros[100] = 5.0
    series = pd.Series(zeros, index=idx)
    assert len(detect_mad(series)) == 1 and math.isinf(detect_mad(series)[0].ratio)
    assert detect_mad(series, min_excess=10.0) == []


def test_drops_only_when_asked() -> None:
    idx = pd.date_range("2024-01-01", periods=60, freq="D")
    values = np.full(60, 100.0)
    values[50] = 10.0
    series = pd.Series(values, index=idx)
    assert detect_iqr(series) == [] and detect_mad(series) == []
    found = detect_mad(series, direction="both")
    assert len(found) == 1 and found[0].score < 0 and found[0].excess_usd == pytest.approx(-90)
    assert len(detect_iqr(series, direction="both")) == 1


def test_hourly_series_uses_hourly_windows() -> None:
    idx = pd.date_range("2024-03-01", periods=24 * 30, freq="h")
    hours = np.arange(len(idx))
    rng = np.random.default_rng(2)
    values = 10 + 5 * np.sin(2 * np.pi * hours / 24) + rng.normal(0, 0.3, len(idx))
    values[24 * 20 + 13] += 40
    found = detect_mad(pd.Series(values, index=idx))
    assert [a.ts for a in found] == [idx[24 * 20 + 13]] and found[0].freq == "h"


def test_scan_matches_per_key_detection_and_skips_new_keys_start() -> None:
    idx = pd.date_range("2024-01-01", periods=200, freq="D")
    rng = np.random.default_rng(3)
    parts = []
    for k in range(4):
        v = 50 + 10 * np.sin(np.arange(200) * 2 * np.pi / 7) + rng.normal(0, 2, 200)
        v[40 + 30 * k] *= 3
        parts.append(pd.DataFrame({"ds": idx, "key": f"k{k}", "value": v}))
    late = pd.DataFrame({"ds": idx[150:], "key": "new", "value": 500.0})
    frame = pd.concat([*parts, late], ignore_index=True)
    found = scan(frame)
    assert {(a.key, a.ts) for a in found} == {(f"k{k}", idx[40 + 30 * k]) for k in range(4)}
    for k, part in enumerate(parts):
        single = detect(part[["ds", "value"]], key=f"k{k}")
        assert [(a.ts, a.score) for a in single] == [
            (a.ts, a.score) for a in found if a.key == f"k{k}"
        ]


def test_prophet_residual_detector() -> None:
    idx = pd.date_range("2024-01-01", periods=84, freq="D")
    t = np.arange(84)
    rng = np.random.default_rng(4)
    values = 100 + 0.2 * t + 15 * np.sin(2 * np.pi * t / 7) + rng.normal(0, 1.0, 84)
    values[70] *= 2
    found = detect_prophet(pd.Series(values, index=idx))
    assert [a.ts for a in found] == [idx[70]] and found[0].method == "prophet"
    assert found[0].expected == pytest.approx(values[70] / 2, rel=0.1)


def test_attribute_by_hand() -> None:
    rows = []
    for d in range(5):
        ts = pd.Timestamp("2025-02-01") + pd.Timedelta(days=d, hours=9)
        rows.append({"ts": ts, "user": "a", "model": "m1", "cost_picousd": 1 * PICO})
        b = 12 if d == 4 else 2
        rows.append({"ts": ts, "user": "b", "model": "m2", "cost_picousd": b * PICO})
    ev = pd.DataFrame(rows)
    out = attribute(
        ev,
        date(2025, 2, 5),
        date(2025, 2, 6),
        date(2025, 2, 1),
        date(2025, 2, 5),
        dims=("user", "model"),
    )
    assert [(c.dim, c.value) for c in out] == [("user", "b"), ("model", "m2")]
    b = out[0]
    assert (b.spend_usd, b.expected_usd, b.excess_usd, b.share) == (12.0, 2.0, 10.0, 1.0)
    with pytest.raises(ConfigError):
        attribute(ev, date(2025, 2, 5), date(2025, 2, 5), date(2025, 2, 1), date(2025, 2, 5))
    with pytest.raises(ConfigError):
        attribute(
            ev,
            date(2025, 2, 5),
            date(2025, 2, 6),
            date(2025, 2, 1),
            date(2025, 2, 5),
            dims=("org",),
        )


def test_bad_arguments() -> None:
    frame = pd.DataFrame({"ds": pd.date_range("2024-01-01", periods=5), "value": 1.0})
    with pytest.raises(ConfigError):
        scan(frame, "zscore")
    with pytest.raises(ConfigError):
        scan(frame, direction="down")
    assert scan(frame.iloc[:0]) == []


def test_local_days_across_a_dst_change_stay_daily() -> None:
    idx = pd.date_range("2024-03-01", periods=60, freq="D", tz="Europe/Paris")  # 31 Mar: 23 h
    values = np.full(60, 10.0)
    values[50] = 40.0
    found = detect_mad(pd.Series(values, index=idx))
    assert [(a.ts, a.freq) for a in found] == [(idx[50], "D")]
