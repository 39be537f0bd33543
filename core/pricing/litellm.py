"""Import LiteLLM's ``model_prices_and_context_window.json`` and diff catalogs for a preview.

Chat and responses-mode entries are read; ``sample_spec`` and embedding/image/audio entries
are skipped. Every row is keyed by (provider, model): the provider is the entry's
``litellm_provider`` (``gemini`` -> ``google``, ``cohere_chat`` -> ``cohere``, every
``vertex_ai-*`` -> ``vertex_ai``), and the key's prefix is dropped when it names that provider
(``gemini/gemini-2.5-pro`` -> google's ``gemini-2.5-pro``; the bare key ``gemini-2.5-pro``
is ``vertex_ai-language-models`` and so vertex_ai's). Azure's ``gpt-4o-mini`` is never
OpenAI's: ``diff_catalogs`` compares a catalog entry only with the same provider's entry.

Prices there are floats in USD per token; ``Decimal(repr(x))`` recovers the exact decimal the
file wrote, kept exactly (a whole or fractional number of picodollars, see rows.py). Counts
may be integral floats (``2000000.0``). A bad entry becomes a ``Problem`` and the import goes
on; only an unreadable file raises.

Sanity bounds (an entry outside them is a ``Problem``, named in the preview, never a price):
a rate is at most ``MAX_USD_PER_TOKEN`` (0.001 USD per token, $1,000 per 1M tokens: the
dearest real models cost under $1,000 per 1M; LiteLLM has entries that give a per-1M price
as a per-token one), a context window or output limit at most ``MAX_TOKENS`` (10**9 tokens),
and a model name is 1 to ``MAX_NAME`` (200) characters with no space or control character,
no leading or trailing ``/`` and no empty ``//`` part.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal

from core.errors import ConfigError
from core.pricing.catalog import Catalog, utc_today
from core.pricing.rows import RATE_FIELDS, PriceRow, Rate, exact_rate, usd_per_mtok

__all__ = [
    "Change",
    "Problem",
    "diff_catalogs",
    "import_litellm",
    "litellm_provider",
    "rows_from_litellm",
]

PROVIDER_NAMES = {
    "gemini": "google",
    "text-completion-openai": "openai",
    "cohere_chat": "cohere",
}
MODES = frozenset({"chat", "responses"})
TIERS = (("_above_128k_tokens", 128_000), ("_above_200k_tokens", 200_000))
MAX_USD_PER_TOKEN = Decimal("0.001")  # $1,000 per 1M tokens
MAX_TOKENS = 10**9  # context window, output limit
MAX_NAME = 200
_BAD_NAME = re.compile(r"[\s\x00-\x1f\x7f]|^/|/$|//")


def litellm_provider(name: str) -> str:
    """Costline's provider name for a ``litellm_provider`` value."""
    if name.startswith("vertex_ai-"):
        return "vertex_ai"
    return PROVIDER_NAMES.get(name, name)


def split_key(key: str, litellm_name: str) -> tuple[str, str]:
    """(provider, model) of a LiteLLM key: the prefix is dropped when it names the provider
    (``groq/openai/gpt-oss-120b`` -> groq's ``openai/gpt-oss-120b``)."""
    provider = litellm_provider(litellm_name)
    head, sep, rest = key.partition("/")
    if sep and rest and (head == litellm_name or litellm_provider(head) == provider):
        return provider, rest
    return provider, key


def check_name(name: str) -> None:
    """ValueError unless ``name`` is a sane model name (see the module's bounds)."""
    if not name or len(name) > MAX_NAME:
        raise ValueError(f"model name {name[:MAX_NAME]!r} is not 1 to {MAX_NAME} characters")
    if _BAD_NAME.search(name):
        raise ValueError(
            f"model name {name!r} has a space or control character, a leading or trailing"
            " '/', or an empty '//' part"
        )


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
    provider: str = ""


def _pico(entry: dict[str, Any], key: str) -> Rate | None:
    """USD per token (float, int or numeric string) -> exact pUSD per token."""
    v = entry.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float | str):
        raise ValueError(f"{key} is {type(v).__name__}, not a number")
    try:
        d = Decimal(repr(v)) if isinstance(v, float) else Decimal(str(v).strip())
    except InvalidOperation:
        raise ValueError(f"{key}={v!r} is not a number") from None
    if d.is_finite() and d > MAX_USD_PER_TOKEN:
        raise ValueError(
            f"{key}={v!r} USD per token is more than {MAX_USD_PER_TOKEN} "
            f"(${MAX_USD_PER_TOKEN * 10**6:,.0f} per 1M tokens)"
        )
    try:
        return exact_rate(d.scaleb(12), v)
    except ValueError as exc:
        raise ValueError(f"{key}={exc}") from None


