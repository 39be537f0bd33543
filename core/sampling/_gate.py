"""The sampling gate: per key, decide whether an event makes a real LLM call.

Order of the checks in ``decide``:

1. no config for the key -> call ("unconfigured"); the gate keeps no state for it.
2. CRITICAL -> call ("critical"), bypassing the strategy and the minimum interval.
3. LOW -> batched; the batch is flushed as ONE call when it holds ``batch_size`` events, or when
   an event arrives ``batch_timeout_s`` after the first pending one; ``flush_due()`` flushes
   overdue batches from a background tick.
4. HIGH/MEDIUM -> the first event of a key calls; then ``min_interval_s`` since the last real
   call, then the strategy. A skip needs an answer to reuse: with none recorded yet it calls
   ("no_answer").

Every real call (critical, batch or single) resets the key's "last call" time and, when the
event carries a signal, the reference signal used by CHANGE_BASED.

Tenants: an event's ``scope`` (the router passes the response cache's tenant, so the
``cache_scope`` setting decides: a virtual key's org, the key itself, or "" for everyone)
selects its own state under the key's config: its own last call, signals, batch and answer.
A skip only ever reuses an answer of the same scope; counters (``stats``) add up the scopes.

``decide(event, tentative=True)`` (the router): a single call is only counted once the caller
reports it with ``called`` (or ``record_answer(..., call=d)``); ``not_called`` - the cache
answered, a budget blocked it - counts the event as skipped and puts the key's last call and
signal back, so neither the stats nor the next interval see a call that never happened.
A key that ``never_skips`` (ALWAYS, no minimum interval, not LOW) needs no decision: the
router records such an event once, when its call ends, with ``record_call(key, at, signal)``
(``at``: ``now()`` when the call started), which leaves what ``decide`` then ``record_answer``
/ ``called`` / ``not_called`` would (the event is counted when it ends, not while in flight).

ADAPTIVE: on each event with a signal, r = |s - s_prev| / |s_prev| (capped at 1.0) feeds an
EWMA with alpha = 2 / (volatility_window + 1). The interval is
``clamp(base_interval_s * volatility_ref / ewma, min_interval_s, max_interval_s)``: at the
reference volatility it equals the base, twice as volatile halves it, a flat signal gives the
max; before two signals have been seen it is the (clamped) base.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from core.errors import BadRequest
from core.sampling._values import (
    Decision,
    Event,
    GateStats,
    Priority,
    SamplingConfig,
    Strategy,
    Tentative,
)


@dataclass(slots=True)
class _KeyState:
    last_call: float | None = None
    last_signal: float | None = None  # signal at the last real call (CHANGE_BASED reference)
    prev_signal: float | None = None  # signal of the previous event (ADAPTIVE volatility)
    volatility: float | None = None  # EWMA of |relative change| per event
    answer: Any = None
    has_answer: bool = False
    recorded: int = 0  # real calls whose cost was recorded
    spent: int = 0  # picodollars over those calls
    pending: list[Event] = field(default_factory=list)
    pending_since: float = 0.0
    events: int = 0
    calls: int = 0
    skipped: int = 0
    batched: int = 0
    batch_calls: int = 0


def relative_change(ref: float, value: float) -> float:
    """|value - ref| / |ref|; from a zero reference any change is infinite."""
    if ref == 0:
        return 0.0 if value == 0 else math.inf
    return abs(value - ref) / abs(ref)


class SamplingGate:
    """Thread-safe; ``clock`` (seconds, monotonic) is injected so tests never sleep."""

    def __init__(
        self,
        configs: Mapping[str, SamplingConfig],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._configs = dict(configs)
        self._clock = clock
        self._lock = threading.Lock()
        self._state: dict[tuple[str, str], _KeyState] = {}  # (key, scope) -> its state

    def configure(self, key: str, config: SamplingConfig | None) -> None:
        """Set or (None) remove a key's config; its answer and counters are kept."""
        with self._lock:
            if config is None:
                self._configs.pop(key, None)
            else:
                self._configs[key] = config

    def decide(self, event: Event, *, tentative: bool = False) -> Decision:
        """Call or reuse. ``tentative=True`` (the router): a single call is not counted yet -
        the caller reports ``called(d)`` once the provider is really called, or
        ``not_called(d)`` when something else answered (cache, budget block); meanwhile the
        key's last-call time already holds it, so concurrent events see the call in flight."""
        now = event.ts if event.ts is not None else self._clock()
        with self._lock:
            cfg = self._configs.get(event.key)
            if cfg is None:
                return Decision(event.key, True, "unconfigured")
            if event.priority in (Priority.HIGH, Priority.MEDIUM):
                _require_inputs(cfg, event)
            st = self._key_state(event.key, event.scope)
            st.events += 1
            if cfg.strategy is Strategy.ADAPTIVE:
                _observe(st, cfg, event.signal)
            if event.priority is Priority.CRITICAL:
                return self._call(st, event, now, "critical", tentative)
            if event.priority is Priority.LOW:
                return self._add_low(st, cfg, event, now)
            call, reason = _strategy(st, cfg, event, now)
            if not call and not st.has_answer:
                call, reason = True, "no_answer"
            if call:
                return self._call(st, event, now, reason, tentative)
            st.skipped += 1
            return Decision(event.key, False, reason, last_answer=st.answer, scope=event.scope)

    def never_skips(self, key: str, priority: Priority) -> bool:
        """True when every event of ``key`` at ``priority`` is a call: an ALWAYS strategy
        with no minimum interval, an event that is not LOW. ``decide`` has nothing to decide
        then; the router records such a call once, when it ends (``record_call``)."""
        cfg = self._configs.get(key)
        return (
            cfg is not None
            and cfg.strategy is Strategy.ALWAYS
            and not cfg.min_interval_s
            and priority is not Priority.LOW
        )

    def now(self) -> float:
        """The gate's clock (seconds, monotonic): the ``at`` of ``record_call``."""
        return self._clock()

    def record_call(
        self,
        key: str,
        at: float,
        signal: float | None = None,
        *,
        called: bool = True,
        answer: Any = None,
        cost_picousd: int | None = None,
        scope: str = "",
    ) -> None:
        """An event that ``never_skips`` said is a call, recorded once it ended: as
        ``decide(event, tentative=True)`` at ``at`` followed by ``record_answer(..., call=d)``
        (``cost_picousd`` given: ``answer`` is its answer), ``called(d)`` (``called``: the
        provider was called but gave no answer) or ``not_called(d)``."""
        if cost_picousd is not None:
            _check_cost(cost_picousd)
        with self._lock:
            st = self._key_state(key, scope)
            st.events += 1
            if not called:
                st.skipped += 1
                return
            st.calls += 1
            if st.last_call is None or at >= st.last_call:  # the latest call started
                st.last_call = at
                if signal is not None:
                    st.last_signal = signal
            if cost_picousd is not None:
                st.answer, st.has_answer = answer, True
                st.recorded += 1
                st.spent += cost_picousd

    def flush_due(self, *, force: bool = False) -> list[Decision]:
        """One call Decision per LOW batch whose timeout elapsed (every batch when ``force``)."""
        now = self._clock()
        out: list[Decision] = []
        with self._lock:
            for (key, scope), st in self._state.items():
                if not st.pending:
                    continue
                cfg = self._configs.get(key)
                due = cfg is None or now - st.pending_since >= cfg.batch_timeout_s
                if force or due:
                    why = "batch_timeout" if due else "batch_flush"
                    out.append(self._flush(key, scope, st, now, why))
        return out

    def called(self, decision: Decision) -> None:
        """A tentative call (``decide(..., tentative=True)``) reached the provider: count it."""
        if decision.tentative is None:
            return
        with self._lock:
            self._key_state(decision.key, decision.scope).calls += 1

    def not_called(self, decision: Decision) -> None:
        """A tentative call was answered without the provider: the event counts as skipped,
        and the key's last call and signal go back to what they were (unless a later call
        moved them)."""
        t = decision.tentative
        if t is None:
            return
        with self._lock:
            st = self._key_state(decision.key, decision.scope)
            st.skipped += 1
            if st.last_call == t.at:
                st.last_call = t.prev_call
            if t.signal is not None and st.last_signal == t.signal:
                st.last_signal = t.prev_signal

    def record_answer(
        self,
        key: str,
        answer: Any,
        cost_picousd: int = 0,
        *,
        call: Decision | None = None,
        scope: str = "",
    ) -> None:
        """After a real call: the answer later skips of ``scope`` reuse, and its cost (integer
        pUSD). ``call``: the tentative decision of this call, counted here (as ``called``)."""
        _check_cost(cost_picousd)
        with self._lock:
            st = self._key_state(key, scope)
            if call is not None and call.tentative is not None:
                self._key_state(call.key, call.scope).calls += 1
            st.answer, st.has_answer = answer, True
            st.recorded += 1
            st.spent += cost_picousd

    def last_answer(self, key: str, scope: str = "") -> Any:
        with self._lock:
            st = self._state.get((key, scope))
            return None if st is None else st.answer

    def saved_estimate(self, key: str, scope: str = "") -> int:
        """What one skipped call of ``key`` saves: its average real-call cost (0 if unknown)."""
        with self._lock:
            st = self._state.get((key, scope))
            return st.spent // st.recorded if st is not None and st.recorded else 0

    def adaptive_interval(self, key: str, scope: str = "") -> float | None:
        """The current ADAPTIVE interval of ``key`` (None for other strategies)."""
        with self._lock:
            cfg = self._configs.get(key)
            if cfg is None or cfg.strategy is not Strategy.ADAPTIVE:
                return None
            return _adaptive_interval(self._state.get((key, scope), _KeyState()), cfg)

    def stats(self) -> dict[str, GateStats]:
        """Per key, its scopes' counters added up."""
        with self._lock:
            out: dict[str, GateStats] = {}
            for (key, _scope), st in self._state.items():
                got = _stats(st)
                prev = out.get(key)
                out[key] = got if prev is None else _add(prev, got)
            return out

    # -- internals (lock held) --

    def _key_state(self, key: str, scope: str = "") -> _KeyState:
        st = self._state.get((key, scope))
        if st is None:
            st = self._state[(key, scope)] = _KeyState()
        return st

    def _call(
        self, st: _KeyState, event: Event, now: float, reason: str, tentative: bool = False
    ) -> Decision:
        pending = None
        if tentative:
            pending = Tentative(st.last_call, st.last_signal, now, event.signal)
        else:
            st.calls += 1
        st.last_call = now
        if event.signal is not None:
            st.last_signal = event.signal
        return Decision(
            event.key, True, reason, last_answer=st.answer, tentative=pending, scope=event.scope
        )

    def _add_low(self, st: _KeyState, cfg: SamplingConfig, event: Event, now: float) -> Decision:
        overdue = bool(st.pending) and now - st.pending_since >= cfg.batch_timeout_s
        if not st.pending:
            st.pending_since = now
        st.pending.append(event)
        st.batched += 1
        if overdue:
            return self._flush(event.key, event.scope, st, now, "batch_timeout")
        if len(st.pending) >= cfg.batch_size:
            return self._flush(event.key, event.scope, st, now, "batch_full")
        return Decision(event.key, False, "batched", last_answer=st.answer, scope=event.scope)

    def _flush(self, key: str, scope: str, st: _KeyState, now: float, reason: str) -> Decision:
        batch, st.pending = st.pending, []
        st.calls += 1
        st.batch_calls += 1
        st.last_call = now
        signals = [e.signal for e in batch if e.signal is not None]
        if signals:
            st.last_signal = signals[-1]
        return Decision(key, True, reason, batch=batch, last_answer=st.answer, scope=scope)


