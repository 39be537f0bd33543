"""Price overrides against the shipped catalog: the catalog in force, and a LiteLLM price
file compared with it (dry run) and written as overrides (console Pricing page and
``POST /api/v1/prices/import``)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date

from core.control import Actor, ControlPlane, PriceOverride
from core.errors import CostlineError, PermissionDenied
from core.pricing.catalog import Catalog, load_catalog
from core.pricing.litellm import Change, Problem, diff_catalogs, import_litellm
from core.pricing.rows import PriceRow

OVERRIDE_RATES = ("input", "cached_input", "cache_write", "output", "reasoning")


def catalog_in_force(plane: ControlPlane, base: Catalog | None = None) -> Catalog:
    """The shipped catalog with the control plane's overrides layered on, as routers see it."""
    from core.controls import override_row

    base = base if base is not None else load_catalog()
    rows = [override_row(o, base) for o in plane.price_overrides()]
    return base.with_rows(rows) if rows else base


@dataclass(frozen=True)
class ImportPreview:
    rows: list[PriceRow]
    problems: list[Problem]
    changes: list[Change]
    overrides: list[PriceOverride] = field(default_factory=list)  # what "apply" would write
    new_models: list[PriceOverride] = field(default_factory=list)  # only with "add new"
    not_applicable: int = 0  # tier, batch and context-window changes: not overrides


def preview_import(content: bytes, current: Catalog, effective_from: date) -> ImportPreview:
    """Parse a LiteLLM price file and compare it with the catalog in force."""
    rows, problems = import_litellm(content)
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


def apply_import(
    plane: ControlPlane, actor: Actor, preview: ImportPreview, add_new: bool, base: Catalog
) -> tuple[int, list[str]]:
    """Write the preview's overrides (and new models with ``add_new``); returns (written,
    errors). Each override is its own audited write."""
    written, errors = 0, []
    for override in [*preview.overrides, *(preview.new_models if add_new else [])]:
        try:
            plane.upsert_price_override(override, actor, new_model=not base.has(override.model))
        except PermissionDenied:
            raise
        except CostlineError as exc:
            errors.append(f"{override.model}: {exc}")
        else:
            written += 1
    return written, errors


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
        input=usd["input"],  # type: ignore[arg-type]
        output=usd["output"],  # type: ignore[arg-type]
        cached_input=usd["cached_input"],
        cache_write=usd["cache_write"],
        reasoning=usd["reasoning"],
        note="LiteLLM import",
    )
