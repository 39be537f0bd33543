"""The Pricing page's tables: the catalog with each row's status, the overrides, and what a
LiteLLM import would change."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import TYPE_CHECKING

import pandas as pd

from console.inputs.pricing import OVERRIDE_RATES
from core.control import PriceOverride
from core.pricing import Catalog
from core.pricing.rows import RATE_FIELDS

if TYPE_CHECKING:  # queries use Streamlit's cache; frames stay pure
    from console.queries.pricing import ImportPreview


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


def overrides_frame(overrides: Sequence[PriceOverride]) -> pd.DataFrame:
    rows = [
        {
            "model": o.model,
            "provider": o.provider,
            "effective_from": o.effective_from,
            **{r: None if getattr(o, r) is None else f"{getattr(o, r):f}" for r in OVERRIDE_RATES},
            "note": o.note,
        }
        for o in overrides
    ]
    columns = ["model", "provider", "effective_from", *OVERRIDE_RATES, "note"]
    return pd.DataFrame(rows, columns=columns)


def changes_frame(preview: ImportPreview) -> pd.DataFrame:
    """One row per change, each with the provider whose entry it changes."""
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
            for c in preview.changes
        ],
        columns=["provider", "model", "change", "tier above", "field", "old", "new"],
    )


def _text(value: object) -> str:
    return "" if value is None else f"{value:,}" if isinstance(value, int) else str(value)
