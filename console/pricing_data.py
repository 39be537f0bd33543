"""The Pricing page's data: the catalog routers price with, overrides, LiteLLM imports.

Reads are small functions over core.pricing and the control plane; the writes take the
signed-in Actor and pass it to core, which checks the role (admin) and audits the change.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation

import pandas as pd
import streamlit as st

from console import auth, data
from core.control import Actor, PriceOverride
from core.controls import override_row
from core.errors import ConfigError, CostlineError, PermissionDenied
from core.pricing import Catalog, Change, PriceRow, Problem, import_litellm, plan_import
from core.pricing import load_catalog as base_catalog
from core.pricing.rows import RATE_FIELDS

OVERRIDE_RATES = ("input", "cached_input", "cache_write", "output", "reasoning")
PER_TOKEN_SCALE = 6  # USD per token -> USD per 1M tokens


def today() -> date:
    """Price changes take effect on UTC days (as in core.pricing)."""
    return datetime.now(UTC).date()


# ---- the catalog in force ------------------------------------------------------------------


def catalog() -> Catalog:
    """The shipped catalog with the control plane's overrides layered on, as routers see it."""
    base = base_catalog()
    rows = [override_row(o, base) for o in auth.plane().price_overrides()]
    return base.with_rows(rows) if rows else base


def catalog_frame(cat: Catalog, on: date) -> pd.DataFrame:
    """Every row of ``cat`` with a ``status``: current (in effect on ``on``), superseded
    (an older version) or scheduled (takes effect later)."""
    df = cat.to_frame()
    if df.empty:
        return df.assign(status=pd.Series(dtype=str))
    current: dict[str, date] = {}
    for model, day in zip(df["model"].str.lower(), df["effective_from"], strict=True):
        best = current.get(model)
        if day <= on and (best is None or day > best):
            current[model] = day
    first = df.groupby(df["model"].str.lower())["effective_from"].min().to_dict()

    def status(model: str, day: date) -> str:
        chosen = current.get(model.lower(), first[model.lower()])
        return "current" if day == chosen else "scheduled" if day > on else "superseded"

    df["status"] = [status(m, d) for m, d in zip(df["model"], df["effective_from"], strict=True)]
    for name in RATE_FIELDS:  # display only: exact Decimals would become mixed-scale objects
        df[name] = [None if v is None else float(v) for v in df[name]]
    return df


def search(
    df: pd.DataFrame, text: str, providers: Sequence[str], current_only: bool
) -> pd.DataFrame:
    """Rows whose model, provider, aliases or source contain ``text`` (any case)."""
    keep = pd.Series(True, index=df.index)
    needle = text.strip().lower()
    if needle:
        hay = df["model"] + " " + df["provider"] + " " + df["aliases"] + " " + df["source"]
        keep &= hay.str.lower().str.contains(needle, regex=False)
    if providers:
        keep &= df["provider"].isin(list(providers))
    if current_only:
        keep &= df["status"] == "current"
    return df[keep].reset_index(drop=True)


# ---- overrides -----------------------------------------------------------------------------


def overrides_frame() -> pd.DataFrame:
    rows = [
        {
            "model": o.model,
            "provider": o.provider,
            "effective_from": o.effective_from,
            **{r: None if getattr(o, r) is None else str(getattr(o, r)) for r in OVERRIDE_RATES},
            "note": o.note,
        }
        for o in auth.plane().price_overrides()
    ]
    columns = ["model", "provider", "effective_from", *OVERRIDE_RATES, "note"]
    return pd.DataFrame(rows, columns=columns)


def rate(text: str, name: str, per_token: bool, *, optional: bool) -> Decimal | None:
    """A typed rate as USD per 1M tokens (``per_token``: the text is USD per token)."""
    text = text.strip().lstrip("$").replace(",", "")
    if not text:
        if optional:
            return None
        raise ConfigError(f"{name}: a rate is required", field=name)
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ConfigError(f"{name}: {text!r} is not a number", field=name) from None
    return value.scaleb(PER_TOKEN_SCALE) if per_token else value


def provider_for(model: str, given: str) -> str:
    """The provider whose entry the override prices: the one given, else the catalog's
    (another provider's override of a known model is that provider's own entry)."""
    if given.strip():
        return given.strip()
    cat = base_catalog()
    if cat.has(model):
        return cat.provider_of(model)
    raise ConfigError("provider: a new model needs its provider", field="provider")


