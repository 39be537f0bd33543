"""Vectorised pricing: the same integers as ``core.pricing.price`` for whole columns.

Each distinct (model, UTC day, context tier) is looked up once in the catalog; the rates are
then gathered per row and multiplied in int64. ``price`` charges each disjoint token class at
its own rate, so doing the same column-wise gives exactly the same picodollars per row. A
fractional rate p/q (see core.pricing.rows) is rounded the same way too: half to even of the
exact product, in integers (``_fraction_costs``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import numpy.typing as npt

from core.pricing import Catalog, Rate

I64 = npt.NDArray[np.int64]
TOKEN_CLASSES: tuple[str, ...] = (
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
)
COST_COLUMNS: tuple[str, ...] = (
    "cost_input_picousd",
    "cost_cached_input_picousd",
    "cost_cache_write_picousd",
    "cost_output_picousd",
    "cost_reasoning_picousd",
)
_RATES = ("input", "cached_input", "cache_write", "output", "reasoning")
_INT64_MAX = np.iinfo(np.int64).max
_EPOCH = date(1970, 1, 1)


@dataclass(frozen=True)
class PricedColumns:
    """Cost per row and token class (pUSD); ``unpriced`` rows (unknown model) cost 0;
    ``overflow`` rows would not fit in int64 (their costs are 0 too)."""

    costs: dict[str, I64]  # keyed by COST_COLUMNS
    unpriced: npt.NDArray[np.bool_]
    overflow: npt.NDArray[np.bool_]
    over_context: npt.NDArray[np.bool_]  # prompt larger than the model's context window

    @property
    def total(self) -> I64:
        out = np.zeros(len(self.unpriced), np.int64)
        for c in self.costs.values():
            out += c
        return out


def _tiers(catalog: Catalog) -> dict[str, list[int]]:
    """Model (lower-case catalog name) -> sorted thresholds of its long-context tiers."""
    out: dict[str, set[int]] = {}
    for r in catalog.rows():
        if r.above_prompt_tokens > 0:
            out.setdefault(r.model.lower(), set()).add(r.above_prompt_tokens)
    return {k: sorted(v) for k, v in out.items()}


def price_columns(
    catalog: Catalog,
    codes: npt.NDArray[np.integer],
    names: Sequence[str],
    days: npt.NDArray[np.datetime64],
    tokens: Mapping[str, npt.ArrayLike],
) -> PricedColumns:
    """Price rows whose model is ``names[codes[i]]`` on UTC day ``days[i]``.

    ``tokens`` maps each of TOKEN_CLASSES to an int64 column (disjoint classes, as in Usage).
    """
    n = len(codes)
    tok = [np.asarray(tokens[k], dtype=np.int64) for k in TOKEN_CLASSES]
    prompt = tok[0] + tok[1] + tok[2]
    codes = np.asarray(codes, dtype=np.int64)
    known = [catalog.has(m) for m in names]
    tiers = _tiers(catalog)
    model_tiers = [
        tiers.get(catalog.canonical(m).lower(), []) if ok else []
        for m, ok in zip(names, known, strict=True)
    ]
    bucket = np.zeros(n, np.int64)
    for code, thresholds in enumerate(model_tiers):
        if thresholds:
            sel = codes == code
            bucket[sel] = np.searchsorted(np.asarray(thresholds), prompt[sel], side="left")
    day = np.asarray(days, dtype="datetime64[D]").astype(np.int64)
    d0 = int(day.min()) if n else 0
    key = (codes * (1 << 24) + (day - d0)) * 64 + bucket
    uniq, inverse = np.unique(key, return_inverse=True)
    rates = np.zeros((len(uniq), len(_RATES)), np.int64)
    fractional: dict[tuple[int, int], Rate] = {}  # (unique key, class) -> a Fraction rate
    unknown = np.zeros(len(uniq), bool)
    windows = np.full(len(uniq), np.iinfo(np.int64).max, np.int64)
    for u, k in enumerate(uniq.tolist()):
        code, rest = divmod(k, (1 << 24) * 64)
        day_off, b = divmod(rest, 64)
        if not known[code]:
            unknown[u] = True
            continue
        at = _EPOCH + timedelta(days=d0 + day_off)
        rep = 0 if b == 0 else model_tiers[code][b - 1] + 1
        row = catalog.lookup(names[code], at, rep)
        windows[u] = row.context_window
        if row.whole:
            rates[u] = [getattr(row, r) for r in _RATES]
            continue
        for i, name in enumerate(_RATES):
            v = getattr(row, name)
            if isinstance(v, int):
                rates[u, i] = v
            else:
                fractional[(u, i)] = v
                rates[u, i] = -(-v.numerator // v.denominator)  # ceiling: for the overflow test
    inverse = inverse.reshape(-1)
    per_row = rates[inverse]
    overflow = np.zeros(n, bool)
    approx = np.zeros(n, np.float64)
    for i, t in enumerate(tok):
        r = per_row[:, i]
        overflow |= t > _INT64_MAX // np.maximum(r, 1)
        approx += t.astype(np.float64) * r
    overflow |= approx > 9.0e18
    unpriced = unknown[inverse]
    zero = overflow | unpriced
    costs = {c: np.where(zero, 0, tok[i] * per_row[:, i]) for i, c in enumerate(COST_COLUMNS)}
    for (u, i), rate in fractional.items():
        sel = np.nonzero((inverse == u) & ~zero)[0]
        costs[COST_COLUMNS[i]][sel] = _fraction_costs(tok[i][sel], rate)
    over_context = prompt > windows[inverse]
    return PricedColumns(costs, unpriced, overflow & ~unpriced, over_context)


def _fraction_costs(tokens: I64, rate: Rate) -> I64:
    """round_half_even(tokens * p / q) per row, exactly (Python ints where int64 is short)."""
    p, q = rate.numerator, rate.denominator
    if len(tokens) and int(tokens.max()) <= _INT64_MAX // max(p, 1):
        quot, rem = np.divmod(tokens * p, q)
        up = (2 * rem > q) | ((2 * rem == q) & (quot % 2 == 1))
        out: I64 = quot + up
        return out
    return np.array([round(int(t) * rate) for t in tokens.tolist()], np.int64)