def _check_cost(cost_picousd: int) -> None:
    if isinstance(cost_picousd, bool) or not isinstance(cost_picousd, int) or cost_picousd < 0:
        msg = f"cost_picousd: must be an integer >= 0, got {cost_picousd!r}"
        raise BadRequest(msg, field="cost_picousd")


def _require_inputs(cfg: SamplingConfig, event: Event) -> None:
    if cfg.strategy is Strategy.CHANGE_BASED and event.signal is None:
        msg = f"signal: required by the change_based strategy of {event.key!r}"
        raise BadRequest(msg, field="signal")
    if cfg.strategy is Strategy.THRESHOLD and event.score is None:
        msg = f"score: required by the threshold strategy of {event.key!r}"
        raise BadRequest(msg, field="score")


def _strategy(st: _KeyState, cfg: SamplingConfig, event: Event, now: float) -> tuple[bool, str]:
    """(call?, reason) for a HIGH/MEDIUM event."""
    if st.last_call is None:
        return True, "first"
    elapsed = now - st.last_call
    if elapsed < cfg.min_interval_s:
        return False, "min_interval"
    kind = cfg.strategy
    if kind is Strategy.ALWAYS:
        return True, "always"
    if kind is Strategy.PERIODIC:
        assert cfg.interval_s is not None
        return (True, "interval_elapsed") if elapsed >= cfg.interval_s else (False, "not_due")
    if kind is Strategy.ADAPTIVE:
        due = elapsed >= _adaptive_interval(st, cfg)
        return (True, "adaptive_due") if due else (False, "not_due")
    assert cfg.threshold is not None
    if kind is Strategy.CHANGE_BASED:
        assert event.signal is not None
        if st.last_signal is None:
            return True, "no_reference"
        change = relative_change(st.last_signal, event.signal)
        return (True, "changed") if change >= cfg.threshold else (False, "unchanged")
    assert event.score is not None
    return (True, "score_high") if event.score >= cfg.threshold else (False, "score_low")


