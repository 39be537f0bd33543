"""The logged calls a replay sends, the spend carried into each budget window, and the request
each call becomes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from core.budgets import Window, window
from core.control import Budget, RoutingPolicy
from core.pricing import Catalog
from core.ratelimits import same_model
from core.types import ChatRequest, Message, Usage
from core.usage import Filters, UsageEvent

PROMPT_TOKENS = 64  # prompt text sent per replayed call, at most (see the package docstring)
FRAMING = 7  # count_messages of one user message: 3 + role + 3; each " a" is one token
TOKEN_COLUMNS = [
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
]
COLUMNS = [
    "request_id",
    "ts",
    "org",
    "project",
    "user",
    "task",
    "app",
    "tags",
    "provider",
    "model",
    "requested_model",
    "status",
    "attempt",
    *TOKEN_COLUMNS,
    "usage_estimated",
    "cost_picousd",
    "unpriced",
    "cache_hit",
    "ai_called",
    "degraded",
    "criticality",
    "key",
]
Canonical = Callable[[str], str]


@dataclass(frozen=True, slots=True)
class LoggedCall:
    """One logged request: its first event's time and who/what, its final outcome, the sum
    of its events' cost, and the usage of its answer (when it had one)."""

    request_id: str
    ts: datetime
    org: str | None
    project: str | None
    user: str | None
    task: str | None
    app: str | None
    tags: tuple[str, ...]
    model: str  # the model that answered (or was refused)
    ask_model: str  # the model the request asked for (before any budget degrade)
    status: str
    degraded: bool
    criticality: str
    usage: Usage
    cost_picousd: int
    replayable: bool
    key: str | None = None  # the gateway virtual key


def utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def read_events(source: Any, since: datetime, end: datetime) -> pd.DataFrame:
    """Events in [since, end), oldest first, with ``ts`` as aware UTC timestamps. ``source``:
    a ``core.usage.Reader``, a DataFrame of events, or an iterable of ``UsageEvent``."""
    if hasattr(source, "events") and hasattr(source, "data_version"):
        frame = source.events(Filters(start=since, end=end), COLUMNS, "ts", descending=False)
    elif isinstance(source, pd.DataFrame):
        frame = source.reindex(columns=COLUMNS)
    else:
        frame = pd.DataFrame(
            [{c: getattr(e, c) for c in COLUMNS} for e in source if isinstance(e, UsageEvent)],
            columns=COLUMNS,
        )
    frame = frame.assign(ts=pd.to_datetime(frame["ts"], utc=True))
    keep = (frame["ts"] >= pd.Timestamp(utc(since))) & (frame["ts"] < pd.Timestamp(utc(end)))
    out: pd.DataFrame = frame[keep].sort_values(["ts", "attempt"], kind="stable")
    return out.reset_index(drop=True)


def logged_calls(events: Any, start: datetime, end: datetime) -> list[LoggedCall]:
    """The requests whose first event is in [start, end), oldest first (``events``: anything
    ``read_events`` takes)."""
    frame = events if isinstance(events, pd.DataFrame) else read_events(events, start, end)
    frame = frame[frame["ts"] >= pd.Timestamp(utc(start))]
    if frame.empty:
        return []
    last = frame.drop_duplicates("request_id", keep="last")  # the outcome
    first = frame.drop_duplicates("request_id", keep="first").set_index("request_id")["ts"]
    cost = frame["cost_picousd"].fillna(0).astype("int64").groupby(frame["request_id"]).sum()
    col = {c: last[c].tolist() for c in COLUMNS}  # plain lists: fast to walk
    ids = col["request_id"]
    starts, costs = first.loc[ids].tolist(), cost.loc[ids].tolist()
    out = []
    for i in range(len(ids)):
        row = {c: values[i] for c, values in col.items()}
        out.append(_call(row, _datetime(starts[i]), int(costs[i] or 0)))
    return sorted(out, key=lambda c: c.ts)


def _call(row: dict[str, Any], ts: datetime, cost: int) -> LoggedCall:
    """A request from its last event (the outcome), first time and summed cost."""
    i, c, w, o, r = (int(row[name] or 0) for name in TOKEN_COLUMNS)
    usage = Usage(i, c, w, o, r, estimated=bool(row["usage_estimated"]))
    model = _s(row["model"]) or ""
    degraded = bool(row["degraded"])
    asked = (_s(row["requested_model"]) or model) if degraded else model
    status = str(row["status"])
    replayable = (
        status == "ok"
        and bool(row["ai_called"])
        and not bool(row["cache_hit"])
        and not bool(row["unpriced"])
        and bool(model)
    )
    tags = row["tags"]
    return LoggedCall(
        str(row["request_id"]),
        ts,
        _s(row["org"]),
        _s(row["project"]),
        _s(row["user"]),
        _s(row["task"]),
        _s(row["app"]),
        tuple(tags) if tags is not None and len(tags) else (),
        model,
        asked,
        status,
        degraded,
        _s(row["criticality"]) or "normal",
        usage,
        cost,
        replayable,
        _s(row["key"]),
    )


