"""The Budgets page's data: form values <-> Budget, the writes (as the signed-in Actor, checked
and audited by core), live utilisation from the usage log, and the what-if replay.

Utilisation is computed from the usage log (``Reader``) over each budget's current window
[start, end) and its scope, so it counts every router's calls - other processes, other hosts,
Redis or not - not just this process's live counters. After a "reset now" the window counts
from the reset (the audit log has its time).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import pandas as pd

from console import auth, data
from core.budgets import hard_cap, scope_text, window
from core.control import DEFAULT_THRESHOLDS, Actor, Budget, RoutingPolicy
from core.errors import ConfigError
from core.replay import ReplayResult, replay
from core.types import pico_to_usd

FIELDS = (
    "id",
    "name",
    "scope",
    "scope_value",
    "period",
    "limit_usd",
    "limit_tokens",
    "soft_multiplier",
    "thresholds",
    "action",
    "degrade_to",
    "timezone",
    "webhook_url",
    "enabled",
)
SCOPE_COLUMNS = {
    "org": "org",
    "project": "project",
    "user": "user",
    "task": "task",
    "key": "key",
}
TOKEN_COLUMNS = (
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
)
CENT = Decimal("0.01")
US = timedelta(microseconds=1)


def usd(pico: int) -> str:
    """'$93.10'; amounts under a cent keep up to six decimals ('$0.000042')."""
    d = pico_to_usd(int(pico))
    if d != 0 and abs(d) < CENT:
        text = f"{abs(d).quantize(Decimal('0.000001')).normalize():f}"
    else:
        text = f"{abs(d).quantize(CENT):,}"
    return ("-$" if d < 0 else "$") + text


# ---- form values <-> Budget ----------------------------------------------------------------


def form_values(b: Budget | None) -> dict[str, Any]:
    """A budget as the editor's widget values (text for numbers, so nothing is rounded)."""
    if b is None:
        return {
            "id": "",
            "name": "",
            "scope": "global",
            "scope_value": "",
            "period": "month",
            "limit_usd": "",
            "limit_tokens": "",
            "soft_multiplier": 2.0,
            "thresholds": ", ".join(map(str, DEFAULT_THRESHOLDS)),
            "action": "alert",
            "degrade_to": "",
            "timezone": "",
            "webhook_url": "",
            "enabled": True,
        }
    return {
        "id": b.id,
        "name": b.name,
        "scope": b.scope,
        "scope_value": b.scope_value or "",
        "period": b.period,
        "limit_usd": "" if b.limit_usd is None else str(b.limit_usd),
        "limit_tokens": "" if b.limit_tokens is None else str(b.limit_tokens),
        "soft_multiplier": float(b.soft_multiplier),
        "thresholds": ", ".join(str(t) for t in b.thresholds),
        "action": b.action,
        "degrade_to": b.degrade_to or "",
        "timezone": b.timezone or "",
        "webhook_url": b.webhook_url or "",
        "enabled": bool(b.enabled),
    }


def text_value(values: Mapping[Any, Any], name: str) -> str:
    value = values.get(name)
    return "" if value is None or value != value else str(value).strip()


def parse_usd(text: str, field: str) -> Decimal | None:
    if not text:
        return None
    try:
        return Decimal(text.replace(",", "").lstrip("$"))
    except InvalidOperation:
        raise ConfigError(f"{field}: must be a number of USD (got {text!r})", field=field) from None


def parse_int(text: str, field: str) -> int | None:
    if not text:
        return None
    try:
        return int(text.replace(",", "").replace("_", ""))
    except ValueError:
        raise ConfigError(f"{field}: must be a whole number (got {text!r})", field=field) from None


def parse_thresholds(text: str) -> tuple[int, ...]:
    parts = [p.strip().rstrip("%") for p in text.replace(";", ",").split(",") if p.strip()]
    try:
        return tuple(int(p) for p in parts)
    except ValueError:
        raise ConfigError(
            f"thresholds: write whole percentages such as 50, 75, 90, 100 (got {text!r})",
            field="thresholds",
        ) from None


def parse_budget(values: Mapping[Any, Any]) -> Budget:
    """Widget (or table) values -> Budget; a value that is not even a number raises
    ConfigError naming its field. Everything else is core's validation, at save time."""
    multiplier = values.get("soft_multiplier")
    try:
        soft = float(multiplier) if multiplier not in (None, "") else 2.0
    except (TypeError, ValueError):
        raise ConfigError("soft_multiplier: must be a number", field="soft_multiplier") from None
    return Budget(
        id=text_value(values, "id"),
        name=text_value(values, "name"),
        scope=text_value(values, "scope") or "global",
        scope_value=text_value(values, "scope_value") or None,
        period=text_value(values, "period"),
        limit_usd=parse_usd(text_value(values, "limit_usd"), "limit_usd"),
        limit_tokens=parse_int(text_value(values, "limit_tokens"), "limit_tokens"),
        soft_multiplier=soft,
        thresholds=parse_thresholds(text_value(values, "thresholds")),
        action=text_value(values, "action"),
        degrade_to=text_value(values, "degrade_to") or None,
        timezone=text_value(values, "timezone") or None,
        webhook_url=text_value(values, "webhook_url") or None,
        enabled=bool(values.get("enabled", True)),
    )


