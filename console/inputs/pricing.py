"""Price override editor values: typed rates (per 1M tokens or per token) and the provider."""

from __future__ import annotations

from decimal import MAX_PREC, Decimal, InvalidOperation, localcontext

from console.inputs.text import ungrouped
from core.errors import ConfigError
from core.pricing import load_catalog as base_catalog

OVERRIDE_RATES = ("input", "cached_input", "cache_write", "output", "reasoning")  # what one holds
PER_TOKEN_SCALE = 6  # USD per token -> USD per 1M tokens


def rate(text: str, name: str, per_token: bool, *, optional: bool) -> Decimal | None:
    """A typed rate as USD per 1M tokens (``per_token``: the text is USD per token)."""
    text = ungrouped(text, name)
    if not text:
        if optional:
            return None
        raise ConfigError(f"{name}: a rate is required", field=name)
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ConfigError(f"{name}: {text!r} is not a number", field=name) from None
    if not per_token:
        return value
    try:
        with localcontext(prec=MAX_PREC):  # exact: scaleb rounds to the context's digits
            return value.scaleb(PER_TOKEN_SCALE)
    except ArithmeticError:  # Overflow: an exponent past what Decimal holds
        raise ConfigError(f"{name}: {text!r} is not a rate", field=name) from None


def provider_for(model: str, given: str) -> str:
    """The provider whose entry the override prices: the one given, else the catalog's
    (another provider's override of a known model is that provider's own entry)."""
    if given.strip():
        return given.strip()
    cat = base_catalog()
    if cat.has(model):
        return cat.provider_of(model)
    raise ConfigError("provider: a new model needs its provider", field="provider")
