"""The Pricing page's reads: the catalog routers price with (shipped catalog + the control
plane's overrides), a LiteLLM file compared with it, and the unpriced models of the log."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import pandas as pd
import streamlit as st

from console import auth
from console.inputs.pricing import OVERRIDE_RATES
from console.queries.usage import cached, reader
from core import clock
from core.control import PriceOverride
from core.controls import override_row
from core.pricing import Catalog, Change, PriceRow, Problem, import_litellm, plan_import
from core.pricing import load_catalog as base_catalog


def today() -> date:
    """Price changes take effect on UTC days (as in core.pricing)."""
    return clock.today()


def catalog() -> Catalog:
    """The shipped catalog with the control plane's overrides layered on, as routers see it."""
    base = base_catalog()
    rows = [override_row(o, base) for o in auth.plane().price_overrides()]
    return base.with_rows(rows) if rows else base


@dataclass(frozen=True)
class ImportPreview:
    """A LiteLLM file read and compared with the catalog in force (nothing written yet); every
    change names its provider and compares an entry only with its own provider's."""

    rows: list[PriceRow]
    problems: list[Problem]
    changes: list[Change]
    overrides: list[PriceOverride] = field(default_factory=list)  # what "apply" would write
    new_models: list[PriceOverride] = field(default_factory=list)  # only with "add new"
    not_applicable: int = 0  # tier, batch and context-window changes: not overrides
    skipped_providers: dict[str, int] = field(default_factory=dict)  # not shown: entries


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
        [*problems, *plan.unwritable_problems],
        plan.changes,
        overrides=[_override(r, m, effective_from) for m, r in plan.updates],
        new_models=[_override(r, r.model, effective_from) for r in plan.additions],
        not_applicable=plan.not_applicable,
        skipped_providers=plan.skipped_providers,
    )


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


UNPRICED_SQL = (
    "SELECT model, any_value(provider) AS provider, count(*) AS calls, max(ts) AS last_seen"
    " FROM events WHERE unpriced AND model IS NOT NULL"
    " GROUP BY model ORDER BY calls DESC, model"
)


@cached
def unpriced(home: str, version: str) -> pd.DataFrame:
    """Models the usage log saw without a price, with their call counts."""
    return reader().sql(UNPRICED_SQL)
