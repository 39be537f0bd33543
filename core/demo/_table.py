"""Generated columns -> an Arrow table of the usage SCHEMA: prices, latencies, the texts."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from core.budgets import exceeded, hard_cap, window
from core.demo import _world as w
from core.demo._generate import (
    BLOCKED,
    ERROR,
    OK,
    RATE_LIMITED,
    SKIPPED,
    STATUSES,
    Generated,
    demo_budget,
    price,
)
from core.importer import COST_COLUMNS, TOKEN_CLASSES
from core.pricing import Catalog
from core.usage import SCHEMA

DEMO_PREFIX = "demo-"  # request ids and segment names
SKIP_REASONS = {
    "classify": "change_based: signal moved less than 5%",
    "agent": "adaptive: interval not elapsed",
}
RATE_LIMIT_ID = "demo-user-rpm"


def _strings(values: npt.NDArray[Any]) -> pa.Array:
    return pa.array(values, pa.string())


def _lookup(names: list[str], codes: npt.NDArray[np.int64]) -> pa.Array:
    return pa.DictionaryArray.from_arrays(
        pa.array(codes, pa.int32()), pa.array(names, pa.string())
    ).cast(pa.string())


def _latency(
    rng: np.random.Generator,
    c: dict[str, npt.NDArray[Any]],
    n: int,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    base = np.array([w.LATENCY[m][0] for m in w.MODELS], float)[c["model"]]
    per = np.array([w.LATENCY[m][1] for m in w.MODELS], float)[c["model"]]
    prompt = c["input_tokens"] + c["cached_input_tokens"] + c["cache_write_tokens"]
    gen = c["output_tokens"] + c["reasoning_tokens"]
    lat = (base + per * gen + prompt / 40) * rng.lognormal(0, 0.3, n)
    ttft = base * rng.lognormal(0, 0.25, n) + prompt / 100
    status, err = c["status"], c["error"]
    lat = np.where(c["cache_hit"], rng.uniform(2, 15, n), lat)
    lat = np.where(status == SKIPPED, rng.uniform(0.2, 2, n), lat)
    lat = np.where((status == BLOCKED) | (status == RATE_LIMITED), rng.uniform(1, 5, n), lat)
    for k, (_, _, _, (lo, hi)) in enumerate(w.ERRORS):
        lat = np.where((status == ERROR) & (err == k), rng.uniform(lo, hi, n), lat)
    streamed = c["streamed"] & (status == OK) & ~c["cache_hit"]
    first: npt.NDArray[np.float64] = np.where(streamed, np.round(np.minimum(ttft, lat), 1), np.nan)
    return np.round(lat, 1).astype(np.float64), first


def _reasons(c: dict[str, npt.NDArray[Any]], n: int) -> npt.NDArray[Any]:
    m, t, req = c["model"], c["task"], c["requested"]
    primary = np.array([w.MODELS.index(next(iter(x.models))) for x in w.TASKS])
    table = np.array(
        [
            [
                f"{mo}: task policy {ta.name}"
                if w.MODELS.index(mo) == primary[j]
                else f"{mo}: requested"
                for j, ta in enumerate(w.TASKS)
            ]
            for mo in w.MODELS
        ],
        object,
    )
    out = table[m, t]
    hits = np.array([f"{mo}: response cache hit" for mo in w.MODELS], object)
    out = np.where(c["cache_hit"], hits[m], out)
    skip = np.array(
        [
            f"sampling {x.name} ({SKIP_REASONS.get(x.name, 'skipped')}): reused the last answer"
            for x in w.TASKS
        ],
        object,
    )
    out = np.where(c["status"] == SKIPPED, skip[t], out)
    for i in np.nonzero(c["degraded"])[0]:
        out[i] = (
            f"{w.DEGRADE_TO}: org={w.BUDGET_ORG} at {c['pct'][i]}% of monthly budget "
            f"'{w.BUDGET_NAME}', degraded from {w.MODELS[req[i]]}"
        )
    refused = (c["status"] == BLOCKED) | (c["status"] == RATE_LIMITED)
    out[refused] = None
    result: npt.NDArray[Any] = out
    return result


def _errors(
    c: dict[str, npt.NDArray[Any]], providers: list[str], users: list[str], limit_usd: str, tz: str
) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    n = len(c["status"])
    kind = np.full(n, None, object)
    text = np.full(n, None, object)
    for i in np.nonzero(c["status"] == ERROR)[0].tolist():
        name, _, template, _ = w.ERRORS[c["error"][i]]
        kind[i] = name
        text[i] = template.format(
            model=w.MODELS[c["model"][i]], provider=providers[c["model"][i]], retry=1 + i % 20
        )
    budget = demo_budget(Decimal(limit_usd), tz)
    limit = budget.limit_picousd or 0
    cap = hard_cap(budget, limit)
    for i in np.nonzero(c["status"] == BLOCKED)[0].tolist():  # the guard's own message
        kind[i] = "BudgetExceeded"
        at = datetime.fromtimestamp(int(c["us"][i]) / 1e6, UTC)
        text[i] = exceeded(
            budget,
            window(budget, at),
            "usd",
            int(c["prior"][i]),
            limit,
            cap,
            int(c["estimate"][i]),
            cap,
        )
    for i in np.nonzero(c["status"] == RATE_LIMITED)[0].tolist():
        kind[i] = "RateLimitExceeded"
        text[i] = f"rate limit {RATE_LIMIT_ID}: {users[c['user'][i]]} over 60 requests per 60 s"
    return kind, text


def to_table(g: Generated, seed: int, catalog: Catalog) -> pa.Table:
    c, n = g.cols, len(g.cols["us"])
    rng = np.random.default_rng([seed, 2])
    status, hit = c["status"], c["cache_hit"]
    costs = price(c, catalog)
    total = np.sum(np.stack(list(costs.values())), axis=0)
    billed = (status == OK) & ~hit
    no_tokens = (status != OK) & ~hit  # skipped, failed, blocked and limited calls
    providers = [catalog.provider_of(m) for m in w.MODELS]
    users = [u for u, _ in w.USERS]
    estimating = np.array([p in w.ESTIMATING_PROVIDERS for p in providers])[c["model"]]
    latency, ttft = _latency(rng, c, n)
    kind, text = _errors(c, providers, users, str(g.budget_usd), g.tz)
    ids = pc.binary_join_element_wise(
        f"{DEMO_PREFIX}{seed}-", pc.utf8_lpad(pa.array(c["request"]).cast(pa.string()), 7, "0"), ""
    )
    task_crit = [t.criticality for t in w.TASKS]
    cols: dict[str, pa.Array] = {
        "request_id": ids,
        "ts": pa.array(c["us"], pa.timestamp("us", tz="UTC")),
        "org": _lookup([o for _, o in w.USERS], c["user"]),
        "project": _lookup([p.name for p in w.PROJECTS], c["project"]),
        "user": _lookup(users, c["user"]),
        "task": _lookup(list(w.TASK_NAMES), c["task"]),
        "app": _lookup([f"{p.name}-prod" for p in w.PROJECTS], c["project"]),
        "tags": pa.ListArray.from_arrays(
            pa.array(np.zeros(n + 1, np.int32)), pa.array([], pa.string())
        ),
        "provider": _lookup(providers, c["model"]),
        "model": _lookup(list(w.MODELS), c["model"]),
        "requested_model": _lookup(list(w.MODELS), c["requested"]),
        "status": _lookup(list(STATUSES), status),
        "error_type": _strings(kind),
        "error_message": _strings(text),
        "attempt": pa.array(c["attempt"], pa.int32()),
        **{k: pa.array(np.where(no_tokens, 0, c[k])) for k in TOKEN_CLASSES},
        "usage_estimated": pa.array(billed & c["streamed"] & estimating & (c["request"] % 10 < 3)),
        "cost_picousd": pa.array(np.where(billed, total, 0)),
        **{k: pa.array(np.where(billed, costs[k], 0)) for k in COST_COLUMNS},
        "saved_picousd": pa.array(np.where(hit | (status == SKIPPED), total, 0)),
        "unpriced": pa.repeat(pa.scalar(False), n),
        "latency_ms": pa.array(latency),
        "ttft_ms": pa.array(ttft, from_pandas=True),
        "cache_hit": pa.array(hit),
        "ai_called": pa.array((status == OK) | (status == ERROR)),
        "degraded": pa.array(c["degraded"]),
        "route_reason": _strings(_reasons(c, n)),
        "criticality": _lookup(task_crit, c["task"]),
        "source": pa.repeat(pa.scalar("demo"), n),
        "metadata": pa.repeat(pa.scalar("{}"), n),
    }
    arrays = [cols[f.name].cast(f.type) if f.name in cols else pa.nulls(n, f.type) for f in SCHEMA]
    return pa.Table.from_arrays(arrays, schema=SCHEMA)