# ---- writes (core checks the Actor's role and audits) ------------------------------------


def save_budget(actor: Actor, values: Mapping[str, Any], *, new: bool) -> Budget:
    """Create (``new``) or update a budget from editor values."""
    budget = parse_budget(values)
    plane = auth.plane()
    if new and plane.budget(budget.id) is not None:
        raise ConfigError(
            f"id: a budget {budget.id!r} already exists; pick it to edit it", field="id"
        )
    return plane.upsert_budget(budget, actor)


def delete_budget(actor: Actor, budget_id: str) -> bool:
    return auth.plane().delete_budget(budget_id, actor)


def reset_budget(actor: Actor, budget_id: str) -> Budget:
    """Start a fresh window now (audited as budget.reset)."""
    return auth.plane().reset_budget(budget_id, actor)


# ---- live utilisation ----------------------------------------------------------------------


@dataclass(frozen=True)
class Utilisation:
    """One budget in its current window, from the usage log (money in picodollars)."""

    budget: Budget
    start: datetime  # window start, or the last reset in it
    end: datetime
    label: str
    spent_picousd: int
    tokens: int
    projected_picousd: int
    projected_tokens: int
    alerts: tuple[int, ...]

    @property
    def utilisation(self) -> float:
        return max(self.usd_share, self.token_share)

    @property
    def usd_share(self) -> float:
        limit = self.budget.limit_picousd
        return _share(self.spent_picousd, limit) if limit is not None else 0.0

    @property
    def token_share(self) -> float:
        limit = self.budget.limit_tokens
        return _share(self.tokens, limit) if limit is not None else 0.0

    @property
    def projected_share(self) -> float:
        shares = [
            _share(self.projected_picousd, self.budget.limit_picousd)
            if self.budget.limit_picousd is not None
            else 0.0,
            _share(self.projected_tokens, self.budget.limit_tokens)
            if self.budget.limit_tokens is not None
            else 0.0,
        ]
        return max(shares)

    @property
    def cap_picousd(self) -> int | None:
        """The most this window can spend: a blocking or degrading budget refuses every call
        past soft_multiplier x its limit (None: an alert-only or token-only budget)."""
        b = self.budget
        if b.action == "alert" or b.limit_picousd is None:
            return None
        return hard_cap(b, b.limit_picousd)

    @property
    def capped(self) -> bool:
        """True when the run rate would take the window past its cap (it stops there)."""
        cap = self.cap_picousd
        return cap is not None and self.projected_picousd > cap

    @property
    def projected_spend_picousd(self) -> int:
        """The projected spend, no higher than the cap."""
        cap = self.cap_picousd
        return min(self.projected_picousd, cap) if cap is not None else self.projected_picousd

    def text(self) -> str:
        parts = []
        if self.budget.limit_picousd is not None:
            parts.append(f"{usd(self.spent_picousd)} of {usd(self.budget.limit_picousd)}")
        if self.budget.limit_tokens is not None:
            parts.append(f"{self.tokens:,} of {self.budget.limit_tokens:,} tokens")
        return " · ".join(parts) + f" ({self.utilisation:.0%})"


def _share(value: int, limit: int | None) -> float:
    if not limit:
        return 0.0 if value <= 0 else float("inf")
    return value / limit


def _reset_times(budgets: Sequence[Budget]) -> dict[str, datetime]:
    """When each reset budget was last reset (from the audit log)."""
    out: dict[str, datetime] = {}
    for b in budgets:
        if b.reset_generation:
            hits = [
                e
                for e in auth.plane().audit(limit=50, entity="budget", entity_id=b.id)
                if e.action == "budget.reset"
            ]
            if hits:
                out[b.id] = hits[0].ts if hits[0].ts.tzinfo else hits[0].ts.replace(tzinfo=UTC)
    return out


def _condition(b: Budget, canonical: Any) -> tuple[str, list[object]]:
    """SQL condition of a budget's scope over the events view (values as ? parameters)."""
    if b.scope == "global":
        return "TRUE", []
    if b.scope_value is None:
        return "FALSE", []
    if b.scope in SCOPE_COLUMNS:
        return f'"{SCOPE_COLUMNS[b.scope]}" = ?', [b.scope_value]
    if b.scope == "provider":
        return "lower(provider) = lower(?)", [b.scope_value]
    names = sorted({b.scope_value, canonical(b.scope_value)})
    return f"model IN ({', '.join('?' * len(names))})", list(names)


