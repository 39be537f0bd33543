"""One price row and the exact conversion between catalog prices and picodollars.

Catalog prices are USD per 1M tokens written as decimal strings. A rate is kept in pUSD per
token (10**-12 USD) as an ``int`` when it is whole, else as an exact ``Fraction``:

    USD 2.50 / 1M tokens    = 2.50 * 10**12 / 10**6 pUSD per token = 2_500_000
    USD 0.0046875 / 1M      = 4687.5 pUSD per token                 = Fraction(9375, 2)

Nothing is rounded when a rate is stored; a call's cost is rounded once, to whole pUSD, when
it is priced (see ``core.pricing.cost`` and docs/architecture.md, "Money").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import MAX_PREC, Decimal, InvalidOperation, localcontext
from fractions import Fraction

from core.errors import ConfigError

__all__ = ["PriceRow", "Rate", "parse_usd_per_mtok", "usd_per_mtok"]

Rate = int | Fraction  # pUSD per token: an int when whole, an exact Fraction otherwise

RATE_FIELDS: tuple[str, ...] = (
    "input",
    "cached_input",
    "cache_write",
    "cache_write_1h",
    "output",
    "reasoning",
    "batch_input",
    "batch_output",
)
MAX_PICO_DECIMALS = 12  # a rate finer than 10**-24 USD per token is a broken file, not a price


def exact_rate(d: Decimal, what: object = None) -> Rate:
    """A Decimal number of pUSD per token -> int or Fraction; ValueError if not a finite,
    non-negative number with at most MAX_PICO_DECIMALS decimals."""
    label = d if what is None else what
    if not d.is_finite():
        raise ValueError(f"{label!r} is not a finite number")
    if d < 0:
        raise ValueError(f"{label!r} is negative")
    if d == d.to_integral_value():
        return int(d)
    if -d.normalize().as_tuple().exponent > MAX_PICO_DECIMALS:  # type: ignore[operator]
        raise ValueError(f"{label!r} is finer than 10**-24 USD per token")
    return Fraction(d)


def parse_usd_per_mtok(value: str | Decimal | int) -> Rate:
    """USD per 1M tokens -> pUSD per token (int when whole, else an exact Fraction).
    ValueError if negative, non-numeric or finer than 10**-24 USD per token."""
    try:
        d = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"{value!r} is not a decimal number") from None
    if not d.is_finite():
        raise ValueError(f"{value!r} is not a finite number")
    with localcontext(prec=MAX_PREC):  # scaleb and normalize round to the context's digits
        return exact_rate(d.scaleb(6), value)


def to_decimal(rate: Rate) -> Decimal:
    """A rate (pUSD per token) as an exact Decimal (its denominator divides a power of 10)."""
    if isinstance(rate, int):
        return Decimal(rate)
    num, den = rate.numerator, rate.denominator
    k = 0
    while (10**k) % den:
        k += 1
        if k > 64:
            raise ValueError(f"{rate} is not a finite decimal")
    return Decimal(num * (10**k // den)).scaleb(-k)


def usd_per_mtok(pico_per_token: Rate) -> Decimal:
    """pUSD per token -> exact USD per 1M tokens, without trailing zeros."""
    with localcontext(prec=MAX_PREC):  # scaleb and normalize round to the context's digits
        d = to_decimal(pico_per_token).scaleb(-6)
        return d.quantize(Decimal(1)) if d == d.to_integral_value() else d.normalize()


def _rate(row: PriceRow, name: str, v: object) -> Rate:
    if isinstance(v, Fraction):
        if v.denominator == 1:
            v = v.numerator
        else:
            try:
                to_decimal(v)
            except ValueError:
                raise ConfigError(
                    f"{row.model}: {name} {v} is not a finite decimal number of pUSD", field=name
                ) from None
    if isinstance(v, bool) or not isinstance(v, int | Fraction) or v < 0:
        raise ConfigError(
            f"{row.model}: {name} must be a whole or exact fractional pUSD >= 0: {v!r}", field=name
        )
    return v


@dataclass(frozen=True, slots=True)
class PriceRow:
    """Rates of one (provider, model), in effect from ``effective_from``, for one context tier.

    Every rate is pUSD per token (``Rate``). ``above_prompt_tokens`` is 0 for the base tier;
    a tier row (e.g. 200_000) prices the whole request when the prompt exceeds it.
    ``batch_input``/``batch_output`` are None when the provider has no batch API.
    ``cache_write`` is the default (Anthropic: 5-minute) cache write; ``cache_write_1h`` the
    1-hour one (None: same as ``cache_write``). ``stated`` names the fields the source
    actually gave (an import that leaves out batch rates does not say "no batch API"); None
    means all of them.
    """

    model: str
    provider: str
    effective_from: date
    above_prompt_tokens: int
    context_window: int
    max_output_tokens: int
    input: Rate
    cached_input: Rate
    cache_write: Rate
    output: Rate
    reasoning: Rate
    batch_input: Rate | None = None
    batch_output: Rate | None = None
    quality: int = 50
    aliases: tuple[str, ...] = field(default=())
    source: str = ""
    cache_write_1h: Rate | None = None
    stated: frozenset[str] | None = field(default=None, compare=False)  # None: every field
    whole: bool = field(default=True, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.model or not self.provider:
            raise ConfigError("model and provider must not be empty", field="model")
        whole = True
        for name in RATE_FIELDS:
            v = getattr(self, name)
            if v is None:
                continue
            r = _rate(self, name, v)
            if r is not v:
                object.__setattr__(self, name, r)
            whole = whole and isinstance(r, int)
        if self.cache_write_1h is None:
            object.__setattr__(self, "cache_write_1h", self.cache_write)
        object.__setattr__(self, "whole", whole)
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
        cache_write_1h: str | Decimal | int | None = None,
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

        def opt(v: str | Decimal | int | None) -> Rate | None:
            return None if v is None else parse_usd_per_mtok(v)

        inp, out = parse_usd_per_mtok(input), parse_usd_per_mtok(output)
        write = inp if cache_write is None else parse_usd_per_mtok(cache_write)
        return cls(
            model=model,
            provider=provider,
            effective_from=effective_from,
            above_prompt_tokens=above_prompt_tokens,
            context_window=context_window,
            max_output_tokens=max_output_tokens,
            input=inp,
            cached_input=inp if cached_input is None else parse_usd_per_mtok(cached_input),
            cache_write=write,
            output=out,
            reasoning=out if reasoning is None else parse_usd_per_mtok(reasoning),
            batch_input=opt(batch_input),
            batch_output=opt(batch_output),
            quality=quality,
            aliases=aliases,
            source=source,
            cache_write_1h=opt(cache_write_1h),
        )

    def usd(self, name: str) -> Decimal | None:
        """Rate ``name`` in USD per 1M tokens (None for a missing batch rate)."""
        v = getattr(self, name)
        return None if v is None else usd_per_mtok(v)