def _count(entry: dict[str, Any], *keys: str) -> int | None:
    """The first of ``keys`` given, as a positive int (``2000000.0`` is 2000000)."""
    for key in keys:
        v = entry.get(key)
        if v is None:
            continue
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ValueError(f"{key}={v!r} is not a positive integer")
        if v > MAX_TOKENS:
            raise ValueError(f"{key}={v!r} is more than {MAX_TOKENS:,} tokens")
        return v
    return None


def _entry_rows(
    key: str, e: dict[str, Any], day: date, source: str, quality: int
) -> list[PriceRow]:
    name = e.get("litellm_provider")
    if not isinstance(name, str) or not name:
        raise ValueError("no litellm_provider")
    provider, model = split_key(key, name)
    check_name(key)
    check_name(model)
    inp, out = _pico(e, "input_cost_per_token"), _pico(e, "output_cost_per_token")
    if inp is None or out is None:
        raise ValueError("input_cost_per_token and output_cost_per_token are required")
    window = _count(e, "max_input_tokens", "max_tokens")
    if window is None:
        raise ValueError("no max_input_tokens or max_tokens")
    max_out = _count(e, "max_output_tokens", "max_tokens") or window
    cached = _pico(e, "cache_read_input_token_cost")
    write = _pico(e, "cache_creation_input_token_cost")
    write_1h = _pico(e, "cache_creation_input_token_cost_above_1hr")
    reasoning = _pico(e, "output_cost_per_reasoning_token")
    b_in = _pico(e, "input_cost_per_token_batches")
    b_out = _pico(e, "output_cost_per_token_batches")
    if (b_in is None) != (b_out is None):  # one batch rate given: the other is the standard one
        b_in, b_out = (inp if b_in is None else b_in), (out if b_out is None else b_out)
    optional = {
        "cached_input": cached,
        "cache_write": write,
        "cache_write_1h": write_1h,
        "reasoning": reasoning,
        "batch_input": b_in,
        "batch_output": b_out,
        "max_output_tokens": _count(e, "max_output_tokens", "max_tokens"),
    }
    stated = frozenset(
        {"input", "output", "context_window"} | {k for k, v in optional.items() if v is not None}
    )
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
        cache_write_1h=write_1h,
        stated=stated,
    )
    rows = [base]
    for suffix, threshold in TIERS:
        t_in = _pico(e, "input_cost_per_token" + suffix)
        t_out = _pico(e, "output_cost_per_token" + suffix)
        if t_in is None and t_out is None:
            continue
        t_cached = _pico(e, "cache_read_input_token_cost" + suffix)
        t_write = _pico(e, "cache_creation_input_token_cost" + suffix)
        tier_stated = {"context_window", "max_output_tokens"} & stated
        for name, v in (
            ("input", t_in),
            ("output", t_out),
            ("cached_input", t_cached),
            ("cache_write", t_write),
        ):
            if v is not None:
                tier_stated.add(name)
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
                cache_write_1h=write_1h,
                stated=frozenset(tier_stated),
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
    """Rows for every chat/responses entry of an already-parsed LiteLLM price map, plus
    problems (a bad entry, or a second entry of the same provider and model).

    Entries of one provider and model (``deepseek-chat`` and ``deepseek/deepseek-chat``,
    both DeepSeek's) are one row: the first, when no rate both state differs; when one does,
    neither is imported (a problem for each, naming the other and both prices): which one
    holds the price is not in the file, and it is never guessed."""
    if not isinstance(data, dict):
        raise ConfigError("LiteLLM price file must hold a JSON object", field="litellm")
    day = effective_from or utc_today()
    src = f"{source} (imported {day.isoformat()})"
    problems: list[Problem] = []
    entries: dict[tuple[str, str], list[tuple[str, list[PriceRow]]]] = {}
    for key, entry in data.items():
        if key == "sample_spec":
            continue
        if not isinstance(entry, dict):
            problems.append(Problem(str(key), "entry is not an object"))
            continue
        if entry.get("mode") not in MODES:
            continue
        try:
            new = _entry_rows(str(key), entry, day, src, quality)
        except (ValueError, TypeError, ConfigError) as exc:
            problems.append(Problem(str(key), getattr(exc, "message", None) or str(exc)))
            continue
        entries.setdefault((new[0].provider, new[0].model.lower()), []).append((str(key), new))
    rows: list[PriceRow] = []
    for (provider, _), found in entries.items():
        first_key, first = found[0]
        if len(found) > 1 and any(_rates_differ(first, other) for _, other in found[1:]):
            prices = ", ".join(f"{k!r} {_io(r)}" for k, r in found)
            for key, _ in found:
                problems.append(
                    Problem(
                        key,
                        f"{provider} lists this model under {len(found)} entries with different"
                        f" prices ({prices} USD per 1M input/output): none is imported, as"
                        " which one is right is not in the file",
                    )
                )
            continue
        rows.extend(first)
        for key, _ in found[1:]:
            problems.append(
                Problem(key, f"same provider and model ({provider}) as entry {first_key!r}")
            )
    return rows, problems


