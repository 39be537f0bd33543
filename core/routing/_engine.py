"""RoutingEngine: step 4 of a call, the ordered list of models to try and why.

    route(req, policy, prompt_tokens=, scores=) -> RouteChoice
      req.model given       [model, *fallbacks] as asked ('explicit'), or cheapest first with
                            req.optimize_cost; only open circuits drop
      task policy           primary + fallbacks ranked by the policy's strategy, degrade_to
                            last; drop unpriced, too-small context window, open circuit
      neither               BadRequest naming the task
    observe(model, latency_ms, ok, error_retryable)   EWMA latency + circuit breaker
    health() -> [ModelHealth]                          for the console

The breaker lives in ``State`` (shared by every process with Redis): ``breaker_allow`` says
'open' (skip), 'half_open' (this caller gets the one probe) or 'closed'. A candidate's probe is
taken when it is ranked, even if an earlier candidate answers; an unused probe is offered again
after another cooldown. 'closed' is remembered for ``closed_ttl_s`` (see ``_breakers``).
Latency EWMAs are per process. Rate limits are not checked here: the budget/rate guard admits
candidates in order.

The quality and explicit strategies (without optimize_cost) never read the request's cost or
observed latency: their route is the same for every prompt that fits every candidate's window
and gets the same price row (tier: quality, window) of each. The policy's plan keeps one such
route (``PolicyPlan.fixed``) for up to FIXED_S (scores edited in place) and reuses it while
the prompt plus max_tokens fits the smallest window, each candidate's row at this prompt size
is the one it was ranked with and every breaker was seen closed just now; anything else is
ranked afresh (and the cheapest, fastest and balanced strategies always are: their order reads
the request's estimated cost or observed latency).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from core.errors import BadRequest, ContextWindowExceeded, RetryableError, UnpricedModel
from core.pricing import Catalog
from core.routing._breakers import CLOSED_TTL_S, BreakerView
from core.routing._plan import FixedRoute, PolicyPlan, unique
from core.routing._rank import (
    Scored,
    by_cost,
    cost_order_reason,
    estimate,
    order,
    strategy_reason,
)
from core.routing._values import DEFAULT_OUTPUT_TOKENS, ModelHealth, RouteChoice
from core.state import BreakerState, State
from core.types import ChatRequest

if TYPE_CHECKING:
    from core.control import RoutingPolicy

SIZE_FREE = frozenset({"explicit", "quality"})  # no cost, no latency in the order or reason
FIXED_S = 1.0  # a size-free route is reused this long (prices by date, scores edited)


class RoutingEngine(BreakerView):
    """Thread-safe. One per router process; ``observe`` after every provider attempt."""

    def __init__(
        self,
        catalog: Catalog,
        state: State,
        *,
        breaker_threshold: int = 5,
        breaker_cooldown_s: float = 30.0,
        ewma_alpha: float = 0.2,
        clock: Callable[[], float] | None = None,
        closed_ttl_s: float = CLOSED_TTL_S,
    ) -> None:
        """``clock`` is passed to the breaker as ``now``; None (the default) lets the state use
        its own wall clock (Redis: the server's TIME, shared by every process). Inject one in
        tests. A per-process monotonic clock would break breakers shared through Redis.

        ``closed_ttl_s``: a breaker seen 'closed' is taken as closed without asking the state
        again for this long (0: ask every time). Only 'closed' is remembered: 'open' and the
        single 'half_open' probe are always decided by the state."""
        if not 0 < ewma_alpha <= 1:
            raise ValueError(f"ewma_alpha must be in (0, 1], got {ewma_alpha}")
        self.catalog = catalog
        self.state = state
        self.breaker_threshold = breaker_threshold
        self.breaker_cooldown_s = breaker_cooldown_s
        self.ewma_alpha = ewma_alpha
        self.clock = clock
        self._lock = threading.Lock()
        self._plans: dict[int, tuple[RoutingPolicy, PolicyPlan]] = {}
        self._keys: dict[str, str] = {}
        self._ewma: dict[str, float] = {}
        self._calls: dict[str, int] = {}
        self._errors: dict[str, int] = {}
        self._streak: dict[str, int] = {}  # consecutive counted failures
        self._breaker: dict[str, BreakerState] = {}  # last state seen
        self.closed_ttl_s = closed_ttl_s
        self._closed_until: dict[str, float] = {}  # key -> monotonic time; see closed_ttl_s

    # ---- routing ----------------------------------------------------------------------
    def route(
        self,
        req: ChatRequest,
        policy: RoutingPolicy | None,
        *,
        prompt_tokens: int,
        scores: Mapping[str, float] | None = None,
    ) -> RouteChoice:
        """Candidates for ``req``, best first. ``policy`` is the ``RoutingPolicy`` of
        ``req.task`` (ignored when ``req.model`` is given); ``scores`` are editable quality
        scores 0..1 by model. Raises BadRequest (no model and no policy), or, when every
        candidate is dropped, ContextWindowExceeded / UnpricedModel / RetryableError."""
        if req.model:
            return self._explicit(req, prompt_tokens)
        if policy is None:
            if req.task:
                raise BadRequest(
                    f"task: no routing policy for task {req.task!r} and no model given: "
                    "add a policy for the task or pass model=",
                    field="task",
                )
            raise BadRequest("model: the request needs a model or a task", field="model")
        hit = self._plans.get(id(policy))
        plan = hit[1] if hit is not None and hit[0] is policy else self._plan(policy)
        if plan.strategy not in SIZE_FREE or req.optimize_cost:
            return self._ranked(req, plan, prompt_tokens, scores)
        need = prompt_tokens + (req.max_tokens or plan.max_tokens or 0)
        mono = time.monotonic()
        got = plan.fixed
        if (
            got is not None
            and got.until > mono
            and got.scores is scores
            and need <= got.window
            and self._same_rows(got, prompt_tokens)
            and self._closed(got.keys, mono)
        ):
            return got.choice
        choice = self._ranked(req, plan, prompt_tokens, scores)
        if not choice.skipped:  # every candidate priced, fitted and not open
            plan.fixed = self._fixed(choice, scores, prompt_tokens, mono)
        return choice

    def explain_degrade(self, model: str, from_model: str, budget_text: str) -> str:
        """'gpt-4o-mini: org acme at 93% of monthly budget, degraded from gpt-4o'."""
        return f"{model}: {budget_text}, degraded from {from_model}"

    def key(self, model: str) -> str:
        """The catalog's name for ``model`` (breaker and latency key); unknown: as given."""
        k = self._keys.get(model)
        if k is None:
            k = self.catalog.canonical(model) if self.catalog.has(model) else model
            if len(self._keys) < 4096:
                self._keys[model] = k
        return k

    def set_catalog(self, catalog: Catalog) -> None:
        """Use new prices (overrides edited); latency and breaker history are kept."""
        with self._lock:
            self.catalog = catalog
            self._plans = {}
            self._keys = {}

    def _plan(self, policy: RoutingPolicy) -> PolicyPlan:
        plan = PolicyPlan(policy, self.key, self.catalog)
        with self._lock:
            if len(self._plans) >= 1024:
                self._plans.clear()
            self._plans[id(policy)] = (policy, plan)
        return plan

    def _fixed(
        self,
        choice: RouteChoice,
        scores: Mapping[str, float] | None,
        prompt_tokens: int,
        mono: float,
    ) -> FixedRoute | None:
        """``choice`` as the route of any prompt that fits every window and has the same
        price rows (tier, so quality and window); None when a breaker was not seen closed
        just now."""
        keys = tuple(self.key(m) for m in choice.models)
        if not self._closed(keys, mono):
            return None
        lookup = self.catalog.lookup
        rows = tuple(lookup(m, None, prompt_tokens) for m in choice.models)
        window = min((r.context_window for r in rows if r.context_window), default=sys.maxsize)
        return FixedRoute(mono + FIXED_S, scores, choice, keys, rows, window)

    def _same_rows(self, fixed: FixedRoute, prompt_tokens: int) -> bool:
        """Does a prompt of this size get the price rows ``fixed`` was ranked with?"""
        lookup = self.catalog.lookup
        for m, row in zip(fixed.choice.models, fixed.rows, strict=True):
            if lookup(m, None, prompt_tokens) is not row:
                return False
        return True

    def _explicit(self, req: ChatRequest, prompt_tokens: int) -> RouteChoice:
        names = unique((req.model or "", *req.fallbacks))
        cheapest: int | None = None  # optimize_cost: the estimate of the new first choice
        if req.optimize_cost and len(names) > 1:
            names, cheapest = by_cost(self.catalog, req, names, prompt_tokens)
        kept: list[str] = []
        skipped: list[tuple[str, str]] = []
        keys = [self.key(n) for n in names]
        for name, k, st in zip(names, keys, self._allow(keys), strict=True):
            if st == "open":
                skipped.append((name, self._open_why(k)))
            else:
                kept.append(name)
        if not kept:
            raise RetryableError(_all_dropped(skipped), model=req.model)
        if skipped and skipped[0][0] == names[0]:
            reason = f"{kept[0]}: fallback, {names[0]} {skipped[0][1]}"
        elif cheapest is not None:
            reason = cost_order_reason(kept[0], req.model or "", len(names), cheapest)
        else:
            reason = f"{kept[0]}: requested"
        return RouteChoice(tuple(kept), reason, tuple(skipped), "explicit")

    def _ranked(
        self,
        req: ChatRequest,
        plan: PolicyPlan,
        prompt_tokens: int,
        scores: Mapping[str, float] | None,
    ) -> RouteChoice:
        max_tokens = req.max_tokens or plan.max_tokens
        out_tokens = max_tokens or DEFAULT_OUTPUT_TOKENS
        need = prompt_tokens + (max_tokens or 0)
        lookup, ewma, batch = self.catalog.lookup, self._ewma, req.batch
        scores = scores or None
        items: list[Scored] = []
        tail: list[Scored] = []
        skipped: list[tuple[str, str]] = []
        for pos, name, k, priced in plan.rows:
            if not priced:
                skipped.append((name, "unpriced (not in the price catalog)"))
                continue
            row = lookup(name, None, prompt_tokens)
            q = None if scores is None else scores.get(name, scores.get(k))
            s = Scored(
                pos,
                name,
                k,
                estimate(row, prompt_tokens, out_tokens, batch),
                ewma.get(k),
                row.quality / 100 if q is None else q,
                q is not None,
                row.context_window,
            )
            (tail if name == plan.degrade else items).append(s)
        ranked = order(items, plan.strategy, plan.weights, req.optimize_cost) if items else []
        if tail:
            ranked += tail
        fits = [s for s in ranked if not (s.window and need > s.window)]
        states = self._allow([s.key for s in fits])  # one state call for all of them
        if len(fits) == len(ranked) and "open" not in states and "half_open" not in states:
            kept, probe, too_small = ranked, False, 0  # the usual case: nothing dropped
        else:
            kept, probe, too_small = self._drop(ranked, states, need, skipped)
        if not kept:
            raise _none_left(plan.task, skipped, need, too_small)
        first = kept[0]
        task = plan.task
        if ranked[0] is not first:
            why = next(w for m, w in skipped if m == ranked[0].name)
            reason = f"{first.name}: fallback, {ranked[0].name} {why}"
        elif first.name == plan.degrade:
            reason = f"{first.name}: degrade_to of task {task}, no other candidate left"
        else:
            reason = strategy_reason(first, plan.strategy, len(kept), task, req.optimize_cost)
        if probe:
            reason += "; probe after circuit open"
        return RouteChoice(tuple([s.name for s in kept]), reason, tuple(skipped), plan.strategy)

    def _drop(
        self,
        ranked: list[Scored],
        states: list[BreakerState],
        need: int,
        skipped: list[tuple[str, str]],
    ) -> tuple[list[Scored], bool, int]:
        """(kept, probe?, largest too-small window): drop what does not fit or is open;
        the skips are added to ``skipped`` in rank order."""
        it = iter(states)
        kept: list[Scored] = []
        probe = False
        too_small = 0
        for s in ranked:
            if s.window and need > s.window:
                skipped.append((s.name, f"context window {s.window} < {need} tokens"))
                too_small = max(too_small, s.window)
                continue
            st = next(it)
            if st == "open":
                skipped.append((s.name, self._open_why(s.key)))
                continue
            if not kept:
                probe = st == "half_open"
            kept.append(s)
        return kept, probe, too_small

    # ---- feedback ---------------------------------------------------------------------
    def observe(
        self,
        model: str,
        latency_ms: float,
        ok: bool,
        error_retryable: bool = True,
        *,
        recorded: BreakerState | None = None,
    ) -> None:
        """After each provider attempt. Success feeds the latency EWMA and closes the breaker;
        a retryable/provider failure counts towards opening it; other failures (bad request,
        auth) only count as errors. ``recorded``: a success's breaker record was already made
        with the settle (``BudgetGuard.settle``'s ``close``), this state its result."""
        k = self.key(model)
        with self._lock:
            self._calls[k] = self._calls.get(k, 0) + 1
            if ok:
                prev = self._ewma.get(k)
                a = self.ewma_alpha
                self._ewma[k] = latency_ms if prev is None else a * latency_ms + (1 - a) * prev
                self._streak[k] = 0
            else:
                self._errors[k] = self._errors.get(k, 0) + 1
                if error_retryable:
                    self._streak[k] = self._streak.get(k, 0) + 1
        if not ok and not error_retryable:
            return
        if ok and recorded is not None:
            st = recorded
        else:
            now = self.clock() if self.clock is not None else None
            st = self.state.breaker_record(
                k, ok, self.breaker_threshold, self.breaker_cooldown_s, now
            )
        self._breaker[k] = st
        self._seen(k, st, time.monotonic())

    def health(self) -> list[ModelHealth]:
        with self._lock:
            models = sorted(set(self._calls) | set(self._breaker))
            return [
                ModelHealth(
                    m,
                    self._ewma.get(m),
                    self._calls.get(m, 0),
                    self._errors.get(m, 0),
                    self._breaker.get(m, "closed"),
                    self._streak.get(m, 0),
                )
                for m in models
            ]


def _all_dropped(skipped: list[tuple[str, str]]) -> str:
    return "no candidate model left: " + "; ".join(f"{m} {w}" for m, w in skipped)


def _none_left(task: str, skipped: list[tuple[str, str]], need: int, too_small: int) -> Exception:
    msg = f"task {task}: " + _all_dropped(skipped)
    if any(w.startswith("circuit") for _, w in skipped):
        return RetryableError(msg)  # try again after the cooldown
    if too_small:
        return ContextWindowExceeded(msg, tokens=need, window=too_small)
    return UnpricedModel(msg)
