"""What importing a price file would change, per (provider, model): the preview an admin
approves before any override is written.

``plan_import(catalog, rows)`` compares every imported row with the same provider's catalog
entry only (``diff_catalogs``): a rate change of an entry the catalog has is an *update* of
that entry, an entry the catalog lacks (a new model, or another provider's entry of a known
model name, e.g. Azure's ``gpt-4o-mini``) is an *addition* under its own provider. Nothing is
ever merged across providers.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field, replace
from fractions import Fraction

from core.pricing.catalog import Catalog
from core.pricing.litellm import Change, Problem, diff_catalogs
from core.pricing.rows import MAX_PICO_DECIMALS, PriceRow, Rate

__all__ = ["ImportPlan", "plan_import"]

UPDATABLE = ("input", "cached_input", "cache_write", "output", "reasoning")  # what overrides hold


@dataclass(frozen=True)
class ImportPlan:
    changes: list[Change]  # every difference, each naming its provider
    updates: list[tuple[str, PriceRow]]  # (catalog name, its row with the imported rates)
    additions: list[PriceRow]  # imported base rows of (provider, model) entries not in the catalog
    skipped_providers: dict[str, int] = field(default_factory=dict)  # not selected: entries
    # (name, row) of updates and additions with a rate no price override can hold (more than
    # 12 decimals of pUSD per token or more than a BIGINT of pUSD per token; never a row
    # ``import_litellm`` reads): not in ``updates``/``additions``
    unwritable: list[tuple[str, PriceRow]] = field(default_factory=list)

    @property
    def unwritable_problems(self) -> list[Problem]:
        """One problem per entry an override cannot hold, naming its rates."""
        return [
            Problem(
                f"{r.provider}/{name}",
                "a price override holds rates of at most 12 decimals of pUSD per token and"
                f" {OVERRIDE_MAX} pUSD per token; "
                + ", ".join(
                    f"{f} {getattr(r, f)} pUSD per token"
                    for f in UPDATABLE
                    if not _holdable(getattr(r, f))
                )
                + " is not: not written as an override",
            )
            for name, r in self.unwritable
        ]

    @property
    def not_applicable(self) -> int:
        """Changes an override cannot hold (tiers, batch rates, token limits)."""
        return sum(
            1
            for c in self.changes
            if c.kind == "changed" and (c.above_prompt_tokens or c.field not in UPDATABLE)
        )


def plan_import(
    current: Catalog, rows: Iterable[PriceRow], providers: Collection[str] | None = None
) -> ImportPlan:
    """The plan for ``rows`` (e.g. ``import_litellm``'s) against ``current``; with
    ``providers`` only those providers' entries are considered (others are counted)."""
    chosen: list[PriceRow] = []
    skipped: dict[str, int] = {}
    for r in rows:
        if providers is None or r.provider in providers:
            chosen.append(r)
        elif r.above_prompt_tokens == 0:
            skipped[r.provider] = skipped.get(r.provider, 0) + 1
    changes = diff_catalogs(current, chosen)
    base = {
        (r.provider, (current.name_under(r.provider, r.model) or r.model).lower()): r
        for r in chosen
        if r.above_prompt_tokens == 0
    }
    changed = {
        (c.provider, c.model)
        for c in changes
        if c.kind == "changed" and c.above_prompt_tokens == 0 and c.field in UPDATABLE
    }
    added = {
        (c.provider, c.model) for c in changes if c.kind == "added" and not c.above_prompt_tokens
    }
    updates = [
        (model, _merged(current.lookup(f"{p}/{model}"), base[(p, model.lower())]))
        for p, model in sorted(changed)
        if (p, model.lower()) in base
    ]
    additions = [base[(p, m.lower())] for p, m in sorted(added) if (p, m.lower()) in base]
    unwritable = [(m, r) for m, r in updates if not _writable(r)]
    unwritable += [(r.model, r) for r in additions if not _writable(r)]
    return ImportPlan(
        changes,
        [(m, r) for m, r in updates if _writable(r)],
        [r for r in additions if _writable(r)],
        dict(sorted(skipped.items())),
        unwritable,
    )


OVERRIDE_MAX = 2**63 - 1  # pUSD per token: an override's rate column is a BIGINT
OVERRIDE_SCALE = 10**MAX_PICO_DECIMALS  # an override holds 12 decimals of pUSD per token


def _holdable(rate: Rate) -> bool:
    """A rate a price override holds exactly (``core.control.validate_price_override``)."""
    return rate <= OVERRIDE_MAX and OVERRIDE_SCALE % Fraction(rate).denominator == 0


def _writable(row: PriceRow) -> bool:
    """Every rate an override holds, it holds exactly."""
    return all(_holdable(getattr(row, f)) for f in UPDATABLE)


def _merged(own: PriceRow, imported: PriceRow) -> PriceRow:
    """The catalog's row with the rates the import states. A rate the import does not state
    keeps the catalog's, it does not fall back to "same as input" (Gemini 1.5 Pro's cached
    input at the full input rate); where the catalog's rate was its own fallback (cached
    input or cache write = input, reasoning = output: an empty cell), it follows the new
    rate it falls back to."""
    stated = imported.stated
    rates = {f: getattr(imported, f) for f in UPDATABLE if stated is None or f in stated}
    for f, fallback in _FALLBACKS.items():
        if f not in rates and fallback in rates and getattr(own, f) == getattr(own, fallback):
            rates[f] = rates[fallback]
    return replace(own, effective_from=imported.effective_from, source=imported.source, **rates)


_FALLBACKS = {"cached_input": "input", "cache_write": "input", "reasoning": "output"}
