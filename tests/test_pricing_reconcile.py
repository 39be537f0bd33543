"""Sub-picodollar rates over a million events: the sum of logged costs equals the sum of
re-pricing each event, and stays within the stated bound of the exact rational total.

The events go the real way: a 1M-row CSV imported into the DuckDB-read Parquet log. The
rounding rule (each token class's exact cost rounded half to even, per call) is written out
here with integers, independently of core."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd

from core.importer import import_csv
from core.pricing import PriceRow, load_catalog, price
from core.types import Usage
from core.usage import Reader

N = 1_000_000
NOW = datetime(2026, 11, 23, tzinfo=UTC)
IN_RATE = Fraction("4687.5")  # USD 0.0046875 per 1M tokens, in pUSD per token
OUT_RATE = Fraction("123456.78912")  # USD 0.12345678912 per 1M tokens


def half_even(tokens: np.ndarray, rate: Fraction) -> np.ndarray:
    """round_half_even(tokens * p / q) per element, in integers."""
    p, q = rate.numerator, rate.denominator
    quot, rem = np.divmod(tokens.astype(np.int64) * p, q)
    return quot + ((2 * rem > q) | ((2 * rem == q) & (quot % 2 == 1)))


def test_a_million_fractional_events_reconcile(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    inp = rng.integers(0, 50_000, N)
    out = rng.integers(0, 4_000, N)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    frame = pd.DataFrame(
        {
            "ts": pd.date_range(start, periods=N, freq="s").strftime("%Y-%m-%dT%H:%M:%SZ"),
            "model": "frac-model",
            "input": inp,
            "output": out,
        }
    )
    path = tmp_path / "million.csv"
    frame.to_csv(path, index=False)
    row = PriceRow.from_usd(
        "frac-model",
        "selfhosted",
        input="0.0046875",
        output="0.12345678912",
        context_window=10**6,
        effective_from=date(2000, 1, 1),
    )
    assert (row.input, row.output) == (IN_RATE, OUT_RATE)
    catalog = load_catalog().with_rows([row])
    mapping = {
        "timestamp": "ts",
        "model": "model",
        "input_tokens": "input",
        "output_tokens": "output",
    }
    result = import_csv(path, mapping, catalog=catalog, now=NOW)
    assert result.imported == N and not result.bad_rows

    with Reader() as reader:
        logged = int(reader.sql("SELECT sum(cost_picousd)::HUGEINT AS s FROM events")["s"][0])
        ev = reader.sql("SELECT input_tokens, output_tokens, cost_picousd FROM events ORDER BY ts")
    tin, tout = ev["input_tokens"].to_numpy(), ev["output_tokens"].to_numpy()
    per_event = half_even(tin, IN_RATE) + half_even(tout, OUT_RATE)
    assert (per_event == ev["cost_picousd"].to_numpy()).all()
    assert logged == int(per_event.sum())  # sum of logged == sum of re-pricing each event
    exact = IN_RATE * int(inp.sum()) + OUT_RATE * int(out.sum())
    bound = Fraction(N)  # 0.5 pUSD per fractional class (2) per event: N pUSD = $0.000001
    assert abs(logged - exact) <= bound
    for i in range(0, N, N // 1000):  # core's own price() gives the logged cost
        u = Usage(input_tokens=int(tin[i]), output_tokens=int(tout[i]))
        assert price(u, row).total == int(ev["cost_picousd"][i])
    assert result.first_ts == start and result.last_ts == start + timedelta(seconds=N - 1)