def _datetime(value: Any) -> datetime:
    return value.to_pydatetime() if isinstance(value, pd.Timestamp) else utc(value)


def _s(value: Any) -> str | None:
    return None if value is None or value is pd.NA or value != value else str(value)


def carry_in(
    events: pd.DataFrame,
    budgets: Sequence[Budget],
    start: datetime,
    canonical: Canonical | None = None,
) -> list[tuple[str, int, float]]:
    """(live-state key, amount, ttl) for the spend each budget's window already held at
    ``start``: the logged events in [window start, start) that the budget's scope matches."""
    start = utc(start)
    before = events[events["ts"] < pd.Timestamp(start)]
    out: list[tuple[str, int, float]] = []
    for b in budgets:
        win = window(b, start)
        if not b.enabled or win.start >= start:
            continue
        rows = before[(before["ts"] >= pd.Timestamp(win.start)) & _scope(before, b, canonical)]
        ttl = win.ttl_s(start)
        amounts = []
        if b.limit_picousd is not None:
            amounts.append((win.usd_key, sum(int(v) for v in rows["cost_picousd"].fillna(0))))
        if b.limit_tokens is not None:
            amounts.append((win.tokens_key, int(rows[TOKEN_COLUMNS].fillna(0).sum().sum())))
        for key, amount in amounts:
            if amount:
                out += [(key, amount, ttl), (Window.committed(key), amount, ttl)]
    return out


def _scope(rows: pd.DataFrame, b: Budget, canonical: Canonical | None) -> pd.Series:
    """Which rows a budget's scope matches (like ``core.budgets.matches``)."""
    if b.scope == "global":
        return pd.Series(True, index=rows.index)
    want = b.scope_value
    if want is None:
        return pd.Series(False, index=rows.index)
    if b.scope == "provider":
        return rows["provider"].astype(str).str.lower() == want.lower()
    if b.scope == "model":
        pairs = rows[["model", "provider"]].astype(str).drop_duplicates()
        hits = {
            (m, p) for m, p in pairs.itertuples(index=False) if same_model(want, m, p, canonical)
        }
        keys = pd.Series(
            list(zip(rows["model"].astype(str), rows["provider"].astype(str), strict=True)),
            index=rows.index,
        )
        return keys.isin(hits)
    return rows[b.scope] == want


def long_tier(catalog: Catalog) -> int:
    """The smallest prompt size above which some catalog model changes price tier."""
    return min(
        (r.above_prompt_tokens for r in catalog.rows() if r.above_prompt_tokens), default=2**62
    )


def request_for(
    call: LoggedCall,
    catalog: Catalog,
    policy: RoutingPolicy | None = None,
    *,
    whole_above: int | None = None,
) -> ChatRequest:
    """The request a replay sends for ``call`` (routed by ``policy`` when given)."""
    u = call.usage
    prompt, out = u.prompt_tokens, max(1, u.completion_tokens)
    model = policy.primary_model if policy is not None else call.ask_model
    sent = prompt
    tier = long_tier(catalog) if whole_above is None else whole_above
    if PROMPT_TOKENS < prompt <= tier and catalog.has(model):
        sent = PROMPT_TOKENS
        row = catalog.lookup(model, prompt_tokens=sent)
        per_out = max(row.output, row.reasoning)
        if per_out:  # the unsent prompt's price, as output tokens (ceiling division)
            out += -(-(prompt - sent) * row.input // per_out)
        if row.context_window:
            out = max(1, min(out, row.context_window - max(sent, FRAMING + 1)))
    return ChatRequest(
        messages=[Message("user", " a" * max(1, sent - FRAMING))],
        model=None if policy is not None else call.ask_model,
        task=call.task,
        max_tokens=out,
        org=call.org,
        project=call.project,
        user=call.user,
        app=call.app,
        key=call.key,
        criticality=call.criticality,  # type: ignore[arg-type]
        tags=call.tags,
        cache=False,
        source="replay",
        request_id=call.request_id,
    )
