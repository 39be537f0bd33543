"""One price row and the exact conversion between catalog prices and picodollars.

Catalog prices are USD per 1M tokens written as decimal strings. With at most six decimals
such a price is an exact integer number of picodollars (pUSD, 10**-12 USD) per token:

    USD 2.50 / 1M tokens = 2.50 * 10**12 / 10**6 pUSD per token = 2_500_000 pUSD per token
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation

from core.errors import ConfigError

__all__ = ["PriceRow", "parse_usd_per_mtok", "usd_per_mtok"]

RATE_FIELDS: tuple[str, ...] = (
    "input",
    "cached_input",
    "cache_write",
    "output",
    "reasoning",
    "batch_input",
    "batch_output",
)


def parse_usd_per_mtok(value: str | Decimal | int) -> int:
    """USD per 1M tokens -> integer pUSD per token. ValueError if negative, non-numeric or
    finer than 10**-6 USD per 1M tokens (which would not be a whole picodollar)."""
    try:
        d = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"{value!r} is not a decimal number") from None
    if not d.is_finite():
        raise ValueError(f"{value!r} is not a finite number")
    if d < 0:
        raise ValueError(f"{value!r} is negative")
    pico = d.scaleb(6)
    if pico != pico.to_integral_value():
        raise ValueError(f"{value!r} has more than 6 decimals (not a whole pUSD per token)")
    return int(pico)


def usd_per_mtok(pico_per_token: int) -> Decimal:
    """Integer pUSD per token -> exact USD per 1M tokens, without trailing zeros."""
    d = Decimal(pico_per_token).scaleb(-6)
    return d.quantize(Decimal(1)) if d == d.to_integral_value() else d.normalize()


@dataclass(frozen=True, slots=True)
class PriceRow:
    """Rates of one model, in effect from ``effective_from``, for one context tier.

    Every rate is integer pUSD per token. ``above_prompt_tokens`` is 0 for the base tier;
    a tier row (e.g. 200_000) prices the whole request when the prompt exceeds it.
    ``batch_input``/``batch_output`` are None when the provider has no batch API.
    """

    model: str
    provider: str
    effective_from: date
    above_prompt_tokens: int
    context_window: int
    max_output_tokens: int
    input: int
    cached_input: int
    cache_write: int
    output: int
    reasoning: int
    batch_input: int | None = None
    batch_output: int | None = None
    quality: int = 50
    aliases: tuple[str, ...] = field(default=())
    source: str = ""

    def __post_init__(self) -> None:
        for name in RATE_FIELDS:
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v < 0):
                raise ConfigError(f"{self.model}: {name} must be an int >= 0: {v!r}", field=name)
        if (self.batch_input is None) != (self.batch_output is None):
            raise ConfigError(
                f"{self.model}: give both batch_input and batch_output or neither",
                field="batch_input",
            )
        if self.above_prompt_tokens < 0:
            raise ConfigError(f"{self.model}: above_prompt_tokens < 0", field="above_prompt_tokens")
        if self.context_window <= 0 or self.max_output_tokens <= 0:
            raise ConfigError(f"{self.model}: token limits must be > 0", field="context_window")
        if not 0 <= self.quality <= 100:
            raise ConfigError(f"{self.model}: quality must be 0-100", field="quality")
        if not self.model or not self.provider:
            raise ConfigError("model and provider must not be empty", field="model")

    @classmethod
    def from_usd(
        cls,
        model: str,
        provider: str,
        *,
        input: str | Decimal | int,
        output: str | Decimal | int,
        cached_input: str | Decimal | int | None = None,
        cache_write: str | Decimal | int | None = None,
        reasoning: str | Decimal | int | None = None,
        batch_input: str | Decimal | int | None = None,
        batch_output: str | Decimal | int | None = None,
        effective_from: date = date(2000, 1, 1),
        above_prompt_tokens: int = 0,
        context_window: int = 128_000,
        max_output_tokens: int = 16_384,
        quality: int = 50,
        aliases: tuple[str, ...] = (),
        source: str = "",
    ) -> PriceRow:
        """Build a row from USD-per-1M prices (None = the catalog's empty-cell default)."""

        def opt(v: str | Decimal | int | None) -> int | None:
            return None if v is None else parse_usd_per_mtok(v)

        inp, out = parse_usd_per_mtok(input), parse_usd_per_mtok(output)
        return cls(
            model=model,
            provider=provider,
            effective_from=effective_from,
            above_prompt_tokens=above_prompt_tokens,
            context_window=context_window,
            max_output_tokens=max_output_tokens,
            input=inp,
            cached_input=inp if cached_input is None else parse_usd_per_mtok(cached_input),
            cache_write=inp if cache_write is None else parse_usd_per_mtok(cache_write),
            output=out,
            reasoning=out if reasoning is None else parse_usd_per_mtok(reasoning),
            batch_input=opt(batch_input),
            batch_output=opt(batch_output),
            quality=quality,
            aliases=aliases,
            source=source,
        )

    def usd(self, name: str) -> Decimal | None:
        """Rate ``name`` in USD per 1M tokens (None for a missing batch rate)."""
        v = getattr(self, name)
        return None if v is None else usd_per_mtok(v)
