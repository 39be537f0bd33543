"""Price overrides against the shipped catalog: the catalog in force, and a LiteLLM price
file compared with it (dry run) and written as overrides (console Pricing page and
``POST /api/v1/prices/import``)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import date

from core.control import Actor, ControlPlane, PriceOverride
from core.errors import CostlineError, PermissionDenied
from core.pricing.catalog import Catalog, load_catalog
from core.pricing.litellm import Change, Problem, import_litellm
from core.pricing.plan import plan_import
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


def preview_import(
    content: bytes,
    current: Catalog,
    effective_from: date,
    *,
    providers: Collection[str] | None = None,
) -> ImportPreview:
    """Parse a LiteLLM price file and compare it with the catalog in force, each entry with
    its own provider's only (``plan_import``, as the Pricing page does): an override holds
    the rates of the (provider, model) entry it is written for, never another provider's
    entry of the same name (Cerebras' rates for Groq's gpt-oss, the free ``codestral``
    entry for Mistral's codestral-latest). ``providers``: only those providers' entries."""
    rows, problems = import_litellm(content)
    plan = plan_import(current, rows, providers)
    return ImportPreview(
        rows,
        [*problems, *plan.unwritable_problems],
        plan.changes,
        overrides=[_override(r, m, r.provider, effective_from) for m, r in plan.updates],
        new_models=[_override(r, r.model, r.provider, effective_from) for r in plan.additions],
        not_applicable=plan.not_applicable,
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
