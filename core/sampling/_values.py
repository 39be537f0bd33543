"""Sampling values: strategy and priority names, per-key config, events, decisions, stats.

Config errors raise ``ConfigError`` naming the field; a bad event raises ``BadRequest``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, NamedTuple

from core.errors import BadRequest, ConfigError

if TYPE_CHECKING:
    from core.control import SamplingStrategy


class Strategy(StrEnum):
    ALWAYS = "always"
    PERIODIC = "periodic"
    CHANGE_BASED = "change_based"
    THRESHOLD = "threshold"
    ADAPTIVE = "adaptive"


class Priority(StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"

    @classmethod
    def parse(cls, value: str) -> Priority:
        """Seed names in any case, plus ChatRequest criticalities (normal, background)."""
        if value.__class__ is cls:
            return value
        known = _PARSED.get(value) if type(value) is str else None
        if known is not None:
            return known
        name = str(value).strip().lower()
        name = {"normal": "medium", "background": "low"}.get(name, name)
        try:
            return cls(name)
        except ValueError:
            raise BadRequest(
                f"priority: unknown value {value!r} (expected critical, high, medium, low)"
            ) from None


_PARSED: dict[object, Priority] = {  # the exact spellings requests use, parsed once
    **{p.value: p for p in Priority},
    "normal": Priority.MEDIUM,
    "background": Priority.LOW,
}


def _check_interval(name: str, value: float | None, *, required: bool = False) -> None:
    if value is None:
        if required:
            raise ConfigError(f"{name} is required for this strategy", field=name)
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{name} must be a number of seconds, got {value!r}", field=name)
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{name} must be a finite number >= 0, got {value!r}", field=name)


@dataclass(frozen=True, slots=True)
class SamplingConfig:
    """How one agent/task key samples its events.

    - ``interval_s``: PERIODIC period.
    - ``threshold``: CHANGE_BASED relative change (0.15 = 15 %) or THRESHOLD minimum score.
    - ``min_interval_s``: floor between real calls for HIGH/MEDIUM events (every strategy),
      and the lower clamp of the ADAPTIVE interval.
    - ``base_interval_s``, ``max_interval_s``, ``volatility_window``, ``volatility_ref``: ADAPTIVE,
      see ``SamplingGate.adaptive_interval`` for the formula.
    - ``batch_size``, ``batch_timeout_s``: LOW events are batched into one call.
    """

    strategy: str = Strategy.ALWAYS
    interval_s: float | None = None
    threshold: float | None = None
    base_interval_s: float | None = None
    min_interval_s: float = 0.0
    max_interval_s: float | None = None
    batch_size: int = 10
    batch_timeout_s: float = 300.0
    volatility_window: int = 10
    volatility_ref: float = 0.01

    def __post_init__(self) -> None:
        try:
            kind = Strategy(str(self.strategy).strip().lower())
        except ValueError:
            known = ", ".join(s.value for s in Strategy)
            raise ConfigError(
                f"strategy: unknown value {self.strategy!r} (known: {known})", field="strategy"
            ) from None
        object.__setattr__(self, "strategy", kind)
        _check_interval("interval_s", self.interval_s, required=kind is Strategy.PERIODIC)
        _check_interval("base_interval_s", self.base_interval_s, required=kind is Strategy.ADAPTIVE)
        _check_interval("min_interval_s", self.min_interval_s, required=True)
        _check_interval("max_interval_s", self.max_interval_s, required=kind is Strategy.ADAPTIVE)
        _check_interval("batch_timeout_s", self.batch_timeout_s, required=True)
        if self.max_interval_s is not None and self.min_interval_s > self.max_interval_s:
            raise ConfigError(
                f"min_interval_s {self.min_interval_s} is above max_interval_s "
                f"{self.max_interval_s}",
                field="min_interval_s",
            )
        if kind in (Strategy.CHANGE_BASED, Strategy.THRESHOLD):
            t = self.threshold
            if t is None or isinstance(t, bool) or not isinstance(t, int | float):
                raise ConfigError(f"threshold is required for {kind.value}", field="threshold")
            if not math.isfinite(t) or (kind is Strategy.CHANGE_BASED and t < 0):
                raise ConfigError(f"threshold must be finite and >= 0, got {t}", field="threshold")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int):
            raise ConfigError("batch_size must be an integer", field="batch_size")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}", field="batch_size")
        if isinstance(self.volatility_window, bool) or not isinstance(self.volatility_window, int):
            raise ConfigError("volatility_window must be an integer", field="volatility_window")
        if self.volatility_window < 1:
            raise ConfigError("volatility_window must be >= 1", field="volatility_window")
        v = self.volatility_ref
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v <= 0:
            raise ConfigError(f"volatility_ref must be > 0, got {v!r}", field="volatility_ref")

    @classmethod
    def from_strategy(cls, s: SamplingStrategy) -> SamplingConfig:
        """Build from the control-plane value (``core.control``): params hold the knobs."""
        p = dict(s.params)
        floor = max(float(s.min_interval_s), float(p.get("min_interval_s", 0.0)))
        return cls(
            strategy=s.strategy,
            interval_s=p.get("interval_s"),
            threshold=p.get("threshold"),
            # adaptive without a base interval starts from the calm end (max), then adapts
            base_interval_s=p.get("base_interval_s", p.get("interval_s", p.get("max_interval_s"))),
            min_interval_s=floor,
            max_interval_s=p.get("max_interval_s"),
            batch_size=s.batch_size,
            batch_timeout_s=s.batch_timeout_s,
            volatility_window=int(p.get("volatility_window", 10)),
            volatility_ref=float(p.get("volatility_ref", 0.01)),
        )


def _check_number(name: str, value: float | None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BadRequest(f"{name}: must be a finite number, got {value!r}", field=name)


@dataclass(frozen=True, slots=True)
class Event:
    """One thing that may need the model. ``ts`` defaults to the gate's clock at decide().
    ``scope``: the tenant whose answers it may reuse ("" = shared); each (key, scope) has its
    own gate state (interval, last answer, batch)."""

    key: str
    priority: str = Priority.MEDIUM
    signal: float | None = None
    score: float | None = None
    payload: Any = None
    ts: float | None = None
    scope: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not self.key:
            raise BadRequest(f"key: must be a non-empty string, got {self.key!r}", field="key")
        object.__setattr__(self, "priority", Priority.parse(self.priority))
        if not isinstance(self.scope, str):
            raise BadRequest(f"scope: must be a string, got {self.scope!r}", field="scope")
        _check_number("signal", self.signal)
        _check_number("score", self.score)
        _check_number("ts", self.ts)


class Tentative(NamedTuple):
    """A call decided but not made yet: the key's last call and signal before it."""

    prev_call: float | None
    prev_signal: float | None
    at: float
    signal: float | None


@dataclass(frozen=True, slots=True)
class Decision:
    """What the caller does: make one real call (``call``), or reuse ``last_answer``.

    ``batch`` is non-empty only for a LOW batch flush: one call covers all those events.
    ``last_answer`` is None when no answer was recorded yet (e.g. a LOW event still pending).
    """

    key: str
    call: bool
    reason: str
    batch: list[Event] = field(default_factory=list)
    last_answer: Any = None
    scope: str = ""  # the event's scope: whose gate state this decision read and moved
    # decide(..., tentative=True): what ``called``/``not_called`` need; None otherwise
    tentative: Tentative | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class GateStats:
    """Counters of one key. ``events == single calls + skipped + batched``.

    ``saved_calls`` = skipped + flushed batched events - batch calls; ``saved_picousd`` =
    saved_calls x the average recorded cost of the key's real calls (integer picodollars).
    """

    events: int = 0
    calls: int = 0
    skipped: int = 0
    batched: int = 0
    pending: int = 0
    saved_calls: int = 0
    spent_picousd: int = 0
    saved_picousd: int = 0

    @property
    def saved_pct(self) -> float:
        return 100.0 * self.saved_calls / self.events if self.events else 0.0
