"""Price writes (admin): overrides and a LiteLLM import. Each passes the signed-in Actor to the
control plane, which checks the role (PermissionDenied) and audits the change."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from console import auth
from console.inputs.pricing import provider_for
from console.queries.pricing import ImportPreview
from core.control import Actor, PriceOverride
from core.errors import ConfigError, CostlineError, PermissionDenied
from core.pricing import load_catalog as base_catalog


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
