"""Routing and sampling figures from the usage log (console Routing & Sampling page,
``GET /api/v1/sampling/stats`` and the alert worker's operational checks)."""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from core.usage import Reader


def sampling_savings(reader: Reader, start: datetime, end: datetime) -> pd.DataFrame:
    """Per task in [start, end): events, real calls, skipped calls and what skipping saved
    (exact picodollars, from the 'skipped' events' saved_picousd)."""
    sql = (
        "SELECT task AS key, count(*) AS events, count(*) FILTER (WHERE ai_called) AS calls,"
        " count(*) FILTER (WHERE status = 'skipped') AS skipped,"
        " CAST(coalesce(sum(saved_picousd) FILTER (WHERE status = 'skipped'), 0) AS VARCHAR)"
        " AS saved_picousd FROM events WHERE ts >= ? AND ts < ? AND task IS NOT NULL"
        " GROUP BY task ORDER BY task"
    )
    df = reader.sql(sql, [start, end])
    df["saved_picousd"] = pd.Series([int(v) for v in df["saved_picousd"]], dtype=object)
    return df


def provider_health(reader: Reader, start: datetime, end: datetime) -> pd.DataFrame:
    """Per provider and model in [start, end): attempts that reached the provider, errors,
    error rate and latency p50/p95 of the answered ones (cache hits and Costline's own
    refusals - blocked, rate_limited, skipped - are not provider calls)."""
    sql = (
        "SELECT provider, model, count(*) AS attempts,"
        " count(*) FILTER (WHERE status = 'error') AS errors,"
        " quantile_cont(latency_ms, 0.5) FILTER (WHERE status = 'ok') AS p50_ms,"
        " quantile_cont(latency_ms, 0.95) FILTER (WHERE status = 'ok') AS p95_ms"
        " FROM events WHERE ts >= ? AND ts < ? AND ai_called AND NOT cache_hit"
        " AND status IN ('ok', 'error') GROUP BY ALL ORDER BY attempts DESC, provider, model"
    )
    df = reader.sql(sql, [start, end])
    df["error_rate"] = (df["errors"] / df["attempts"]).where(df["attempts"] > 0)
    return df