def _io(rows: list[PriceRow]) -> str:
    return f"{usd_per_mtok(rows[0].input)}/{usd_per_mtok(rows[0].output)}"


def _rates_differ(a: list[PriceRow], b: list[PriceRow]) -> bool:
    """A rate both entries state (any tier) that differs."""
    tiers = {r.above_prompt_tokens: r for r in b}
    for ra in a:
        rb = tiers.get(ra.above_prompt_tokens)
        if rb is None:
            continue
        for f in RATE_FIELDS:
            both = (ra.stated is None or f in ra.stated) and (rb.stated is None or f in rb.stated)
            if both and getattr(ra, f) != getattr(rb, f):
                return True
    return False


def import_litellm(
    src: Path | str | bytes,
    *,
    effective_from: date | None = None,
    quality: int = 50,
) -> tuple[list[PriceRow], list[Problem]]:
    """Read a LiteLLM price file (a path, or the file's bytes from an upload; plain JSON or
    gzip-compressed)."""
    name = "upload" if isinstance(src, bytes) else Path(src).name
    try:
        raw = src if isinstance(src, bytes) else Path(src).read_bytes()
        if raw[:2] == b"\x1f\x8b":  # gzip-compressed
            raw = gzip.decompress(raw)
        data = json.loads(raw)
    except (OSError, ValueError, EOFError) as exc:
        raise ConfigError(f"cannot read LiteLLM price file {name}: {exc}", field="litellm") from exc
    return rows_from_litellm(
        data,
        effective_from=effective_from,
        quality=quality,
        source=f"LiteLLM model_prices_and_context_window.json ({name})",
    )


Key = tuple[str, str, int]  # (provider, model name lower-case, tier)


def _latest(rows: Iterable[PriceRow], rename: Catalog | None) -> dict[Key, PriceRow]:
    """(provider, model, tier) -> newest row; a name is resolved through ``rename``'s
    aliases of the same provider only."""
    out: dict[Key, PriceRow] = {}
    best: dict[Key, tuple[bool, date]] = {}
    for r in rows:
        name = (rename.name_under(r.provider, r.model) if rename is not None else None) or r.model
        key = (r.provider, name.lower(), r.above_prompt_tokens)
        pref = (r.model.lower() == key[1], r.effective_from)  # own name beats alias, then newest
        if key not in best or pref > best[key]:
            out[key], best[key] = r, pref
    return out


def diff_catalogs(
    old: Catalog | Iterable[PriceRow], new: Catalog | Iterable[PriceRow]
) -> list[Change]:
    """Added, removed and changed (provider, model, tier) prices between the newest rows.

    A row is compared only with the same provider's entry: another provider's entry of the
    same name is "added" as its own row, never a change. Names in ``new`` are resolved
    through ``old``'s aliases of the same provider, so an imported dated snapshot
    ("claude-sonnet-4-5-20250929") is compared with the catalog model it aliases. "removed"
    lists only providers that ``new`` has rows for. A field the new row does not state
    (``PriceRow.stated``) is no change.
    """
    old_cat = old if isinstance(old, Catalog) else Catalog(old, strict=False)
    a = _latest(old_cat.rows(), None)
    b = _latest(new.rows() if isinstance(new, Catalog) else new, old_cat)
    providers = {k[0] for k in b}
    changes: list[Change] = []
    for key in sorted(a.keys() | b.keys(), key=lambda k: (k[1], k[0], k[2])):
        ra, rb = a.get(key), b.get(key)
        provider, tier = key[0], key[2]
        if rb is None:
            assert ra is not None
            if provider in providers:
                changes.append(Change(ra.model, "removed", tier, provider=provider))
        elif ra is None:
            changes.append(Change(rb.model, "added", tier, provider=provider))
        else:
            stated = rb.stated
            for f in RATE_FIELDS:
                va, vb = getattr(ra, f), getattr(rb, f)
                if va != vb and (stated is None or f in stated):
                    changes.append(
                        Change(
                            ra.model,
                            "changed",
                            tier,
                            f,
                            None if va is None else usd_per_mtok(va),
                            None if vb is None else usd_per_mtok(vb),
                            provider,
                        )
                    )
            for f in ("context_window", "max_output_tokens"):
                if getattr(ra, f) != getattr(rb, f) and (stated is None or f in stated):
                    changes.append(
                        Change(
                            ra.model, "changed", tier, f, getattr(ra, f), getattr(rb, f), provider
                        )
                    )
    return changes
