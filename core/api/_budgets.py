"""Budgets: CRUD with ETags, live status (utilisation, projection, alerts) and reset."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from core import clock, reports
from core.api._alerts import alerts_json
from core.api._entities import Entity, entity_ops
from core.api._http import ApiError, Call, Json, Op, Param, Reply, money
from core.api._schemas import field, obj
from core.control import Budget, ControlPlane

BUDGETS = Entity(
    name="budget",
    label="budget",
    path="/budgets",
    key="id",
    cls=Budget,
    all=lambda p: p.budgets(),
    upsert=lambda p, b, a: p.upsert_budget(b, a),
    delete=lambda p, k, a: p.delete_budget(k, a),
    tag="budgets",
    money=("limit_usd",),
    fixed=("reset_generation",),
    post=True,
    secrets=("webhook_url",),
)


def _budget(plane: ControlPlane, budget_id: str) -> Budget:
    found = plane.budget(budget_id)
    if found is None:
        raise ApiError(404, f"no budget {budget_id!r}")
    return found


def status_json(u: reports.Utilisation) -> dict[str, Any]:
    exhausts = u.exhausts_at()
    return {
        "budget_id": u.budget.id,
        "window": u.label,
        "window_start": u.start,
        "window_end": u.end,
        "spent_usd": money(u.spent_picousd),
        "limit_usd": money(u.budget.limit_picousd),
        "tokens": u.tokens,
        "limit_tokens": u.budget.limit_tokens,
        "utilisation": round(u.utilisation, 6),
        "projected_usd": money(u.projected_spend_picousd),
        "projected_run_rate_usd": money(u.projected_picousd),
        "projected_tokens": u.projected_tokens,
        "projected_utilisation": round(u.projected_share, 6),
        "capped": u.capped,
        "exhausts_at": exhausts,
        "thresholds": list(u.budget.thresholds),
        "alerts_fired": list(u.alerts),
        "unpriced": u.unpriced,  # calls with no price in the window: in no spend figure
    }


def status(call: Call) -> Json:
    plane = call.ctx.plane
    b = _budget(plane, call.path["id"])
    now = clock.now().replace(second=0, microsecond=0) + timedelta(minutes=1)
    (u,) = reports.utilisation(call.ctx.reader, plane, [b], now, call.ctx.canonical)
    out = status_json(u)
    alerts = plane.alert_page(kinds=["budget"], subject=b.id, limit=50)
    out["alerts"] = alerts_json(plane, alerts)  # as GET /alerts shows them: money in USD
    return out


def reset(call: Call) -> Reply:
    """Start a fresh window now (If-Match: the budget's ETag)."""
    plane = call.ctx.plane
    _budget(plane, call.path["id"])

    with plane.expect(lambda before: BUDGETS.check(call, before)):
        after = plane.reset_budget(call.path["id"], call.actor)
    return BUDGETS.reply(call, after)


ID = Param("id", {"type": "string"}, where="path", required=True)
OPS = [
    *entity_ops(BUDGETS),
    Op(
        "GET",
        "/budgets/{id}/status",
        status,
        "Utilisation in the current window, run-rate projection and alerts",
        "budgets",
        params=(ID,),
        response=obj(
            spent_usd="money",
            limit_usd="money",
            utilisation="number",
            projected_usd="money",
            exhausts_at=field("datetime", nullable=True),
            unpriced="integer",
            alerts="array",
        ),
    ),
    Op(
        "POST",
        "/budgets/{id}/reset",
        reset,
        "Reset the budget's window now (If-Match required; audited)",
        "budgets",
        params=(ID,),
        entity="budget",
        etag=True,
    ),
]
