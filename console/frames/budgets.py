"""The Budgets page's tables: where each budget stands, the what-if proposal table and the
replay's comparison, with money as USD text (exact, from picodollars)."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import pandas as pd

from console.inputs.budgets import form_values
from core.budgets import scope_text
from core.control import Budget
from core.replay import ReplayResult
from core.reports import percent_text
from core.types import pico_to_usd

if TYPE_CHECKING:  # queries use Streamlit's cache; frames stay pure
    from console.queries.budgets import Baseline, Utilisation

CENT = Decimal("0.01")


def usd(pico: int) -> str:
    """'$93.10'; amounts under a cent keep up to six decimals ('$0.000042')."""
    d = pico_to_usd(int(pico))
    if d != 0 and abs(d) < CENT:
        text = f"{abs(d).quantize(Decimal('0.000001')).normalize():f}"
    else:
        text = f"{abs(d).quantize(CENT, rounding=ROUND_HALF_UP):,}"
    return ("-$" if d < 0 else "$") + text


def cents(pico: int) -> str:
    """Table money: '$1,234.57' to the cent; a non-zero amount under half a cent reads
    '<$0.01' (never '$0.00'), a negative one '-<$0.01'. More digits only on a per-call
    detail."""
    d = pico_to_usd(int(pico))
    value = abs(d).quantize(CENT, rounding=ROUND_HALF_UP)
    if d != 0 and value == 0:
        return "-<$0.01" if d < 0 else "<$0.01"
    return ("-$" if d < 0 and value else "$") + f"{value:,}"


SEVERITY = {
    "ok": ("green", "on track"),
    "warning": ("orange", "near the limit"),
    "critical": ("red", "over the limit"),
}


def severity_text(u: Utilisation) -> str:
    """'on track' / 'near the limit' / 'over the limit', from the projected share."""
    return SEVERITY[u.severity][1]


def severity_markdown(u: Utilisation) -> str:
    """The severity as coloured markdown (amber from 80 % projected, red from 100 %)."""
    colour, text = SEVERITY[u.severity]
    return f":{colour}[**{text.capitalize()}**]"


def runs_out(u: Utilisation) -> str:
    """When the USD limit is reached at the projection's run rate, in the budget's zone."""
    b = u.budget
    if b.limit_picousd is None:
        return "no USD limit"
    if u.spent_picousd >= b.limit_picousd:
        return "already reached"
    at = u.exhausts_at()
    if at is None:
        return "not this window"
    return f"{at.astimezone(ZoneInfo(b.timezone or 'UTC')):%d %b %Y}"


def status_frame(rows: Sequence[Utilisation]) -> pd.DataFrame:
    """The budgets table a viewer sees: every field and where each budget stands."""
    return pd.DataFrame(
        [
            {
                "id": u.budget.id,
                "name": u.budget.name,
                "scope": scope_text(u.budget),
                "period": u.budget.period,
                "window": u.label,
                "action": u.budget.action,
                "limit": "" if u.budget.limit_picousd is None else cents(u.budget.limit_picousd),
                "token limit": ""
                if u.budget.limit_tokens is None
                else f"{u.budget.limit_tokens:,}",
                "spent": cents(u.spent_picousd),
                "used": percent_text(u.used_percent),
                "projected": cents(u.projected_spend_picousd) + (" (capped)" if u.capped else ""),
                "projected share": percent_text(u.projected_percent),
                "outlook": severity_text(u),
                "runs out": runs_out(u),
                "run rate": cents(u.projected_picousd),
                "thresholds": ", ".join(map(str, u.budget.thresholds)),
                "alerted": ", ".join(f"{t}%" for t in u.alerts) or "–",
                "degrade to": u.budget.degrade_to or "",
                "soft ×": u.budget.soft_multiplier,
                "time zone": u.budget.timezone,
                "webhook": "yes" if u.budget.webhook_url else "",
                "enabled": u.budget.enabled,
            }
            for u in rows
        ]
    )


PINNED = ("change", "id", "action")  # the proposal table's and its changes' pinned columns
PROPOSAL_COLUMNS = [  # id and action first: pinned, in view however far the table scrolls
    "id",
    "action",
    "name",
    "scope",
    "scope_value",
    "period",
    "limit_usd",
    "limit_tokens",
    "degrade_to",
    "soft_multiplier",
    "thresholds",
    "timezone",
    "enabled",
]


def proposal_frame(budgets: Sequence[Budget]) -> pd.DataFrame:
    rows = [{k: v for k, v in form_values(b).items() if k in PROPOSAL_COLUMNS} for b in budgets]
    return pd.DataFrame(rows, columns=PROPOSAL_COLUMNS).astype(
        {c: object for c in PROPOSAL_COLUMNS if c not in ("soft_multiplier", "enabled")}
    )


def compare_frame(r: ReplayResult) -> pd.DataFrame:
    """What happened beside what the proposal would have done."""
    ok_actual = int((r.details["status_actual"] == "ok").sum())
    ok_replayed = int((r.details["status_replayed"] == "ok").sum())
    return pd.DataFrame(
        {
            "": ["calls answered", "degraded", "blocked", "rate limited", "cost (USD)"],
            "what happened": [
                ok_actual,
                r.degraded_actual,
                r.blocked_actual,
                r.rate_limited_actual,
                usd_amount(r.cost_actual),
            ],
            "with the proposal": [
                ok_replayed,
                r.degraded,
                r.blocked,
                r.rate_limited,
                usd_amount(r.cost_replayed),
            ],
        }
    ).map(lambda v: f"{v:,}" if isinstance(v, int) else v)


def usd_amount(amount: Decimal) -> str:
    return cents(int(amount * 10**12))


def group_frame(frame: pd.DataFrame, key: str) -> pd.DataFrame:
    """by_user / by_project for display: affected rows, money as USD text."""
    hit = frame[(frame["degraded"] + frame["blocked"] + frame["rate_limited"]) > 0]
    return pd.DataFrame(
        {
            key: hit[key],
            "calls": hit["calls"],
            "degraded": hit["degraded"],
            "blocked": hit["blocked"],
            "rate limited": hit["rate_limited"],
            "cost then": [cents(int(v)) for v in hit["cost_actual_picousd"]],
            "cost with proposal": [cents(int(v)) for v in hit["cost_replayed_picousd"]],
            "difference": [cents(int(v)) for v in hit["difference_picousd"]],
        }
    )


def changed_calls(details: pd.DataFrame, limit: int = 500) -> pd.DataFrame:
    """The replayed calls whose outcome changed (model, status or degrade), first ``limit``."""
    d = details[details["replayed"].astype(bool)]
    changed = d[
        (d["status_actual"] != d["status_replayed"])
        | (d["model_actual"] != d["model_replayed"])
        | (d["degraded_actual"] != d["degraded_replayed"])
    ]
    return changed.head(limit).assign(
        cost_then=[cents(int(v)) for v in changed["cost_actual_picousd"].head(limit)],
        cost_replayed=[cents(int(v)) for v in changed["cost_replayed_picousd"].head(limit)],
    )[
        [
            "ts",
            "user",
            "project",
            "task",
            "model_actual",
            "status_actual",
            "model_replayed",
            "status_replayed",
            "cost_then",
            "cost_replayed",
            "reason",
        ]
    ]


def utilisation_text(u: Utilisation) -> str:
    """'$1.20 of $5.00 · 1,200 of 10,000 tokens (24%)'; with calls logged unpriced in the
    window, '· 3 unpriced calls (cost unknown, not in the spend)' (never counted as $0)."""
    parts = []
    if u.budget.limit_picousd is not None:
        parts.append(f"{usd(u.spent_picousd)} of {usd(u.budget.limit_picousd)}")
    if u.budget.limit_tokens is not None:
        parts.append(f"{u.tokens:,} of {u.budget.limit_tokens:,} tokens")
    text = " · ".join(parts) + f" ({percent_text(u.used_percent)})"
    if u.unpriced:
        calls = "call" if u.unpriced == 1 else "calls"
        text += f" · {u.unpriced:,} unpriced {calls} (cost unknown, not in the spend)"
    return text


def baseline_text(b: Baseline) -> str:
    """'Replaying the unchanged configuration gives X degraded vs Y logged, … because …'."""
    r = b.result
    head = (
        f"Replaying the unchanged configuration gives {r.degraded:,} degraded vs"
        f" {r.degraded_actual:,} logged, {r.blocked:,} blocked vs {r.blocked_actual:,},"
        f" {r.rate_limited:,} rate-limited vs {r.rate_limited_actual:,}"
    )
    why = []
    skipped = r.calls - r.replayed
    if r.blocked_actual or r.rate_limited_actual or skipped:
        why.append(
            f"{skipped:,} of the {r.calls:,} calls are not replayed (the log's blocked,"
            " rate-limited and failed calls, cache hits and sampling skips never reached a"
            " model: they keep their logged outcome, so the replay cannot block them again)"
        )
    if b.config_changes:
        why.append(
            f"budgets, policies or rate limits changed {b.config_changes:,} time(s) during the"
            " period: the log ran under the configuration of its day, the replay under today's"
        )
    if not b.routed:
        why.append(
            "calls keep the model they asked for (tick 'Route each task by these policies'"
            " to route and degrade them as the policies do)"
        )
    if not b.rate_limits and r.rate_limited_actual:
        why.append("no rate limit is configured today")
    if not why:
        return head + ": the replay reproduces the log."
    return head + " because " + "; ".join(why) + "."


EDITED = "background-color: #fff3c4"  # amber: a cell changed from today's budget
ADDED = "background-color: #d9f2e4"  # green: a row the proposal adds


def proposal_changes(
    base: pd.DataFrame, edits: dict[str, Any] | None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The edited rows of a proposal (``st.data_editor``'s state: edited/added/deleted rows)
    as a frame with a 'change' column, and a same-shaped frame of cell styles marking what
    changed (edited cells amber, added rows green)."""
    edits = edits or {}
    rows, styles = [], []
    for i, changed in sorted((int(k), v) for k, v in edits.get("edited_rows", {}).items()):
        if i >= len(base):
            continue
        row = {**base.iloc[i].to_dict(), **changed, "change": "edited"}
        rows.append(row)
        styles.append({c: EDITED if c in changed else "" for c in row})
    for added in edits.get("added_rows", []):
        row = {**{c: None for c in base.columns}, **added, "change": "added"}
        rows.append(row)
        styles.append({c: ADDED for c in row})
    for i in sorted(int(i) for i in edits.get("deleted_rows", [])):
        if i < len(base):
            rows.append({**base.iloc[i].to_dict(), "change": "deleted"})
            styles.append({c: "text-decoration: line-through" for c in rows[-1]})
    cols = ["change", *base.columns]
    return pd.DataFrame(rows, columns=cols), pd.DataFrame(styles, columns=cols).fillna("")