def upsert_override(
    actor: Actor,
    model: str,
    provider: str,
    effective_from: date,
    rates: dict[str, Decimal | None],
    note: str,
    new_model: bool,
) -> PriceOverride:
    model, known = model.strip(), base_catalog().has(model.strip())
    if not model:
        raise ConfigError("model: name the model to override", field="model")
    if not known and not new_model:
        raise ConfigError(
            f"model: {model!r} is not a model in the price catalog (tick 'not in"
            " the catalog' to price a new model)",
            field="model",
        )
    override = PriceOverride(
        model=base_catalog().canonical(model) if known else model,
        provider=provider_for(model, provider),
        effective_from=effective_from,
        input=rates["input"],
        output=rates["output"],  # type: ignore[arg-type]
        cached_input=rates.get("cached_input"),
        cache_write=rates.get("cache_write"),
        reasoning=rates.get("reasoning"),
        note=note.strip(),
    )
    return auth.plane().upsert_price_override(override, actor, new_model=not known)


def delete_override(actor: Actor, provider: str, model: str, effective_from: date) -> bool:
    return auth.plane().delete_price_override(provider, model, effective_from, actor)


# ---- LiteLLM import ------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportPreview:
    rows: list[PriceRow]
    problems: list[Problem]
    changes: list[Change]  # each names its provider: never another provider's entry
    overrides: list[PriceOverride] = field(default_factory=list)  # what "apply" would write
    new_models: list[PriceOverride] = field(default_factory=list)  # only with "add new"
    not_applicable: int = 0  # tier, batch and context-window changes: not overrides
    skipped_providers: dict[str, int] = field(default_factory=dict)  # not shown: entries

    def changes_frame(self) -> pd.DataFrame:
        columns = ["provider", "model", "change", "tier above", "field", "old", "new"]
        return pd.DataFrame(
            [
                {
                    "provider": c.provider,
                    "model": c.model,
                    "change": c.kind,
                    "tier above": c.above_prompt_tokens,
                    "field": c.field,
                    "old": _text(c.old),
                    "new": _text(c.new),
                }
                for c in self.changes
            ],
            columns=columns,
        )


@st.cache_data(ttl=600, max_entries=8, show_spinner=False)
def _parse(content: bytes) -> tuple[list[PriceRow], list[Problem]]:
    return import_litellm(content)


def preview_import(
    content: bytes, current: Catalog, effective_from: date, *, own_providers: bool = True
) -> ImportPreview:
    """Parse an uploaded LiteLLM file and compare it with the catalog in force, each entry
    with its own provider's (``own_providers``: only providers the catalog has)."""
    rows, problems = _parse(content)
    plan = plan_import(current, rows, current.providers() if own_providers else None)
    return ImportPreview(
        rows,
        problems,
        plan.changes,
        overrides=[_override(r, m, effective_from) for m, r in plan.updates],
        new_models=[_override(r, r.model, effective_from) for r in plan.additions],
        not_applicable=plan.not_applicable,
        skipped_providers=plan.skipped_providers,
    )


def apply_import(actor: Actor, preview: ImportPreview, add_new: bool) -> tuple[int, list[str]]:
    """Write the preview's overrides (and new models with ``add_new``); returns (written,
    errors). Each override is its own audited write."""
    plane = auth.plane()
    written, errors = 0, []
    known = base_catalog().has
    for override in [*preview.overrides, *(preview.new_models if add_new else [])]:
        try:
            plane.upsert_price_override(override, actor, new_model=not known(override.model))
        except PermissionDenied:
            raise
        except CostlineError as exc:
            errors.append(f"{override.provider}/{override.model}: {exc}")
        else:
            written += 1
    return written, errors


def _override(r: PriceRow, model: str, day: date) -> PriceOverride:
    usd = {name: r.usd(name) for name in OVERRIDE_RATES}
    return PriceOverride(
        model=model,
        provider=r.provider,
        effective_from=day,
        input=usd["input"],
        output=usd["output"],  # type: ignore[arg-type]
        cached_input=usd["cached_input"],
        cache_write=usd["cache_write"],
        reasoning=usd["reasoning"],
        note="LiteLLM import",
    )


def _text(value: object) -> str:
    return "" if value is None else f"{value:,}" if isinstance(value, int) else str(value)


# ---- unpriced models in the usage log ------------------------------------------------------

UNPRICED_SQL = (
    "SELECT model, any_value(provider) AS provider, count(*) AS calls, max(ts) AS last_seen"
    " FROM events WHERE unpriced AND model IS NOT NULL"
    " GROUP BY model ORDER BY calls DESC, model"
)


@data.cached
def unpriced(home: str, version: str) -> pd.DataFrame:
    """Models the usage log saw without a price, with their call counts."""
    return data.reader().sql(UNPRICED_SQL)
