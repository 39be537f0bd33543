"""The Pricing page's reads: the catalog routers price with (shipped catalog + the control
plane's overrides), a LiteLLM file compared with it, and the unpriced models of the log."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import pandas as pd
import streamlit as st

from console import auth
from console.inputs.pricing import OVERRIDE_RATES
from console.queries.usage import cached, reader
from core.control import PriceOverride
from core.controls import override_row
from core.pricing import Catalog, Change, PriceRow, Problem, diff_catalogs, import_litellm
from core.pricing import load_catalog as base_catalog


def today() -> date:
    """Price changes take effect on UTC days (as in core.pricing)."""
    return datetime.now(UTC).date()


def catalog() -> Catalog:
    """The shipped catalog with the control plane's overrides layered on, as routers see it."""
    base = base_catalog()
    rows = [override_row(o, base) for o in auth.plane().price_overrides()]
    return base.with_rows(rows) if rows else base


@dataclass(frozen=True)
class ImportPreview:
    """A LiteLLM file read and compared with the catalog in force (nothing written yet)."""

    rows: list[PriceRow]
    problems: list[Problem]
    changes: list[Change]
    overrides: list[PriceOverride] = field(default_factory=list)  # what "apply" would write
    new_models: list[PriceOverride] = field(default_factory=list)  # only with "add new"
    not_applicable: int = 0  # tier, batch and context-window changes: not overrides


@st.cache_data(ttl=600, max_entries=8, show_spinner=False)
def _parse(content: bytes) -> tuple[list[PriceRow], list[Problem]]:
    return import_litellm(content)


def preview_import(content: bytes, current: Catalog, effective_from: date) -> ImportPreview:
    """Parse an uploaded LiteLLM file and compare it with the catalog in force."""
    rows, problems = _parse(content)
    changes = diff_catalogs(current, rows)
    imported = _base_rows(rows, current)
    applicable = [
        c
        for c in changes
        if c.kind == "changed" and c.above_prompt_tokens == 0 and c.field in OVERRIDE_RATES
    ]  # base-tier rates: what an override holds
    changed = sorted({c.model for c in applicable})
    added = sorted({c.model for c in changes if c.kind == "added" and c.above_prompt_tokens == 0})
    skipped = sum(1 for c in changes if c.kind == "changed") - len(applicable)
    return ImportPreview(
        rows,
        problems,
        changes,
        overrides=[
            _override(imported[m.lower()], m, current.provider_of(m), effective_from)
            for m in changed
            if m.lower() in imported
        ],
        new_models=[
            _override(imported[m.lower()], m, imported[m.lower()].provider, effective_from)
            for m in added
            if m.lower() in imported
        ],
        not_applicable=skipped,
    )


def _base_rows(rows: Iterable[PriceRow], current: Catalog) -> dict[str, PriceRow]:
    """Imported base-tier rows by the catalog's name (own names beat aliases)."""
    out: dict[str, tuple[bool, PriceRow]] = {}
    for r in rows:
        if r.above_prompt_tokens:
            continue
        name = current.canonical(r.model) if current.has(r.model) else r.model
        own = r.model.lower() == name.lower()
        if name.lower() not in out or (own and not out[name.lower()][0]):
            out[name.lower()] = (own, r)
    return {k: r for k, (_, r) in out.items()}


def _override(r: PriceRow, model: str, provider: str, day: date) -> PriceOverride:
    usd = {name: r.usd(name) for name in OVERRIDE_RATES}
    return PriceOverride(
        model=model,
        provider=provider,
        effective_from=day,
        input=usd["input"],
        output=usd["output"],  # type: ignore[arg-type]
        cached_input=usd["cached_input"],
        cache_write=usd["cache_write"],
        reasoning=usd["reasoning"],
        note="LiteLLM import",
    )


UNPRICED_SQL = (
    "SELECT model, any_value(provider) AS provider, count(*) AS calls, max(ts) AS last_seen"
    " FROM events WHERE unpriced AND model IS NOT NULL"
    " GROUP BY model ORDER BY calls DESC, model"
)


@cached
def unpriced(home: str, version: str) -> pd.DataFrame:
    """Models the usage log saw without a price, with their call counts."""
    return reader().sql(UNPRICED_SQL)
