"""Demo entries in the control plane: budgets, routing policies, sampling strategies and rate
limits sized from the generated history, and their removal.

Budgets and rate limits have ids starting with ``demo-``. Policies and sampling strategies
are keyed by task, a name real traffic may share: the demo creates one only where none
exists, records what it stored, and on removal deletes it only if nobody has changed it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import date, datetime, time, timedelta
from decimal import ROUND_CEILING, Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import pyarrow as pa

from core.control import Actor, Budget, ControlPlane, RateLimit, RoutingPolicy, SamplingStrategy
from core.demo import _world as w
from core.demo._alerts import history_alerts
from core.demo._generate import Generated, demo_budget
from core.demo._table import DEMO_PREFIX, RATE_LIMIT_ID
from core.types import PICO


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Decimal):
        return str(value)
    return value


def _usd(pico: float, factor: float, step: int = 10) -> Decimal:
    """A round limit: pico * factor, rounded up to ``step`` dollars (at least ``step``)."""
    usd = Decimal(int(pico)) * Decimal(str(factor)) / PICO
    return max(Decimal(step), (usd / step).to_integral_value(ROUND_CEILING) * step)


def budgets(table: pa.Table, g: Generated) -> list[Budget]:
    df = table.select(["ts", "org", "project", "user", "model", "cost_picousd"]).to_pandas()
    df["day"] = df["ts"].dt.tz_convert(g.tz).dt.date  # local days, like the budgets'
    recent = df[df["ts"] >= df["ts"].max() - timedelta(days=30)]
    org = recent.groupby("org")["cost_picousd"].sum()
    daily = df.groupby(["project", "day"])["cost_picousd"].sum()
    support = daily.loc["support-bot"] if "support-bot" in daily.index else pd.Series([0])
    user = df[(df["user"] == w.INCIDENT_USER) & (df["day"] != g.incident_day)]
    user_day = user.groupby("day")["cost_picousd"].sum().median() if len(user) else 0
    model = recent[recent["model"] == w.INCIDENT_MODEL]["cost_picousd"].sum()
    name = w.INCIDENT_USER.split("@")[0]
    return [
        Budget(
            id="demo-org-acme-monthly",
            name="Demo: acme monthly",
            scope="org",
            scope_value="acme",
            limit_usd=_usd(org.get("acme", 0), 1.25, 50),
        ),
        demo_budget(g.budget_usd, g.tz),
        Budget(
            id="demo-org-initech-monthly",
            name="Demo: initech monthly",
            scope="org",
            scope_value="initech",
            limit_usd=_usd(org.get("initech", 0), 1.4, 50),
        ),
        Budget(
            id="demo-project-support-bot-daily",
            name="Demo: support-bot daily",
            scope="project",
            scope_value="support-bot",
            period="day",
            limit_usd=_usd(float(support.quantile(0.9)), 1.2, 1),
        ),
        Budget(
            id=f"demo-user-{name}-daily",
            name=f"Demo: {name} daily (after the agent loop)",
            scope="user",
            scope_value=w.INCIDENT_USER,
            period="day",
            limit_usd=_usd(float(user_day), 3, 5),
            action="block",
        ),
        Budget(
            id=f"demo-model-{w.INCIDENT_MODEL}-monthly",
            name=f"Demo: {w.INCIDENT_MODEL} monthly",
            scope="model",
            scope_value=w.INCIDENT_MODEL,
            limit_usd=_usd(model, 1.3, 50),
        ),
    ]


def policies() -> list[RoutingPolicy]:
    out = []
    for t in w.TASKS:
        primary, *rest = list(t.models)
        out.append(
            RoutingPolicy(
                task=t.name,
                primary_model=primary,
                fallbacks=tuple(rest[:2]),
                degrade_to=None if primary == w.DEGRADE_TO else w.DEGRADE_TO,
                criticality=t.criticality,
                strategy="balanced" if t.name == "chat" else "explicit",
            )
        )
    return out


SAMPLING = (
    SamplingStrategy("classify", "change_based", {"threshold": 0.05}),
    SamplingStrategy("agent", "adaptive", {"min_interval_s": 30.0, "max_interval_s": 300.0}),
)
RATE_LIMITS = (
    RateLimit(RATE_LIMIT_ID, scope="user", metric="requests", limit=60, window_s=60),
    RateLimit("demo-org-tpm", scope="org", metric="tokens", limit=2_000_000, window_s=60),
)


def seed(plane: ControlPlane, actor: Actor, table: pa.Table, g: Generated) -> dict[str, Any]:
    """Create the demo entries; returns the manifest that ``unseed`` needs."""
    made: dict[str, Any] = {"budgets": [], "rate_limits": [], "policies": {}, "sampling": {}}
    stored = [plane.upsert_budget(b, actor) for b in budgets(table, g)]
    made["budgets"] = [b.id for b in stored]
    name = w.INCIDENT_USER.split("@")[0]  # that budget came after the agent loop
    after = {
        f"demo-user-{name}-daily": datetime.combine(
            g.incident_day + timedelta(days=1), time(), ZoneInfo(g.tz)
        )
    }
    for a in history_alerts(table, stored, after):  # what the guard would have fired
        plane.record_alert(
            a.budget_id,
            a.window_key,
            a.pct,
            message=a.message,
            spent_picousd=a.spent_picousd,
            limit_picousd=a.limit_picousd,
            actor=actor,
            ts=a.ts,
        )
    for r in RATE_LIMITS:
        made["rate_limits"].append(plane.upsert_rate_limit(r, actor).id)
    taken = {p.task for p in plane.policies()}
    for p in policies():
        if p.task not in taken:
            made["policies"][p.task] = _plain(plane.upsert_policy(p, actor))
    keys = {s.key for s in plane.sampling()}
    for s in SAMPLING:
        if s.key not in keys:
            made["sampling"][s.key] = _plain(plane.upsert_sampling(s, actor))
    return made


def demo_alerts(plane: ControlPlane, span: tuple[date, date] | None) -> list[int]:
    """Ids of the demo budgets' alerts, and of anomaly alerts on days the demo covers (found
    in data that held the demo's)."""
    out = []
    for a in plane.alerts(limit=1_000_000):
        if a.kind == "budget" and a.budget_id.startswith(DEMO_PREFIX):
            out.append(a.id)
        elif a.kind == "anomaly" and span is not None:
            day = a.window_key[:10]
            if span[0].isoformat() <= day <= span[1].isoformat():
                out.append(a.id)
    return out


def unseed(
    plane: ControlPlane,
    actor: Actor,
    manifest: Mapping[str, Any] | None,
    span: tuple[date, date] | None = None,
) -> int:
    """Delete the demo entries (unchanged task-keyed ones only) and the alerts of the demo
    (see ``demo_alerts``; ``span``: its first and last day); returns how many entries."""
    removed = 0
    demo = [b.id for b in plane.budgets() if b.id.startswith(DEMO_PREFIX)]
    plane.delete_alerts(demo_alerts(plane, span), actor)
    for budget_id in demo:
        removed += plane.delete_budget(budget_id, actor)
    for r in plane.rate_limits():
        if r.id.startswith(DEMO_PREFIX):
            removed += plane.delete_rate_limit(r.id, actor)
    manifest = manifest or {}
    for p in plane.policies():
        if manifest.get("policies", {}).get(p.task) == _plain(p):
            removed += plane.delete_policy(p.task, actor)
    for s in plane.sampling():
        if manifest.get("sampling", {}).get(s.key) == _plain(s):
            removed += plane.delete_sampling(s.key, actor)
    return removed
