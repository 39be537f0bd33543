"""Prices: the catalog in force, overrides (admin), LiteLLM import (dry run, then confirm)."""

from __future__ import annotations

import dataclasses
from datetime import date
from typing import Any

import orjson

from core import clock
from core.api._coerce import build, to_json
from core.api._http import ApiError, Call, Json, Op, Param, Reply, body_object, etag_of
from core.api._schemas import field, list_of, obj
from core.control import PriceOverride
from core.pricing import PriceRow, Rate, usd_per_mtok
from core.pricing.overrides import apply_import, preview_import
from core.pricing.rows import RATE_FIELDS


def _per_million(pico_per_token: Rate | None) -> str | None:
    """pUSD per token (int, or an exact Fraction: an imported or overridden rate that is
    not whole) as exact USD per 1M tokens."""
    return None if pico_per_token is None else f"{usd_per_mtok(pico_per_token):f}"


def row_json(r: PriceRow) -> dict[str, Any]:
    out: dict[str, Any] = {
        "model": r.model,
        "provider": r.provider,
        "effective_from": r.effective_from,
        "above_prompt_tokens": r.above_prompt_tokens,
        "context_window": r.context_window,
        "max_output_tokens": r.max_output_tokens,
        "source": r.source,
    }
    for name in RATE_FIELDS:
        out[f"{name}_usd_per_mtok"] = _per_million(getattr(r, name))
    return out


def list_prices(call: Call) -> Json:
    cat = call.ctx.catalog()
    model = call.arg("model")
    if model is not None and cat.has(model):
        model = cat.canonical(model)  # an alias the router prices as its model (a snapshot)
    rows = [r for r in cat.rows() if model is None or r.model.lower() == model.lower()]
    return {"data": [row_json(r) for r in rows], "unpriced": "unknown models are never $0"}


def list_overrides(call: Call) -> Json:
    return {"data": [to_json(o) for o in call.ctx.plane.price_overrides()]}


def post_override(call: Call) -> Reply:
    """Create (or, with If-Match, replace) the override of (provider, model, day)."""
    data = body_object(call)
    new_model = data.pop("new_model", False)
    if not isinstance(new_model, bool):
        raise ApiError(422, "new_model: must be true or false", "new_model")
    base = call.ctx.base_catalog
    model = data.get("model")
    if isinstance(model, str) and base.has(model) and "provider" not in data:
        data["provider"] = base.provider_of(model)
    value = build(PriceOverride, data, None)
    if base.has(value.model):
        value = dataclasses.replace(value, model=base.canonical(value.model))
    plane = call.ctx.plane
    current = next(
        (
            o
            for o in plane.price_overrides()
            if (o.provider, o.model, o.effective_from)
            == (value.provider, value.model, value.effective_from)
        ),
        None,
    )

    def check(before: Any) -> None:
        from core.api._http import check_if_match

        check_if_match(call, None if before is None else to_json(before), what="price override")

    with plane.expect(check):
        stored = plane.upsert_price_override(
            value, call.actor, new_model=new_model and not base.has(value.model)
        )
    body = to_json(stored)
    return Reply(body, status=200 if current else 201, etag=etag_of(body))


def post_import(call: Call) -> Json:
    """A LiteLLM price file: without ``confirm`` the diff only; with ``confirm: true`` the
    changed base rates (and, with ``add_new``, new models) are written as overrides."""
    data = body_object(call)
    for key in data:  # a typo ("confirmed") must not quietly leave it a dry run
        if key not in IMPORT_FIELDS:
            raise ApiError(422, f"{key}: not a field you can set here", key)
    content = data.get("content")
    if isinstance(content, dict):
        raw = orjson.dumps(content)
    elif isinstance(content, str):
        raw = content.encode()
    else:
        raise ApiError(422, "content: the LiteLLM price JSON (an object or its text)", "content")
    day_text = data.get("effective_from")
    try:
        day = date.fromisoformat(day_text) if day_text else clock.today()
    except (TypeError, ValueError):
        raise ApiError(422, "effective_from: must be a date YYYY-MM-DD", "effective_from") from None
    confirm, add_new = data.get("confirm", False), data.get("add_new", False)
    if not isinstance(confirm, bool) or not isinstance(add_new, bool):
        raise ApiError(422, "confirm and add_new: must be true or false", "confirm")
    preview = preview_import(raw, call.ctx.catalog(), day)
    out: dict[str, Any] = {
        "dry_run": not confirm,
        "changes": [to_json(c) for c in preview.changes],
        "problems": [to_json(p) for p in preview.problems],
        "overrides": [to_json(o) for o in preview.overrides],
        "new_models": [to_json(o) for o in preview.new_models],
        "not_applicable": preview.not_applicable,
    }
    if confirm:
        call.ctx.plane.authorize(call.actor, "price_override")
        written, errors = apply_import(
            call.ctx.plane, call.actor, preview, add_new, call.ctx.base_catalog
        )
        out.update(written=written, errors=errors)
    return out


IMPORT_FIELDS = ("content", "effective_from", "confirm", "add_new")
PRICE_ROW = obj(
    model="string", provider="string", effective_from="date", input_usd_per_mtok="string"
)
OPS = [
    Op(
        "GET",
        "/prices",
        list_prices,
        "The price catalog in force (shipped rows plus overrides), USD per 1M tokens",
        "prices",
        params=(Param("model", {"type": "string"}, "only this model (or an alias of it)"),),
        response=list_of(PRICE_ROW),
    ),
    Op(
        "GET",
        "/prices/overrides",
        list_overrides,
        "Price overrides",
        "prices",
        response=list_of(obj(model="string", provider="string", effective_from="date")),
    ),
    Op(
        "POST",
        "/prices/overrides",
        post_override,
        "Create a price override from a date (admin; If-Match to replace one)",
        "prices",
        body=obj(
            ("model", "effective_from", "input", "output"),
            model="string",
            provider="string",
            effective_from="date",
            input="string",
            output="string",
            cached_input="string",
            cache_write="string",
            reasoning="string",
            note="string",
            new_model="boolean",
        ),
        response=obj(
            model="string",
            provider="string",
            effective_from="date",
            input="string",
            output="string",
            cached_input=field("string", nullable=True),
            cache_write=field("string", nullable=True),
            reasoning=field("string", nullable=True),
            note="string",
        ),
        entity="price_override",
        status=201,
        etag=True,
        also=(200,),
    ),
    Op(
        "POST",
        "/prices/import",
        post_import,
        "Import a LiteLLM price file: dry run returns the diff; confirm=true applies it",
        "prices",
        body=obj(
            ("content",),
            content="object",
            effective_from="date",
            confirm="boolean",
            add_new="boolean",
        ),
        response=obj(dry_run="boolean", changes="array", overrides="array"),
    ),
]
