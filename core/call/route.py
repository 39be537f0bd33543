"""Step 4, route: the ordered candidate models of a call.

Controls on: the task policy (or the explicit model and its fallbacks) through the routing
engine - strategy cheapest|fastest|balanced|quality, unhealthy (open circuit) and too-small
models dropped. Controls off (the bare path): the explicit model and its fallbacks, ordered by
cost when ``optimize_cost`` asks. Each name resolves to a provider and the id sent upstream;
an unknown model is ``UnpricedModel`` unless the router allows unpriced calls.
"""

from __future__ import annotations

from core.control import RoutingPolicy
from core.errors import BadRequest, UnpricedModel
from core.routing import by_cost, cost_order_reason
from core.types import ChatRequest

from .context import Context
from .estimate import count
from .state import Call, Candidate

__all__ = ["candidate", "route"]


def route(ctx: Context, call: Call, policy: RoutingPolicy | None) -> None:
    """Fill ``call.pending`` with the candidates, best first, and say why in route_reason."""
    req, ctl = call.req, ctx.controls
    if ctl is None:
        if not req.model:
            raise BadRequest("model: required (task routing needs controls on)", field="model")
        names = [req.model, *req.fallbacks]
        call.route_reason = f"{req.model}: requested"
        if req.optimize_cost and req.fallbacks:
            names, call.route_reason = _cheapest_first(ctx, call, names)
    else:
        first = req.model or (policy.primary_model if policy else "")
        # The engine reads the prompt's size to rank a task policy's models and to order
        # [model, *fallbacks] by cost (optimize_cost); an explicit model alone never needs it.
        sized = not req.model or (req.optimize_cost and bool(req.fallbacks))
        prompt = count(call, first).tokens if first and sized else 0
        choice = ctl.routing.route(req, policy, prompt_tokens=prompt, scores=ctl.scores)
        names = list(choice.models)
        call.route_reason = choice.reason
        call.requested_model = first
    try:
        call.pending = [candidate(ctx, m) for m in names]
    except UnpricedModel as exc:
        raise _named(exc, req) from None


def _named(exc: UnpricedModel, req: ChatRequest) -> UnpricedModel:
    """``exc`` naming the request field that gave the unknown model: a fallback is checked
    with the model, before any provider is called, against the catalog in force (price
    overrides included, so a model priced later is accepted then)."""
    name = exc.model or ""
    if name == req.model or name not in req.fallbacks:
        where = "model"
    else:
        where = f"fallbacks[{req.fallbacks.index(name)}]"
    return UnpricedModel(f"{where}: {exc.message}", field=where, model=name)


def _cheapest_first(ctx: Context, call: Call, names: list[str]) -> tuple[list[str], str]:
    """optimize_cost on the bare path: [model, *fallbacks] by this request's estimated cost
    (as the routing engine orders them), and the route reason saying so."""
    prompt = count(call, names[0]).tokens
    ranked, est = by_cost(ctx.catalog, call.req, tuple(dict.fromkeys(names)), prompt)
    if est is None:  # nothing priced: as requested
        return names, call.route_reason
    return list(ranked), cost_order_reason(ranked[0], names[0], len(ranked), est)


def candidate(ctx: Context, name: str) -> Candidate:
    """The candidate for model ``name``: its provider, upstream id and price row."""
    cat = ctx.catalog
    names = ctx.names
    if names[0] is not cat:  # the catalog changed (price overrides edited): start over
        names = ctx.names = (cat, {})
    got = names[1].get(name)
    if got is None:
        provider, provider_model = _resolve(ctx, name)
        priced = cat.has(name)
        got = (cat.canonical(name) if priced else name, provider, provider_model, priced)
        if len(names[1]) < 4096:
            names[1][name] = got
    model, provider, provider_model, priced = got
    if not priced:
        if not ctx.allow_unpriced:
            raise UnpricedModel(
                f"model {name!r} has no price in the catalog; add a price override or "
                "pass allow_unpriced=True to log it as unpriced",
                model=name,
            )
        return Candidate(name, provider, provider_model, None)
    return Candidate(model, provider, provider_model, cat.lookup(name, None, 0))


def _resolve(ctx: Context, name: str) -> tuple[str, str]:
    """(provider, id sent upstream). An explicit 'provider/' prefix names the provider,
    unless the whole name is itself a catalog model (e.g. Groq's 'openai/gpt-oss-120b')."""
    cat = ctx.catalog
    head, sep, rest = name.partition("/")
    priced = cat.has(name)
    if (
        sep
        and head in ctx.settings.providers
        and not (priced and cat.canonical(name) == name.lower())
    ):
        return head, rest
    if priced:
        provider = cat.provider_of(name)
        prefix = provider + "/"
        return provider, name[len(prefix) :] if name.startswith(prefix) else name
    raise UnpricedModel(
        f"model {name!r} is not in the price catalog and names no configured provider "
        "(use 'provider/model')",
        model=name,
    )
