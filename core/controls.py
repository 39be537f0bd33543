"""Controls: the spend controls a Router consults (steps 1, 2, 4 and 5 of the call path).

One object holds what they share: the control-plane snapshot (refreshed by a cheap version
poll, so edits reach running routers within seconds), the live state (memory or Redis) and
the price catalog with the control plane's overrides layered on top.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import replace
from fractions import Fraction
from typing import Literal

from core.alerts import AlertSink
from core.budgets import BudgetGuard
from core.cache import ResponseCache
from core.control import (
    Budget,
    ControlPlane,
    ControlSnapshot,
    PriceOverride,
    RoutingPolicy,
    Watcher,
)
from core.errors import CostlineError
from core.pricing import Catalog, PriceRow
from core.routing import RoutingEngine
from core.sampling import SamplingConfig, SamplingGate
from core.state import ResilientState, State, make_state

log = logging.getLogger(__name__)


_Index = tuple["ControlSnapshot | None", tuple[Budget, ...], dict[str, RoutingPolicy]]


class Controls:
    """Budgets, rate limits, cache, routing and sampling for one router process."""

    def __init__(
        self,
        catalog: Catalog,
        *,
        plane: ControlPlane | None = None,
        state: State | None = None,
        poll_s: float = 1.0,
        redis_policy: Literal["open", "closed"] = "open",
    ) -> None:
        self._own_plane = plane is None
        self._redis_policy = redis_policy  # unless the control plane's setting says otherwise
        self.plane = plane if plane is not None else ControlPlane(model_exists=catalog.has)
        self.state = state if state is not None else make_state(policy=redis_policy)
        self.watcher = Watcher(self.plane, min_interval_s=poll_s)
        self.base_catalog = catalog
        self.catalog = catalog
        self.alerts = AlertSink(self.plane)
        self.guard = BudgetGuard(self.state, alerts=self.alerts, canonical=self._canonical)
        self.routing = RoutingEngine(catalog, self.state)
        self.cache = ResponseCache(self.state)
        self.gate = SamplingGate({})
        self.scores: Mapping[str, float] = {}
        self._gate_keys: set[str] = set()
        self._index: _Index = (None, (), {})  # per snapshot: active budgets, policy by task
        self._version = -1
        self._lock = threading.Lock()

    def snapshot(self) -> ControlSnapshot:
        """The current control-plane snapshot; applies it to every control when it changed."""
        snap = self.watcher.current()
        if snap.version != self._version:
            with self._lock:
                if snap.version != self._version:
                    self._apply(snap)
                    self._version = snap.version
        return snap

    def _apply(self, snap: ControlSnapshot) -> None:
        rows = [override_row(o, self.base_catalog) for o in snap.price_overrides]
        try:
            self.catalog = self.base_catalog.with_rows(rows) if rows else self.base_catalog
        except CostlineError as exc:  # a bad override must not stop every call
            log.warning("price overrides ignored, keeping the previous catalog: %s", exc)
        if self.routing.catalog is not self.catalog:
            self.routing.set_catalog(self.catalog)  # also drops names cached for the old one
        self.cache.apply(snap)
        wanted = {s.key: s for s in snap.sampling if s.enabled}
        for key in self._gate_keys - set(wanted):
            self.gate.configure(key, None)
        for key, strategy in list(wanted.items()):
            try:
                self.gate.configure(key, SamplingConfig.from_strategy(strategy))
            except CostlineError as exc:  # one bad strategy must not stop every call
                log.warning("sampling strategy %r ignored: %s", key, exc)
                self.gate.configure(key, None)
                del wanted[key]
        self._gate_keys = set(wanted)
        self.scores = {s.model: s.quality for s in snap.model_scores}
        policy = snap.settings.get("redis_fail_policy", self._redis_policy)
        if isinstance(self.state, ResilientState) and policy in ("open", "closed"):
            self.state.policy = policy

    def active_budgets(self, snap: ControlSnapshot) -> tuple[Budget, ...]:
        """``snap.active_budgets()``, computed once per snapshot."""
        return self._indexed(snap)[1]

    def policy(self, snap: ControlSnapshot, task: str) -> RoutingPolicy | None:
        """``snap.policy(task)`` by dict lookup."""
        return self._indexed(snap)[2].get(task)

    def _indexed(self, snap: ControlSnapshot) -> _Index:
        got = self._index
        if got[0] is not snap:
            policies: dict[str, RoutingPolicy] = {}
            for p in snap.policies:
                policies.setdefault(p.task, p)  # the first one, as snap.policy() does
            got = self._index = (snap, snap.active_budgets(), policies)
        return got

    @property
    def gate_keys(self) -> set[str]:
        """Tasks/agents with an enabled sampling strategy."""
        return self._gate_keys

    def _canonical(self, model: str) -> str:
        return self.catalog.canonical(model) if self.catalog.has(model) else model

    def close(self) -> None:
        self.alerts.close()
        self.state.close()
        if self._own_plane:
            self.plane.close()


def override_row(o: PriceOverride, base: Catalog) -> PriceRow:
    """A control-plane price override as a catalog row: the override's rates apply to every
    prompt size from its date (a catalog >128k/>200k tier is replaced, not scaled). It prices
    the (provider, model) entry it names: a model the catalog lists under that provider
    keeps its catalog name, context window and output cap; any other provider's override is
    that provider's own entry (Azure's gpt-4o-mini never reprices OpenAI's). The provider is
    matched in any letter case ("OpenAI" is the catalog's openai: it was an entry of its own
    that nothing priced with)."""
    provider = o.provider.strip().lower()  # the catalog's providers are lower-case
    own = base.name_under(provider, o.model)
    ref = base.lookup(f"{provider}/{own}") if own is not None else None
    rate = o.picousd_per_token  # exact: int or Fraction pUSD per token, never rounded
    inp, out = rate(o.input) or 0, rate(o.output) or 0
    cached, write, reasoning = rate(o.cached_input), rate(o.cache_write), rate(o.reasoning)
    row = PriceRow(
        model=own or o.model,
        provider=provider,
        input=inp,
        output=out,
        cached_input=inp if cached is None else cached,
        cache_write=inp if write is None else write,
        reasoning=out if reasoning is None else reasoning,
        effective_from=o.effective_from,
        above_prompt_tokens=0,
        context_window=ref.context_window if ref else 128_000,
        max_output_tokens=ref.max_output_tokens if ref else 16_384,
        quality=ref.quality if ref else 50,
        source=f"override: {o.note}" if o.note else "override",
    )
    if ref is not None and ref.input and ref.cache_write_1h != ref.cache_write:
        # the 1-hour cache write keeps its ratio to input (Anthropic: 2x)
        ratio = Fraction(ref.cache_write_1h or 0) / Fraction(ref.input)
        row = replace(row, cache_write_1h=row.input * ratio)
    return row
