"""Ordering candidates by strategy: pure functions over per-request numbers.

    cheapest   estimated cost of this request (prompt at the input rate + expected output at
               the output rate), cheapest first
    fastest    EWMA latency; models with no latency yet come after those with one
    quality    quality score 0..1 (console overrides, else the catalog's 0-100 / 100)
    balanced   wc*(1-cost') + wl*(1-latency') + wq*quality', each term min-max normalised over
               the candidates (unknown latency counts as the middle, 0.5); highest first
    explicit   the policy's own order

Ties keep the policy's order (``pos``). ``optimize_cost`` re-sorts the strategy's order by
cost (stable, so the strategy still breaks ties).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from core.pricing import Catalog, PriceRow
from core.routing._values import DEFAULT_OUTPUT_TOKENS, usd_text
from core.types import ChatRequest


def estimate(row: PriceRow, prompt_tokens: int, out_tokens: int, batch: bool = False) -> int:
    """Estimated pUSD of one request: prompt at the input rate, expected output at the output
    rate (the provider's batch rates for a batch request, when it has them)."""
    inp, out = row.input, row.output
    if batch and row.batch_input is not None and row.batch_output is not None:
        inp, out = row.batch_input, row.batch_output
    return math.ceil(prompt_tokens * inp + out_tokens * out)  # a fractional rate rounds up


@dataclass(slots=True)
class Scored:
    pos: int  # position in the policy (primary 0)
    name: str
    key: str  # catalog name: breaker and latency key
    cost: int  # estimated pUSD of this request
    latency: float | None  # EWMA ms, None when unknown
    quality: float  # 0..1
    override: bool  # quality came from an editable score
    window: int  # context window, tokens
    score: float = 0.0  # balanced score


def _cost_key(s: Scored) -> int:
    return s.cost


def _pos_key(s: Scored) -> int:
    return s.pos


def _cheap_key(s: Scored) -> tuple[int, int]:
    return s.cost, s.pos


def _fast_key(s: Scored) -> tuple[bool, float, int]:
    lat = s.latency
    return (True, 0.0, s.pos) if lat is None else (False, lat, s.pos)


def _quality_key(s: Scored) -> tuple[float, int]:
    return -s.quality, s.pos


def _score_key(s: Scored) -> tuple[float, int]:
    return -s.score, s.pos


def score_balanced(items: list[Scored], wc: float, wl: float, wq: float) -> None:
    """Fill ``score`` (higher is better); weights must sum to 1."""
    costs = [s.cost for s in items]
    quals = [s.quality for s in items]
    lats = [s.latency for s in items if s.latency is not None]
    cmin, qmin = min(costs), min(quals)
    cspan, qspan = max(costs) - cmin, max(quals) - qmin
    lmin = min(lats) if lats else 0.0
    lspan = (max(lats) - lmin) if lats else 0.0
    for s in items:
        c = 1.0 - (s.cost - cmin) / cspan if cspan else 1.0
        lat = 0.5 if s.latency is None else (1.0 - (s.latency - lmin) / lspan if lspan else 1.0)
        q = (s.quality - qmin) / qspan if qspan else 1.0
        s.score = wc * c + wl * lat + wq * q


def order(
    items: list[Scored],
    strategy: str,
    weights: tuple[float, float, float],
    optimize_cost: bool,
) -> list[Scored]:
    if strategy == "cheapest":
        ranked = sorted(items, key=_cheap_key)
    elif strategy == "fastest":
        ranked = sorted(items, key=_fast_key)
    elif strategy == "quality":
        ranked = sorted(items, key=_quality_key)
    elif strategy == "balanced":
        score_balanced(items, *weights)
        ranked = sorted(items, key=_score_key)
    else:  # explicit
        ranked = sorted(items, key=_pos_key)
    if optimize_cost and strategy != "cheapest":
        ranked.sort(key=_cost_key)
    return ranked


def _ms(latency: float | None) -> str:
    return "no latency data yet" if latency is None else f"{latency:.0f} ms"


def _quality(s: Scored) -> str:
    return f"quality {s.quality:.2f}" + (" (score override)" if s.override else "")


def strategy_reason(first: Scored, strategy: str, n: int, task: str, optimize_cost: bool) -> str:
    """One line for the chosen model, e.g. 'gpt-4o-mini: cheapest of 3 for task summarize
    (est $0.00042)'."""
    est = usd_text(first.cost)
    if optimize_cost and strategy != "cheapest":
        return (
            f"{first.name}: cheapest of {n} for task {task} "
            f"(optimize_cost over the {strategy} strategy; est {est})"
        )
    if strategy == "cheapest":
        extra = "; optimize_cost" if optimize_cost else ""
        return f"{first.name}: cheapest of {n} for task {task} (est {est}{extra})"
    if strategy == "fastest":
        return f"{first.name}: fastest of {n} for task {task} ({_ms(first.latency)})"
    if strategy == "quality":
        return f"{first.name}: highest quality of {n} for task {task} ({_quality(first)})"
    if strategy == "balanced":
        return (
            f"{first.name}: best balanced score of {n} for task {task} "
            f"(score {first.score:.2f}: est {est}, {_ms(first.latency)}, {_quality(first)})"
        )
    return f"{first.name}: primary for task {task}"


def by_cost(
    catalog: Catalog, req: ChatRequest, names: tuple[str, ...], prompt_tokens: int
) -> tuple[tuple[str, ...], int | None]:
    """``optimize_cost`` for [model, *fallbacks]: cheapest first by this request's estimate
    (stable; unpriced names keep their order after the priced ones), and the first one's
    estimate (None: nothing priced)."""
    out_tokens = req.max_tokens or DEFAULT_OUTPUT_TOKENS
    costs: dict[str, int | None] = {}
    for name in names:
        if catalog.has(name):
            row = catalog.lookup(name, None, prompt_tokens)
            costs[name] = estimate(row, prompt_tokens, out_tokens, req.batch)
        else:
            costs[name] = None
    ranked = sorted(names, key=lambda n: (costs[n] is None, costs[n] or 0))
    return tuple(ranked), costs[ranked[0]]


def cost_order_reason(first: str, requested: str, n: int, est: int) -> str:
    """route_reason of an explicit model whose candidates optimize_cost re-ordered."""
    if first == requested:
        return f"{first}: requested, cheapest of {n} (optimize_cost)"
    return (
        f"{first}: cheapest of {n} (optimize_cost over the requested order, {requested} "
        f"first; est {usd_text(est)})"
    )
