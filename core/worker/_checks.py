"""What a scan looks for. Each check returns ``Found`` alerts; the control plane records
each (kind, subject, window, threshold) once, so scanning again - here or in another
process - finds the same alerts and records nothing new.

    | kind            | subject            | window               | fires when                     |
    |-----------------|--------------------|----------------------|--------------------------------|
    | budget          | budget id          | the budget's window  | spend reaches a threshold      |
    | forecast        | budget id          | the budget's window  | the run rate exhausts it early |
    | anomaly         | org=x / model=x    | local day            | unusual spend or calls         |
    | error_rate      | provider=x         | UTC hour             | errors > threshold (5 %)       |
    | cache_hit_rate  | task=x             | UTC hour             | hits < threshold (50 %)        |
    | latency         | provider=x,model=y | UTC hour             | p95 > threshold                |

Queue depth is not applicable: no call path queues requests (the Router, the gateway and
the console call providers directly; rate limits answer 429), so there is no depth to
read (see docs/alerts.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from core import insights, reports
from core.budgets import reached
from core.control import Budget, ControlPlane
from core.types import pico_to_usd, usd_places
from core.usage import Reader
from core.worker._settings import AlertSettings

US = timedelta(microseconds=1)


@dataclass(frozen=True)
class Found:
    kind: str
    subject: str
    window_key: str
    threshold_pct: int
    message: str
    title: str
    spent_picousd: int | None = None
    limit_picousd: int | None = None
    spent_tokens: int | None = None
    limit_tokens: int | None = None
    severity: str | None = None
    notify: bool = True  # False: recorded, not sent (an old anomaly found in history)


CENT = Decimal("0.01")


def _usd(pico: int) -> str:
    """Exact dollars to the cent, half a cent up (as the console's tables show them)."""
    return usd_places(pico_to_usd(pico))


def budget_checks(
    reader: Reader,
    plane: ControlPlane,
    budgets: list[Budget],
    now: datetime,
    canonical: Callable[[str], str],
) -> list[Found]:
    out: list[Found] = []
    live = [b for b in budgets if b.enabled]
    for u in reports.utilisation(reader, plane, live, now, canonical):
        b = u.budget
        for pct in sorted(b.thresholds):
            usd = b.limit_picousd is not None and reached(u.spent_picousd, b.limit_picousd, pct)
            tok = b.limit_tokens is not None and reached(u.tokens, b.limit_tokens, pct)
            if usd or tok:
                spent = (
                    f"{_usd(u.spent_picousd)} of {_usd(b.limit_picousd or 0)}"
                    if usd
                    else f"{u.tokens:,} of {b.limit_tokens:,} tokens"
                )
                out.append(
                    Found(
                        "budget",
                        b.id,
                        u.label,
                        pct,
                        f"Budget '{b.name}' reached {pct}% in window {u.label}: {spent}",
                        f"Budget '{b.name}' reached {pct}%",
                        spent_picousd=u.spent_picousd,
                        limit_picousd=b.limit_picousd,
                        spent_tokens=u.tokens,
                        limit_tokens=b.limit_tokens,
                    )
                )
        at = u.exhausts_at()
        if at is not None:
            out.append(
                Found(
                    "forecast",
                    b.id,
                    u.label,
                    0,
                    f"Budget '{b.name}' is on course to run out on {at:%Y-%m-%d %H:%M} UTC, "
                    f"before its window {u.label} ends ({_usd(u.spent_picousd)} of "
                    f"{_usd(b.limit_picousd or 0)} spent; run rate projects "
                    f"{_usd(u.projected_picousd)})",
                    f"Budget '{b.name}' projected to run out",
                    spent_picousd=u.spent_picousd,
                    limit_picousd=b.limit_picousd,
                )
            )
    return out


LOOKBACK_DAYS = 14  # anomalies of these last days are recorded...
NOTIFY_DAYS = 2  # ...and those of these last days are also sent (history pages no one)


def anomaly_checks(reader: Reader, tz: str, now: datetime, dims: tuple[str, ...]) -> list[Found]:
    """Anomalies of the last ``LOOKBACK_DAYS`` local days, one alert per series and day (the
    lead finding speaks for its daily and hourly findings)."""
    today = insights.local_today(tz, now)
    since = insights.local_midnight(today - timedelta(days=LOOKBACK_DAYS), tz)
    findings = insights.scan_usage(reader, dims=dims, tz=tz, since=since, now=now)
    out = []
    for (subject, day), group in sorted(insights.by_series_day(findings).items()):
        lead = insights.lead(group)
        spent = insights.exact_spent(lead)
        out.append(
            Found(
                "anomaly",
                subject,
                day,
                0,
                insights.alert_message(group),
                f"Costline: unusual {lead.metric} on {subject}",
                spent_picousd=spent,
                notify=(today - lead.ts.date()).days <= NOTIFY_DAYS,
            )
        )
    return out


def ops_checks(reader: Reader, plane: ControlPlane, s: AlertSettings, now: datetime) -> list[Found]:
    """Error rate, cache hit rate and p95 latency over the last ``window_minutes``."""
    start = now - timedelta(minutes=int(s.threshold("window_minutes")))
    window = now.strftime("%Y-%m-%dT%H")
    least = int(s.threshold("min_requests"))
    out: list[Found] = []
    max_err = float(s.threshold("error_rate_pct"))
    sql = (
        "SELECT provider, count(*) AS calls, count(*) FILTER (WHERE status = 'error') AS errors"
        " FROM events WHERE ts >= ? AND ts < ? AND ai_called AND NOT coalesce(cache_hit, false)"
        " AND status IN ('ok', 'error') GROUP BY provider ORDER BY provider"
    )
    for r in reader.sql(sql, [start, now]).to_dict("records"):
        calls, errors = int(r["calls"]), int(r["errors"])
        if calls >= least and errors * 100 > max_err * calls:
            out.append(
                Found(
                    "error_rate",
                    f"provider={r['provider']}",
                    window,
                    int(max_err),
                    f"{errors} of {calls} calls to {r['provider']} failed in the last "
                    f"{s.threshold('window_minutes')} minutes ({errors / calls:.1%}, "
                    f"threshold {max_err:g}%)",
                    f"Errors on {r['provider']}: {errors / calls:.1%}",
                )
            )
    out += _cache_checks(reader, plane, s, start, now, window, least)
    max_p95 = float(s.threshold("latency_p95_ms"))
    health = reports.provider_health(reader, start, now)
    for r in health.to_dict("records"):
        p95 = r["p95_ms"]  # of the answered calls: they must be min_requests, not the attempts
        answered = int(r["attempts"]) - int(r["errors"])
        if answered >= least and p95 is not None and p95 == p95 and p95 > max_p95:
            out.append(
                Found(
                    "latency",
                    f"provider={r['provider']},model={r['model']}",
                    window,
                    0,
                    f"p95 latency of {r['model']} on {r['provider']} is {p95:,.0f} ms over the "
                    f"last {s.threshold('window_minutes')} minutes (threshold {max_p95:,.0f} ms)",
                    f"Slow {r['model']}: p95 {p95:,.0f} ms",
                )
            )
    return out


def _cache_checks(
    reader: Reader,
    plane: ControlPlane,
    s: AlertSettings,
    start: datetime,
    now: datetime,
    window: str,
    least: int,
) -> list[Found]:
    cached = {c.task for c in plane.cache_settings() if c.enabled}
    cached |= {p.task for p in plane.policies() if p.cache_ttl_s}
    if not cached:
        return []
    floor = float(s.threshold("cache_hit_min_pct"))
    tasks = sorted(cached)
    marks = ", ".join("?" * len(tasks))
    sql = (
        "SELECT task, count(*) AS calls, count(*) FILTER (WHERE cache_hit) AS hits FROM events"
        f" WHERE ts >= ? AND ts < ? AND task IN ({marks}) AND status IN ('ok', 'error')"
        " GROUP BY task ORDER BY task"
    )
    out = []
    for r in reader.sql(sql, [start, now, *tasks]).to_dict("records"):
        calls, hits = int(r["calls"]), int(r["hits"])
        if calls >= least and hits * 100 < floor * calls:
            out.append(
                Found(
                    "cache_hit_rate",
                    f"task={r['task']}",
                    window,
                    int(floor),
                    f"cache hit rate of task {r['task']} is {hits / calls:.1%} over the last "
                    f"{s.threshold('window_minutes')} minutes ({hits} of {calls}; "
                    f"threshold {floor:g}%)",
                    f"Low cache hit rate on {r['task']}: {hits / calls:.1%}",
                )
            )
    return out
