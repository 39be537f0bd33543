"""Generate the demo history as numpy columns (seeded, no per-event Python), priced exactly.

Order of the steps follows one call through the router: who calls what (traffic), the
response cache and sampling gate, tokens, the budget guard (globex degrades, then is blocked,
near the end of a month), provider errors and retries, Costline's own rate limit, and
finally the price of every event at its UTC day's catalog rates.

Days, hours of the day and months are those of the configured time zone ``tz``: traffic is
drawn as local wall-clock time (working hours, weekdays, the incident's 08:00-23:30) and
turned into UTC, so the story holds in any zone, across DST changes too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from core.budgets import hard_cap
from core.control import Budget
from core.demo import _world as w
from core.demo._columns import Columns, append_rows, row_count
from core.importer import TOKEN_CLASSES, price_columns
from core.pricing import Catalog
from core.types import PICO

I64 = npt.NDArray[np.int64]
US_DAY = 86_400_000_000
US_HOUR = 3_600_000_000
OK, ERROR, BLOCKED, RATE_LIMITED, SKIPPED = range(5)
STATUSES = ("ok", "error", "blocked", "rate_limited", "skipped")


@dataclass
class Generated:
    cols: Columns  # numpy columns, one row per event, sorted by ts
    start: date
    end: date
    incident_day: date
    budget_usd: Decimal  # globex's monthly budget the budget guard enforced
    tz: str = "UTC"  # the zone of start, end, incident_day and the budget's months


def _pick(
    rng: np.random.Generator, rows: npt.NDArray[np.int64], table: npt.NDArray[np.float64]
) -> I64:
    """For each row r, an index drawn from the probabilities table[r]."""
    cdf = np.cumsum(table / table.sum(1, keepdims=True), axis=1)
    u = rng.random(len(rows))
    out: I64 = np.minimum((u[:, None] > cdf[rows]).sum(1), table.shape[1] - 1)
    return out


INCIDENT_AGO = 11  # days before the last day, give or take two (to land on a working day)


def _incident_day(end: date) -> date:
    """The Tuesday to Thursday nearest ``INCIDENT_AGO`` days before ``end``: 9 to 13 days
    ago whatever today's weekday, so the incident always lies within the alert worker's
    lookback (``core.worker._checks.LOOKBACK_DAYS``) and has weeks of baseline before it."""
    day = end - timedelta(days=INCIDENT_AGO)
    shift = {0: 1, 4: -1, 5: -2, 6: 2}.get(day.weekday(), 0)  # Mon->Tue, Fri/Sat->Thu, Sun->Tue
    return day + timedelta(days=shift)


def traffic(
    rng: np.random.Generator, people: np.random.Generator, start: date, days: int
) -> Columns:
    """Who calls which task and model, when. ``people`` draws the company (how active each
    user is, their projects) the same whatever the dates, so its story does too."""
    dates = np.arange(np.datetime64(start), np.datetime64(start) + days, dtype="datetime64[D]")
    dow = (dates.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    growth = 1 + w.GROWTH * np.arange(days) / max(days - 1, 1)
    mean = w.BASE_PER_DAY * growth * np.asarray(w.WEEKDAY)[dow] * rng.lognormal(0, 0.06, days)
    day = np.repeat(np.arange(days), rng.poisson(mean))
    n = len(day)
    hours = np.asarray(w.HOURS) / sum(w.HOURS)
    us = (
        dates[day].astype("datetime64[us]").astype(np.int64)
        + rng.choice(24, n, p=hours) * 3_600_000_000
        + rng.integers(0, 3_600_000_000, n)
    )
    orgs = list(w.ORGS)
    user_org = np.array([orgs.index(o) for _, o in w.USERS])
    activity = people.lognormal(0, 0.8, len(w.USERS))
    incident = [u for u, _ in w.USERS].index(w.INCIDENT_USER)
    activity[incident] = 2.0
    share = np.asarray(list(w.ORGS.values()))[user_org] * activity
    for o in range(len(orgs)):
        share[user_org == o] /= activity[user_org == o].sum()
    user = rng.choice(len(w.USERS), n, p=share / share.sum())
    home, second = _projects(people, user_org, incident)
    project = np.where(rng.random(n) < 0.8, home[user], second[user])
    mix = np.array([[p.tasks.get(t, 0.0) for t in w.TASK_NAMES] for p in w.PROJECTS])
    task = _pick(rng, project, mix)
    models = np.array([[t.models.get(m, 0.0) for m in w.MODELS] for t in w.TASKS])
    return {
        "day": day,
        "us": us,
        "user": user,
        "project": project,
        "task": task,
        "model": _pick(rng, task, models),
    }


def _projects(rng: np.random.Generator, user_org: I64, incident: int) -> tuple[I64, I64]:
    orgs = list(w.ORGS)
    home = np.zeros(len(user_org), np.int64)
    second = np.zeros(len(user_org), np.int64)
    for o, org in enumerate(orgs):
        mine = [i for i, p in enumerate(w.PROJECTS) if p.org == org]
        users = np.nonzero(user_org == o)[0]
        for k, u in enumerate(rng.permutation(users)):
            home[u] = mine[k % len(mine)]
            second[u] = mine[(k + 1) % len(mine)]
    home[incident] = [p.name for p in w.PROJECTS].index(w.INCIDENT_PROJECT)
    return home, second


def add_incident(rng: np.random.Generator, c: Columns, start: date, day: date) -> None:
    """A runaway agent loop: one user on one model, ~10x their daily spend, one working day."""
    user = [u for u, _ in w.USERS].index(w.INCIDENT_USER)
    model = w.MODELS.index(w.INCIDENT_MODEL)
    mine = (c["user"] == user) & (c["model"] == model)
    per_day = np.bincount(c["day"][mine], minlength=(day - start).days + 1)
    extra = max(60, int(np.median(per_day[per_day > 0]) * 6.5)) if mine.any() else 60
    begin = int(np.datetime64(day, "us").astype(np.int64)) + 8 * 3_600_000_000
    us = np.sort(begin + rng.integers(0, int(15.5 * 3_600_000_000), extra))
    append_rows(
        c,
        {
            "day": np.full(extra, (day - start).days),
            "us": us,
            "user": np.full(extra, user),
            "model": np.full(extra, model),
            "project": np.full(extra, [p.name for p in w.PROJECTS].index(w.INCIDENT_PROJECT)),
            "task": np.full(extra, w.TASK_NAMES.index("agent")),
            "incident": np.ones(extra, bool),
        },
    )


def tokens(rng: np.random.Generator, c: Columns, catalog: Catalog, end: date) -> None:
    n = row_count(c)
    t = [w.TASKS[i] for i in range(len(w.TASKS))]
    task, model = c["task"], c["model"]
    med_in, sig_in = np.array([x.prompt for x in t]), np.array([x.prompt_sigma for x in t])
    med_out, sig_out = np.array([x.output for x in t]), np.array([x.output_sigma for x in t])
    ctx = np.array([catalog.lookup(m, end).context_window for m in w.MODELS])
    max_out = np.array([min(8000, catalog.lookup(m, end).max_output_tokens) for m in w.MODELS])
    prompt = med_in[task] * np.exp(sig_in[task] * rng.standard_normal(n))
    prompt = np.where(c["incident"], prompt * 1.4, prompt)
    prompt = np.clip(prompt, 16, ctx[model] * 0.8).astype(np.int64)
    out = np.clip(
        med_out[task] * np.exp(sig_out[task] * rng.standard_normal(n)), 1, max_out[model]
    ).astype(np.int64)
    rows = [catalog.lookup(m, end) for m in w.MODELS]
    caches = np.array([r.cached_input < r.input for r in rows])
    writes = np.array([r.cache_write > r.input for r in rows])  # Anthropic-style cache writes
    share = np.array([x.prompt_cache for x in t])[task]
    reads = caches[model] & (rng.random(n) < share)
    cached = np.where(reads, (prompt * rng.uniform(0.3, 0.9, n)).astype(np.int64), 0)
    write = np.where(
        writes[model] & (rng.random(n) < 0.08),
        ((prompt - cached) * rng.uniform(0.3, 0.7, n)).astype(np.int64),
        0,
    )
    reasoning_model = np.array([m in w.REASONING_MODELS for m in w.MODELS])
    c["input_tokens"] = prompt - cached - write
    c["cached_input_tokens"] = cached
    c["cache_write_tokens"] = write
    c["output_tokens"] = out
    c["reasoning_tokens"] = np.where(
        reasoning_model[model], (out * rng.uniform(1, 4, n)).astype(np.int64), 0
    )


def gates(rng: np.random.Generator, c: Columns) -> None:
    """Response-cache hits, sampling skips, streaming and estimated usage."""
    n = row_count(c)
    task = c["task"]

    def share(attr: str) -> npt.NDArray[np.float64]:
        return np.array([getattr(x, attr) for x in w.TASKS])[task]

    c["cache_hit"] = (rng.random(n) < share("cache_hit")) & ~c["incident"]
    skipped = ~c["cache_hit"] & (rng.random(n) < share("skipped")) & ~c["incident"]
    c["status"] = np.where(skipped, SKIPPED, OK)
    c["streamed"] = ~c["cache_hit"] & ~skipped & (rng.random(n) < share("stream"))
    c["attempt"] = np.ones(n, np.int64)
    c["degraded"] = np.zeros(n, bool)
    c["requested"] = c["model"].copy()


def to_utc(wall: I64, tz: str) -> I64:
    """Local wall-clock microseconds in ``tz`` -> UTC microseconds. A time skipped by a DST
    change moves forward with it; a repeated one is taken the first time."""
    if tz == "UTC" or not len(wall):
        return wall
    zone = ZoneInfo(tz)
    first = int(wall.min()) // US_HOUR
    hours = (wall // US_HOUR - first).astype(np.int64)
    base = datetime(1970, 1, 1)
    offset = np.array(
        [
            ((base + timedelta(hours=first + h)).replace(tzinfo=zone).utcoffset() or timedelta())
            // timedelta(microseconds=1)
            for h in range(int(hours.max()) + 1)
        ],
        np.int64,
    )
    us: I64 = wall - offset[hours]
    return us


def price(c: Columns, catalog: Catalog) -> dict[str, I64]:
    days = (c["us"] // US_DAY).astype("datetime64[D]")  # UTC days, like core.pricing
    priced = price_columns(catalog, c["model"], w.MODELS, days, {k: c[k] for k in TOKEN_CLASSES})
    return priced.costs


def _total(costs: dict[str, I64]) -> I64:
    out: I64 = np.sum(np.stack(list(costs.values())), axis=0)
    return out


BUDGET_ID = f"demo-org-{w.BUDGET_ORG}-monthly"


def demo_budget(limit_usd: Decimal, tz: str = "UTC") -> Budget:
    """globex's monthly org budget, as stored in the control plane and as its history
    was generated (degrade past 100%, block past soft_multiplier x limit)."""
    return Budget(
        id=BUDGET_ID,
        name=w.BUDGET_NAME,
        scope="org",
        scope_value=w.BUDGET_ORG,
        limit_usd=limit_usd,
        soft_multiplier=w.SOFT_MULTIPLIER,
        action="degrade",
        degrade_to=w.DEGRADE_TO,
        timezone=tz,
    )


def _guard(
    c: Columns,
    catalog: Catalog,
    idx: I64,
    cost: I64,
    limit: int,
    dearer: npt.NDArray[np.bool_],
    soft: npt.NDArray[np.bool_],
    apply: bool,
) -> bool:
    """One month of globex calls (``idx``, in time order) under ``limit``: degrade soft calls
    to a cheaper model past 100%, block past the cap (125%). Returns whether anything was
    blocked."""
    prior = np.cumsum(cost[idx]) - cost[idx]
    deg = idx[(prior >= limit) & dearer[c["model"][idx]] & soft[idx]]
    new = cost.copy()
    if len(deg):
        sub = {k: v[deg].copy() for k, v in c.items()}
        sub["model"][:] = w.MODELS.index(w.DEGRADE_TO)
        sub["input_tokens"] += sub["cache_write_tokens"]
        sub["cache_write_tokens"][:] = 0
        sub["output_tokens"] += sub["reasoning_tokens"]
        sub["reasoning_tokens"][:] = 0
        new[deg] = _total(price(sub, catalog))
        if apply:
            for k in (
                "model",
                "input_tokens",
                "cache_write_tokens",
                "output_tokens",
                "reasoning_tokens",
            ):
                c[k][deg] = sub[k]
            c["degraded"][deg] = True
    prior = np.cumsum(new[idx]) - new[idx]
    cap = hard_cap(demo_budget(Decimal(limit) / PICO), limit)  # the cap does not depend on tz
    over = prior + new[idx] > cap  # the reservation would pass the cap
    first = int(np.argmax(over)) if over.any() else len(idx)
    blk = idx[first:]  # from the first refusal on, as the spend stops there
    prior[first:] = prior[first] if first < len(idx) else 0
    if apply:
        c["pct"][idx] = prior * 100 // limit
        c["prior"][idx] = prior
        c["estimate"][idx] = new[idx]
        c["status"][blk] = BLOCKED
        c["model"][blk] = c["requested"][blk]
        c["degraded"][blk] = False
    return bool(len(blk))


def budget(
    c: Columns, catalog: Catalog, start: date, end: date, until_now: npt.NDArray[np.bool_]
) -> Decimal:
    """globex's org budget: calls of normal or lower criticality degrade to the cheap model
    past 100% of the month's limit; past soft_multiplier x limit every call is blocked. The
    limit is the largest whole-dollar amount that still makes globex's last complete month hit
    both, so the block comes late in that month. Calls after now (``until_now`` False) are
    dropped later, so they take no part."""
    org = list(w.ORGS).index(w.BUDGET_ORG)
    user_org = np.array([list(w.ORGS).index(o) for _, o in w.USERS])
    mine = (user_org[c["user"]] == org) & ~c["cache_hit"] & (c["status"] == OK) & until_now
    cost = np.where(mine, _total(price(c, catalog)), 0)
    month = (np.datetime64(start) + c["day"]).astype("datetime64[M]")
    last_full = np.datetime64(end, "M") - 1
    full = (
        month == last_full
        if np.datetime64(start, "M") < last_full
        else (c["day"] >= c["day"].max() - 29)
    )
    spent = int(cost[full].sum())
    blend = {m: catalog.lookup(m, end).input + 3 * catalog.lookup(m, end).output for m in w.MODELS}
    dearer = np.array([blend[m] > blend[w.DEGRADE_TO] for m in w.MODELS])
    soft = np.isin(
        c["task"],
        [i for i, t in enumerate(w.TASKS) if t.criticality in ("normal", "low", "background")],
    )
    c["pct"] = np.zeros(row_count(c), np.int64)
    c["prior"] = np.zeros(row_count(c), np.int64)  # spend before the call (picodollars)
    c["estimate"] = np.zeros(row_count(c), np.int64)  # its cost, had it run
    order = np.argsort(c["us"], kind="stable")
    test = order[(mine & full)[order]]
    step = PICO
    lo, hi = 1, max(1, spent // step)  # blocking is monotone in the limit: bisect for the
    while lo < hi:  # largest limit that still blocks (late in the month)
        mid = (lo + hi + 1) // 2
        if _guard(c, catalog, test, cost, mid * step, dearer, soft, apply=False):
            lo = mid
        else:
            hi = mid - 1
    limit = lo * step
    for m in np.unique(month[mine]):
        _guard(
            c,
            catalog,
            order[(mine & (month == m))[order]],
            cost,
            limit,
            dearer,
            soft,
            apply=True,
        )
    return Decimal(limit) / PICO


def failures(rng: np.random.Generator, c: Columns) -> None:
    """Provider errors before a success (or three failed attempts), and Costline's own
    per-user rate limit turning away a few calls of the busiest users at peak hours."""
    n = row_count(c)
    calls = np.nonzero((c["status"] == OK) & ~c["cache_hit"])[0]
    failing = calls[rng.random(len(calls)) < 0.018]
    tries = rng.choice([1, 2, 3], len(failing), p=[0.75, 0.18, 0.07])
    kinds = rng.choice(len(w.ERRORS), len(failing), p=[e[1] for e in w.ERRORS])
    c["error"] = np.full(n, -1)
    extra = np.where(tries == 3, 2, tries)  # three failures: the call itself is the third
    src = np.repeat(failing, extra)
    attempt = np.concatenate([np.arange(1, k + 1) for k in extra]) if len(extra) else src
    back = rng.uniform(0.5, 4, len(src)) * 1e6 * (np.repeat(extra, extra) - attempt + 1)
    rows = {k: v[src].copy() for k, v in c.items()}
    rows["us"] = rows["us"] - back.astype(np.int64)
    rows["attempt"] = attempt
    rows["status"][:] = ERROR
    rows["error"] = np.repeat(kinds, extra)
    rows["streamed"][:] = False
    c["attempt"][failing] = tries + (tries < 3)
    c["status"][failing[tries == 3]] = ERROR
    c["error"][failing[tries == 3]] = kinds[tries == 3]
    c["attempt"][failing[tries == 3]] = 3
    busy = np.argsort(np.bincount(c["user"], minlength=len(w.USERS)))[-5:]
    hour = (c["wall"] // US_HOUR) % 24  # local peak hours
    limited = (
        np.isin(c["user"], busy)
        & (c["status"] == OK)
        & ~c["cache_hit"]
        & (hour >= 13)
        & (hour <= 16)
        & (rng.random(n) < 0.01)
    )
    c["status"][limited] = RATE_LIMITED  # refused before the budget guard could degrade
    c["attempt"][limited] = 0
    c["degraded"][limited] = False
    c["model"][limited] = c["requested"][limited]
    append_rows(c, rows)


def history(days: int, seed: int, now: datetime, catalog: Catalog, tz: str = "UTC") -> Generated:
    rng = np.random.default_rng(seed)
    people = np.random.default_rng([seed, 1])
    end = now.astimezone(ZoneInfo(tz)).date()
    start = end - timedelta(days=days - 1)
    c = traffic(rng, people, start, days)
    c["incident"] = np.zeros(row_count(c), bool)
    incident = _incident_day(end)
    if incident >= start:
        add_incident(rng, c, start, incident)
    c["wall"] = c["us"]  # local wall clock (hours of the day) ...
    c["us"] = to_utc(c["us"], tz)  # ... and the instant, from here on
    c["request"] = np.arange(row_count(c))
    tokens(rng, c, catalog, end)
    gates(rng, c)
    now_us = int(now.timestamp() * 1_000_000)  # the last day's calls up to now only
    limit = budget(c, catalog, start, end, c["us"] < now_us)
    failures(rng, c)
    keep = c["us"] < now_us
    order = np.argsort(c["us"][keep], kind="stable")
    cols = {k: v[keep][order] for k, v in c.items()}
    return Generated(cols, start, end, incident, limit, tz)
