"""Routing: which models to try for a request, in which order, and why (call step 4).

engine = RoutingEngine(catalog, state)
choice = engine.route(req, snapshot.policy(req.task), prompt_tokens=n, scores=scores)
choice.models, choice.reason, choice.skipped
engine.observe(model, latency_ms, ok=True)        # after every provider attempt
engine.health()                                   # for the console
"""

from core.routing._engine import RoutingEngine
from core.routing._rank import by_cost, cost_order_reason, estimate
from core.routing._values import DEFAULT_OUTPUT_TOKENS, ModelHealth, RouteChoice, usd_text

__all__ = [
    "DEFAULT_OUTPUT_TOKENS",
    "ModelHealth",
    "RouteChoice",
    "RoutingEngine",
    "by_cost",
    "cost_order_reason",
    "estimate",
    "usd_text",
]
