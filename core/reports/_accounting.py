"""The accounting export: spend per calendar month (in a time zone) and one dimension (org,
project, key, model or tag), in a display currency with the rate used, and the unpriced calls
listed separately and counted (their cost is unknown, so they are in no total).

A call with several tags counts once under each of its tags (a cost-centre split); calls
without a tag are grouped under "(none)". Money is exact: integer picodollars and USD with
12 decimals; the display amount is rounded half-up to the cent once, per row.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

import pandas as pd

from core.errors import ConfigError
from core.export import escape_frame
from core.types import PICO
from core.usage import Filters, Reader

ACCOUNTING_DIMS = ("org", "project", "key", "model", "tag")
NONE = "(none)"
CENT = Decimal("0.01")


@dataclass(frozen=True)
class Accounting:
    """``priced``: month, <dim>, calls, cost_usd, currency, rate, amount. ``unpriced``: month,
    <dim>, model, calls. ``unpriced_calls``: how many calls are in no total."""

    dim: str
    currency: str
    rate: Decimal
    priced: pd.DataFrame
    unpriced: pd.DataFrame

    @property
    def unpriced_calls(self) -> int:
        return int(self.unpriced["calls"].sum()) if len(self.unpriced) else 0

    def csv(self, *, unpriced: bool = False) -> bytes:
        """The priced (or the unpriced) table as CSV for a spreadsheet: a name cell that
        would run as a formula (an org "=HYPERLINK(...)") gets a ``'`` in front, as in the
        usage export (OWASP CSV injection); the money cells are never touched."""
        return escape_frame(self.unpriced if unpriced else self.priced).to_csv(index=False).encode()


def _source(dim: str, where: str) -> tuple[str, str]:
    """(the SELECT expression of the dimension's value, the filtered rows to read): ``facts``
    (raw events plus the hourly rollups of pruned periods, exact after retention) but by tag,
    which rollups do not keep."""
    if dim == "tag":  # one row per tag; untagged calls once, with tag NULL
        tags = "CASE WHEN len(coalesce(tags, [])) = 0 THEN [NULL::VARCHAR] ELSE tags END"
        rows = f"(SELECT *, 1 AS requests, unnest({tags}) AS tag FROM events{where})"
        return "coalesce(tag, ?)", rows
    return f'coalesce(CAST("{dim}" AS VARCHAR), ?)', f"(SELECT * FROM facts{where})"


def accounting(
    reader: Reader,
    filters: Filters,
    dim: str,
    tz: str,
    currency: str = "USD",
    rate: Decimal | str = "1",
) -> Accounting:
    """Month x ``dim`` spend of the calls under ``filters`` (by tag: raw events only)."""
    if dim not in ACCOUNTING_DIMS:
        raise ConfigError(
            f"unknown grouping {dim!r}; choose from {', '.join(ACCOUNTING_DIMS)}", field="dim"
        )
    rate = Decimal(str(rate))
    if rate <= 0:
        raise ConfigError(f"the currency rate must be positive (got {rate})", field="rate")
    where, params = filters.where()
    value, rows = _source(dim, where)
    month = "strftime(timezone(?, ts), '%Y-%m')"
    # a row counts ``requests`` calls, ``un`` of them unpriced (an event: 1, and its flag)
    un = "coalesce(CAST(unpriced AS BIGINT), 0)"
    priced_sql = (
        f"SELECT {month} AS month, {value} AS value,"
        f" sum(requests - {un})::BIGINT AS calls,"
        " CAST(coalesce(sum(cost_picousd), 0) AS VARCHAR) AS cost"
        f" FROM {rows} WHERE requests > {un} GROUP BY 1, 2 ORDER BY 1, 2"
    )
    unpriced_sql = (
        f"SELECT {month} AS month, {value} AS value, coalesce(model, ?) AS model,"
        f" sum({un})::BIGINT AS calls FROM {rows} WHERE {un} > 0"
        " GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
    )
    head = [tz, NONE]
    p = reader.sql(priced_sql, [*head, *params])
    u = reader.sql(unpriced_sql, [*head, NONE, *params])
    usd = [Decimal(int(c)) / PICO for c in p["cost"]]
    priced = pd.DataFrame(
        {
            "month": p["month"].astype(str),
            dim: p["value"].astype(str),
            "calls": p["calls"].astype("int64"),
            "cost_usd": [f"{d:.12f}" for d in usd],
            "currency": currency,
            "rate": str(rate),
            "amount": [f"{(d * rate).quantize(CENT, rounding=ROUND_HALF_UP):.2f}" for d in usd],
        }
    )
    unpriced = pd.DataFrame(
        {
            "month": u["month"].astype(str),
            dim: u["value"].astype(str),
            "model": u["model"].astype(str),
            "calls": u["calls"].astype("int64"),
        }
    )
    return Accounting(dim, currency, rate, priced, unpriced)
