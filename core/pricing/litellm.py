"""Import LiteLLM's ``model_prices_and_context_window.json`` and diff catalogs for a preview.

Only chat-mode entries are read; ``sample_spec`` and embedding/image/audio entries are skipped.
Prices there are floats in USD per token; ``Decimal(repr(x))`` recovers the exact decimal the
file wrote, which becomes whole picodollars (a bad value is reported, never rounded).
A bad entry becomes a ``Problem`` and the import goes on; only an unreadable file raises.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal

from core.errors import ConfigError
from core.pricing.catalog import Catalog, utc_today
from core.pricing.rows import RATE_FIELDS, PriceRow, usd_per_mtok

__all__ = ["Change", "Problem", "diff_catalogs", "import_litellm", "rows_from_litellm"]

PROVIDER_NAMES = {"gemini": "google", "text-completion-openai": "openai"}
TIERS = (("_above_128k_tokens", 128_000), ("_above_200k_tokens", 200_000))


@dataclass(frozen=True, slots=True)
class Problem:
    key: str
    reason: str


@dataclass(frozen=True, slots=True)
class Change:
    """One difference between two catalogs; rates in USD per 1M tokens."""

    model: str
    kind: Literal["added", "removed", "changed"]
    above_prompt_tokens: int = 0
    field: str = ""
    old: Decimal | int | None = None
    new: Decimal | int | None = None


def _pico(entry: dict[str, Any], key: str) -> int | None:
    """USD per token (float, int or numeric string) -> exact int pUSD per token."""
    v = entry.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float | str):
        raise ValueError(f"{key} is {type(v).__name__}, not a number")
    try:
        d = Decimal(repr(v)) if isinstance(v, float) else Decimal(str(v).strip())
    except InvalidOperation:
        raise ValueError(f"{key}={v!r} is not a number") from None
    if not d.is_finite() or d < 0:
        raise ValueError(f"{key}={v!r} is negative or not finite")
    pico = d.scaleb(12)
    if pico != pico.to_integral_value():
        raise ValueError(f"{key}={v!r} is not a whole number of picodollars per token")
    return int(pico)


def _count(entry: dict[str, Any], *keys: str) -> int | None:
    for key in keys:
        v = entry.get(key)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ValueError(f"{key}={v!r} is not a positive integer")
        return v
    return None


def _entry_rows(
    key: str, e: dict[str, Any], day: date, source: str, quality: int
) -> list[PriceRow]:
    provider = e.get("litellm_provider")
    if not isinstance(provider, str) or not provider:
        raise ValueError("no litellm_provider")
    model = key[len(provider) + 1 :] if key.startswith(provider + "/") else key
    provider = PROVIDER_NAMES.get(provider, provider)
    inp, out = _pico(e, "input_cost_per_token"), _pico(e, "output_cost_per_token")
    if inp is None or out is None:
        raise ValueError("input_cost_per_token and output_cost_per_token are required")
    window = _count(e, "max_input_tokens", "max_tokens")
    if window is None:
        raise ValueError("no max_input_tokens or max_tokens")
    max_out = _count(e, "max_output_tokens", "max_tokens") or window
    cached = _pico(e, "cache_read_input_token_cost")
    write = _pico(e, "cache_creation_input_token_cost")
    reasoning = _pico(e, "output_cost_per_reasoning_token")
    b_in = _pico(e, "input_cost_per_token_batches")
    b_out = _pico(e, "output_cost_per_token_batches")
    if (b_in is None) != (b_out is None):  # one batch rate given: the other is the standard one
        b_in, b_out = (inp if b_in is None else b_in), (out if b_out is None else b_out)
    base = PriceRow(
        model=model,
        provider=provider,
        effective_from=day,
        above_prompt_tokens=0,
        context_window=window,
        max_output_tokens=max_out,
        input=inp,
        cached_input=inp if cached is None else cached,
        cache_write=inp if write is None else write,
        output=out,
        reasoning=out if reasoning is None else reasoning,
        batch_input=b_in,
        batch_output=b_out,
        quality=quality,
        source=source,
    )
    rows = [base]
    for suffix, threshold in TIERS:
        t_in = _pico(e, "input_cost_per_token" + suffix)
        t_out = _pico(e, "output_cost_per_token" + suffix)
        if t_in is None and t_out is None:
            continue
        t_cached = _pico(e, "cache_read_input_token_cost" + suffix)
        t_write = _pico(e, "cache_creation_input_token_cost" + suffix)
        t_in = base.input if t_in is None else t_in
        t_out = base.output if t_out is None else t_out
        # unstated tier cache rates: the base's explicit rate, else "same as (tier) input"
        t_cached = t_cached if t_cached is not None else t_in if cached is None else cached
        t_write = t_write if t_write is not None else t_in if write is None else write
        rows.append(
            PriceRow(
                model=model,
                provider=provider,
                effective_from=day,
                above_prompt_tokens=threshold,
                context_window=window,
                max_output_tokens=max_out,
                input=t_in,
                cached_input=t_cached,
                cache_write=t_write,
                output=t_out,
                reasoning=t_out if reasoning is None else reasoning,
                quality=quality,
                source=source,
            )
        )
    return rows


def rows_from_litellm(
    data: object,
    *,
    effective_from: date | None = None,
    source: str = "LiteLLM model_prices_and_context_window.json",
    quality: int = 50,
) -> tuple[list[PriceRow], list[Problem]]:
    """Rows for every chat entry of an already-parsed LiteLLM price map, plus problems."""
    if not isinstance(data, dict):
        raise ConfigError("LiteLLM price file must hold a JSON object", field="litellm")
    day = effective_from or utc_today()
    src = f"{source} (imported {day.isoformat()})"
    rows: list[PriceRow] = []
    problems: list[Problem] = []
    seen: dict[str, str] = {}
    for key, entry in data.items():
        if key == "sample_spec":
            continue
        if not isinstance(entry, dict):
            problems.append(Problem(str(key), "entry is not an object"))
            continue
        if entry.get("mode") != "chat":
            continue
        try:
            new = _entry_rows(str(key), entry, day, src, quality)
        except (ValueError, TypeError, ConfigError) as exc:
            problems.append(Problem(str(key), getattr(exc, "message", None) or str(exc)))
            continue
        name = new[0].model.lower()
        if name in seen:
            problems.append(Problem(str(key), f"same model name as entry {seen[name]!r}"))
            continue
        seen[name] = str(key)
        rows.extend(new)
    return rows, problems


def import_litellm(
    src: Path | str | bytes,
    *,
    effective_from: date | None = None,
    quality: int = 50,
) -> tuple[list[PriceRow], list[Problem]]:
    """Read a LiteLLM price file (a path, or the file's bytes from an upload)."""
    name = "upload" if isinstance(src, bytes) else Path(src).name
    try:
        raw = src if isinstance(src, bytes) else Path(src).read_bytes()
        data = json.loads(raw)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read LiteLLM price file {name}: {exc}", field="litellm") from exc
    return rows_from_litellm(
        data,
        effective_from=effective_from,
        quality=quality,
        source=f"LiteLLM model_prices_and_context_window.json ({name})",
    )


def _latest(rows: Iterable[PriceRow], rename: Catalog | None) -> dict[tuple[str, int], PriceRow]:
    """(model key, tier) -> newest row; names resolved through ``rename`` when given."""
    out: dict[tuple[str, int], PriceRow] = {}
    best: dict[tuple[str, int], tuple[bool, date]] = {}
    for r in rows:
        name = rename.canonical(r.model) if rename is not None and rename.has(r.model) else r.model
        key = (name.lower(), r.above_prompt_tokens)
        pref = (r.model.lower() == key[0], r.effective_from)  # own name beats alias, then newest
        if key not in best or pref > best[key]:
            out[key], best[key] = r, pref
    return out


def diff_catalogs(
    old: Catalog | Iterable[PriceRow], new: Catalog | Iterable[PriceRow]
) -> list[Change]:
    """Added, removed and changed (model, tier) prices between the newest rows of each side.

    Names in ``new`` are resolved through ``old``'s aliases, so an imported dated snapshot
    ("claude-sonnet-4-5-20250929") is compared with the catalog model it aliases.
    """
    old_cat = old if isinstance(old, Catalog) else Catalog(old, strict=False)
    a = _latest(old_cat.rows(), None)
    b = _latest(new.rows() if isinstance(new, Catalog) else new, old_cat)
    changes: list[Change] = []
    for key in sorted(a.keys() | b.keys()):
        ra, rb = a.get(key), b.get(key)
        if rb is None:
            assert ra is not None
            changes.append(Change(ra.model, "removed", key[1]))
        elif ra is None:
            changes.append(Change(rb.model, "added", key[1]))
        else:
            for f in RATE_FIELDS:
                va, vb = getattr(ra, f), getattr(rb, f)
                if va != vb:
                    changes.append(
                        Change(
                            ra.model,
                            "changed",
                            key[1],
                            f,
                            None if va is None else usd_per_mtok(va),
                            None if vb is None else usd_per_mtok(vb),
                        )
                    )
            for f in ("context_window", "max_output_tokens"):
                if getattr(ra, f) != getattr(rb, f):
                    changes.append(
                        Change(ra.model, "changed", key[1], f, getattr(ra, f), getattr(rb, f))
                    )
    return changes