@data.cached
def utilisation(
    home: str, version: str, plane_version: int, budgets: tuple[Budget, ...], now: datetime
) -> list[Utilisation]:
    """Every budget's spend in its current window (one scan of the log), projected to the
    window's end at the rate so far, with the thresholds alerted this window."""
    if not budgets:
        return []
    from console.pricing_data import catalog

    cat = catalog()

    def canonical(m: str) -> str:
        return cat.canonical(m) if cat.has(m) else m

    resets = _reset_times(budgets)
    spans = []
    for b in budgets:
        w = window(b, now)
        spans.append((max(w.start.astimezone(UTC), resets.get(b.id, w.start)), w))
    tokens = " + ".join(f"coalesce({c}, 0)" for c in TOKEN_COLUMNS)
    cols, params = [], []
    for i, (b, (start, w)) in enumerate(zip(budgets, spans, strict=True)):
        cond, cond_params = _condition(b, canonical)
        where = f"ts >= ? AND ts < ? AND {cond}"
        cols.append(
            f"CAST(coalesce(sum(cost_picousd) FILTER (WHERE {where}), 0) AS VARCHAR)"
            f" AS c{i}, coalesce(sum({tokens}) FILTER (WHERE {where}), 0) AS t{i}"
        )
        params += [start, w.end, *cond_params, start, w.end, *cond_params]
    lo = min(s for s, _ in spans)
    hi = max(w.end for _, w in spans)
    sql = f"SELECT {', '.join(cols)} FROM events WHERE ts >= ? AND ts < ?"
    row = data.reader().sql(sql, [*params, lo, hi]).iloc[0]
    fired: dict[tuple[str, str], set[int]] = {}
    for a in auth.plane().alerts(since=lo, limit=10_000):
        if a.kind == "budget":
            fired.setdefault((a.budget_id, a.window_key), set()).add(a.threshold_pct)
    out = []
    for i, (b, (start, w)) in enumerate(zip(budgets, spans, strict=True)):
        spent, used = int(row[f"c{i}"]), int(row[f"t{i}"])
        elapsed, length = (now - start) // US, (w.end - start) // US
        label = w.label
        out.append(
            Utilisation(
                b,
                start,
                w.end,
                label,
                spent,
                used,
                _project(spent, elapsed, length),
                _project(used, elapsed, length),
                tuple(sorted(fired.get((b.id, label), ()))),
            )
        )
    return out


def _project(value: int, elapsed_us: int, length_us: int) -> int:
    """The window's end value at the rate so far (integer arithmetic)."""
    if value <= 0 or elapsed_us <= 0:
        return value
    return value * length_us // elapsed_us


def utilisation_now() -> datetime:
    return datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)


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
                "limit": "" if u.budget.limit_picousd is None else usd(u.budget.limit_picousd),
                "token limit": u.budget.limit_tokens,
                "spent": usd(u.spent_picousd),
                "used": f"{u.utilisation:.0%}",
                "projected": usd(u.projected_spend_picousd) + (" (capped)" if u.capped else ""),
                "run rate": usd(u.projected_picousd),
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


# ---- what-if replay ------------------------------------------------------------------------

PROPOSAL_COLUMNS = [
    "id",
    "name",
    "scope",
    "scope_value",
    "period",
    "limit_usd",
    "limit_tokens",
    "action",
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


def budgets_from_frame(frame: pd.DataFrame) -> list[Budget]:
    """The edited proposal table -> Budgets, each checked by core's validation; an error names
    the row and the field."""
    from console.pricing_data import catalog
    from core.control import validate_budget

    out = []
    cat = catalog()
    for i, values in enumerate(frame.to_dict("records"), start=1):
        if not any(text_value(values, c) for c in ("id", "name", "limit_usd", "limit_tokens")):
            continue  # an empty row the editor added
        try:
            out.append(validate_budget(parse_budget(values), model_exists=cat.has))
        except ConfigError as exc:
            raise ConfigError(
                f"row {i} ({text_value(values, 'id') or 'no id'}): {exc}", field=exc.field
            ) from None
    return out


def run_replay(
    start: datetime, end: datetime, budgets: Sequence[Budget], policies: Sequence[RoutingPolicy]
) -> ReplayResult:
    """Replay the logged calls of [start, end) under the proposal (nothing is written)."""
    from console.pricing_data import catalog

    return replay(data.reader(), start, end, budgets, policies, catalog=catalog())


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
    ).astype({"what happened": str, "with the proposal": str})


def usd_amount(amount: Decimal) -> str:
    return usd(int(amount * 10**12))


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
            "cost then": [usd(int(v)) for v in hit["cost_actual_picousd"]],
            "cost with proposal": [usd(int(v)) for v in hit["cost_replayed_picousd"]],
            "difference": [usd(int(v)) for v in hit["difference_picousd"]],
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
        cost_then=[usd(int(v)) for v in changed["cost_actual_picousd"].head(limit)],
        cost_replayed=[usd(int(v)) for v in changed["cost_replayed_picousd"].head(limit)],
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