def _observe(st: _KeyState, cfg: SamplingConfig, signal: float | None) -> None:
    if signal is None:
        return
    prev, st.prev_signal = st.prev_signal, signal
    if prev is None:
        return
    r = min(1.0, relative_change(prev, signal))
    alpha = 2.0 / (cfg.volatility_window + 1)
    st.volatility = r if st.volatility is None else alpha * r + (1 - alpha) * st.volatility


def _adaptive_interval(st: _KeyState, cfg: SamplingConfig) -> float:
    assert cfg.base_interval_s is not None and cfg.max_interval_s is not None
    vol = st.volatility
    if vol is None:
        raw = cfg.base_interval_s
    elif vol <= 0:
        raw = cfg.max_interval_s
    else:
        raw = cfg.base_interval_s * cfg.volatility_ref / vol
    return min(cfg.max_interval_s, max(cfg.min_interval_s, raw))


def _add(a: GateStats, b: GateStats) -> GateStats:
    return GateStats(**{f.name: getattr(a, f.name) + getattr(b, f.name) for f in fields(a)})


def _stats(st: _KeyState) -> GateStats:
    pending = len(st.pending)
    saved = st.skipped + (st.batched - pending) - st.batch_calls
    saved_pico = saved * st.spent // st.recorded if st.recorded else 0
    return GateStats(
        events=st.events,
        calls=st.calls,
        skipped=st.skipped,
        batched=st.batched,
        pending=pending,
        saved_calls=saved,
        spent_picousd=st.spent,
        saved_picousd=saved_pico,
    )
