"""What a routing policy fixes, worked out once per policy object (and catalog)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from core.pricing import Catalog, PriceRow
from core.routing._values import RouteChoice

if TYPE_CHECKING:
    from core.control import RoutingPolicy

DEFAULT_WEIGHTS = (0.5, 0.2, 0.3)  # cost, latency, quality (core.control Weights defaults)


class FixedRoute(NamedTuple):
    """A route that holds for every prompt up to ``window`` tokens (with max_tokens) whose
    price rows are ``rows`` (one per model of ``choice``), for these ``scores``, until
    ``until`` (monotonic) and while the breakers of ``keys`` are seen closed (see
    RoutingEngine.route)."""

    until: float
    scores: Any
    choice: RouteChoice
    keys: tuple[str, ...]
    rows: tuple[PriceRow, ...]
    window: int


class PolicyPlan:
    """Names, catalog keys, weights; and the policy's size-free route (``fixed``)."""

    __slots__ = (
        "task",
        "strategy",
        "names",
        "keys",
        "priced",
        "degrade",
        "weights",
        "max_tokens",
        "rows",
        "fixed",
    )

    def __init__(self, policy: RoutingPolicy, key: Callable[[str], str], catalog: Catalog) -> None:
        self.task = policy.task
        self.strategy = policy.strategy
        self.max_tokens = policy.max_tokens
        names = unique((policy.primary_model, *policy.fallbacks))
        degrade = policy.degrade_to if policy.degrade_to not in names else None
        self.names = names + ((degrade,) if degrade else ())
        self.degrade = degrade  # ranked last, after the strategy's order
        self.keys = tuple(key(n) for n in self.names)
        self.priced = tuple(catalog.has(n) for n in self.names)
        self.rows = tuple(
            zip(range(len(self.names)), self.names, self.keys, self.priced, strict=True)
        )
        self.fixed: FixedRoute | None = None  # quality/explicit: see RoutingEngine.route
        w = policy.weights
        total = w.cost + w.latency + w.quality
        self.weights = (
            (w.cost / total, w.latency / total, w.quality / total) if total > 0 else DEFAULT_WEIGHTS
        )


def unique(names: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(n for n in names if n))
