"""replay(): the proposal in a throwaway control plane, the calls through a real Router."""

from __future__ import annotations

import contextlib
import secrets
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from core import clock
from core.budgets import BudgetGuard, window
from core.control import SYSTEM, Actor, Budget, ControlPlane, RateLimit, RoutingPolicy
from core.controls import Controls
from core.errors import CostlineError
from core.pricing import Catalog, load_catalog
from core.providers import Provider, ProviderResult
from core.providers.base import StreamItem
from core.replay._calls import (
    LoggedCall,
    carry_in,
    logged_calls,
    long_tier,
    read_events,
    request_for,
    utc,
)
from core.replay._result import ReplayResult, build
from core.retry import RetryPolicy
from core.settings import ProviderConfig, Settings
from core.state import MemoryState
from core.types import ChatRequest, Usage
from core.usage import UsageLog

MAX_CALLS = 100_000  # about a month of the demo's traffic
ADMIN = Actor("replay", "admin")
RESULT_COLUMNS = [
    "request_id",
    "status",
    "model",
    "cost_picousd",
    "degraded",
    "route_reason",
    "error_message",
]


class ReplayProvider(Provider):
    """Answers each call with the logged usage of the request it replays (by request id)."""

    wire = "replay"

    def __init__(self, name: str, usages: Mapping[str, Usage]) -> None:
        super().__init__(ProviderConfig(name, "dryrun"))
        self.usages = usages

    def complete(self, req: ChatRequest, model: str) -> ProviderResult:
        return ProviderResult("", self.usages.get(req.request_id, Usage()), "stop", model)

    def stream(self, req: ChatRequest, model: str) -> Iterator[StreamItem]:
        yield self.complete(req, model)


def replay(
    reader_or_events: Any,
    start: datetime,
    end: datetime,
    budgets: Sequence[Budget],
    policies: Sequence[RoutingPolicy] = (),
    *,
    catalog: Catalog | None = None,
    rate_limits: Sequence[RateLimit] = (),
    max_calls: int = MAX_CALLS,
) -> ReplayResult:
    """Replay the calls logged in [start, end) under ``budgets``, ``policies`` and
    ``rate_limits`` (the proposal replaces whatever is configured today). An invalid proposal
    raises ``ConfigError`` naming the field before anything is replayed. ``reader_or_events``:
    a ``core.usage.Reader``, a DataFrame of events or an iterable of ``UsageEvent``."""
    t0 = time.perf_counter()
    start, end = utc(start), utc(end)
    catalog = catalog or load_catalog()
    with tempfile.TemporaryDirectory(prefix="costline-replay-") as tmp:
        home = Path(tmp)
        plane = _sandbox(home, catalog, budgets, policies, rate_limits)
        try:
            stored = plane.budgets()
            since = min([window(b, start).start for b in stored if b.enabled] + [start])
            events = read_events(reader_or_events, since, end)
            calls = logged_calls(events, start, end)
            note = ""
            if len(calls) > max_calls:
                note = (
                    f"Replayed the first {max_calls:,} of {len(calls):,} calls (up to "
                    f"{calls[max_calls - 1].ts:%Y-%m-%d %H:%M} UTC): narrow the period to "
                    "replay the rest."
                )
                calls = calls[:max_calls]
            canonical = _canonical(catalog)
            seed = carry_in(events, stored, start, canonical)
            got = _run(home, plane, calls, {p.task: p for p in policies}, catalog, seed)
        finally:
            plane.close()
    return build(calls, got, note, time.perf_counter() - t0)


def _canonical(catalog: Catalog) -> Any:
    return lambda m: catalog.canonical(m) if catalog.has(m) else m


def _sandbox(
    home: Path,
    catalog: Catalog,
    budgets: Sequence[Budget],
    policies: Sequence[RoutingPolicy],
    rate_limits: Sequence[RateLimit],
) -> ControlPlane:
    """A throwaway control plane holding the proposal, written by a temp admin."""
    plane = ControlPlane(f"sqlite:///{home / 'control.db'}", model_exists=catalog.has)
    try:
        plane.create_user(ADMIN.username, secrets.token_urlsafe(12), ADMIN.role, SYSTEM)
        for b in budgets:  # no webhooks from a what-if; windows start un-reset
            plane.upsert_budget(replace(b, webhook_url=None, reset_generation=0), ADMIN)
        for p in policies:
            plane.upsert_policy(p, ADMIN)
        for r in rate_limits:
            plane.upsert_rate_limit(r, ADMIN)
    except BaseException:
        plane.close()
        raise
    return plane


def _run(
    home: Path,
    plane: ControlPlane,
    calls: Sequence[LoggedCall],
    policies: Mapping[str, RoutingPolicy],
    catalog: Catalog,
    seed: Sequence[tuple[str, int, float]],
) -> dict[str, dict[str, Any]]:
    """Each replayable call through a Router on ``plane``; its usage event per request id."""
    from core.router import Router  # imports most of core: load it when used
    from core.usage import Reader

    usages = {c.request_id: c.usage for c in calls if c.replayable}
    names = {r.provider for r in catalog.rows()}
    providers = {n: ReplayProvider(n, usages) for n in names}
    now = [clock.now()]
    state = MemoryState()
    for key, amount, ttl in seed:
        state.add(key, amount, ttl)
    controls = Controls(catalog, plane=plane, state=state, poll_s=1e9)
    controls.guard = BudgetGuard(state, clock=lambda: now[0], canonical=_canonical(catalog))
    settings = Settings(home=home, providers={n: p.config for n, p in providers.items()})
    router = Router(
        settings,
        catalog=catalog,
        log=UsageLog(home, flush_interval_s=3600),
        providers=providers,
        controls=controls,
        retry=RetryPolicy(max_attempts=1),
        allow_unpriced=True,
    )
    tier = long_tier(catalog)
    try:
        for call in calls:
            if call.replayable:
                now[0] = call.ts
                req = request_for(call, catalog, policies.get(call.task or ""), whole_above=tier)
                with contextlib.suppress(CostlineError):  # logged: blocked, rate_limited, error
                    router.complete(req)
    finally:
        router.close()
    with Reader(home) as reader:
        got = reader.events(columns=RESULT_COLUMNS)
    return {str(r["request_id"]): {str(k): v for k, v in r.items()} for r in got.to_dict("records")}
