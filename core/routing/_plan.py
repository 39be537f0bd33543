"""What a routing policy fixes, worked out once per policy object (and catalog)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from core.pricing import Catalog
from core.routing._values import RouteChoice

if TYPE_CHECKING:
    from core.control import RoutingPolicy

DEFAULT_WEIGHTS = (0.5, 0.2, 0.3)  # cost, latency, quality (core.control Weights defaults)


class PolicyPlan:
    """Names, catalog keys, weights; and the policy's remembered routes (``memo``)."""

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
        "memo",
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
        # route() results of a pure strategy: (prompt, max_tokens, batch, optimize_cost,
        # id(scores)) -> (expires, scores, choice, breaker keys)
        self.memo: dict[tuple[Any, ...], tuple[float, Any, RouteChoice, tuple[str, ...]]] = {}
        w = policy.weights
        total = w.cost + w.latency + w.quality
        self.weights = (
            (w.cost / total, w.latency / total, w.quality / total) if total > 0 else DEFAULT_WEIGHTS
        )


def unique(names: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(n for n in names if n))
