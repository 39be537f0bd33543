"""The Overview's frames: query results (exact picodollars) -> the small frames its charts draw.

Pure pandas, no Streamlit. Each amount is the exact sum converted to the display currency
once; the totals shown beside a chart are computed from the same integers, so they agree.
"""

from __future__ import annotations

import hashlib
from decimal import Decimal

import pandas as pd

from console.selection import Money

BREAKDOWN_WORDS = "in the selected periods"  # the breakdown bars' labels: '$1.01 in the ...'
BAR_FILL = 0.85  # share of a period a bar covers (the rest is the gap between bars)
LABELS = {
    "minute": "%Y-%m-%d %H:%M",
    "hour": "%Y-%m-%d %H:00",
    "day": "%Y-%m-%d",
    "week": "week of %Y-%m-%d",
    "month": "%Y-%m",
}


def next_period(period: pd.Series, grain: str) -> pd.Series:
    if grain == "month":
        return period + pd.DateOffset(months=1)
    if grain == "minute":
        return period + pd.Timedelta(minutes=1)
    hours = {"hour": 1, "day": 24, "week": 7 * 24}[grain]
    return period + pd.Timedelta(hours=hours)


def _ids(frame: pd.DataFrame) -> list[tuple[object, int]]:
    """Each row's period identity: its start and, by minute or hour, its UTC offset (the
    wall-clock hour a DST fall-back repeats is two periods)."""
    starts = pd.to_datetime(frame["period"]).to_numpy().tolist()
    offsets = frame["utc_offset"].tolist() if "utc_offset" in frame.columns else [0] * len(frame)
    return [(start, int(o)) for start, o in zip(starts, offsets, strict=True)]


def _offset_text(minutes: int) -> str:
    sign, m = ("-" if minutes < 0 else "+"), abs(minutes)
    return f"UTC{sign}{m // 60:02d}:{m % 60:02d}"


def slots(frame: pd.DataFrame, grain: str) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Where each row's period sits on the chart's wall-clock axis (start, length) and its
    label. A wall-clock hour a DST fall-back repeats holds two periods: each takes half of
    the slot, in real-time order, and its label carries its UTC offset."""
    period = pd.to_datetime(frame["period"]).reset_index(drop=True)
    span = next_period(period, grain) - period
    label = period.dt.strftime(LABELS[grain])
    if "utc_offset" not in frame.columns or period.empty:
        return period, span, label
    pairs = frame[["period", "utc_offset"]].drop_duplicates()
    if not pairs["period"].duplicated().any():  # no repeated hour in the range: as they are
        return period, span, label
    seen: dict[object, list[int]] = {}
    for start, offset in set(_ids(frame)):
        seen.setdefault(start, []).append(offset)
    for offsets in seen.values():
        offsets.sort(reverse=True)  # the larger offset came first
    starts, spans, labels = [], [], []
    for (start, offset), at, length, text in zip(_ids(frame), period, span, label, strict=True):
        offsets = seen[start]
        i, n = offsets.index(offset), len(offsets)
        starts.append(at + length * i / n)
        spans.append(length / n)
        labels.append(f"{text} ({_offset_text(offset)})" if n > 1 else text)
    return pd.Series(starts), pd.Series(spans), pd.Series(labels)


TOP_N = 9  # series drawn in their own colour; the rest are summed as OTHER
OTHER = "other"


def top_keys(series: pd.DataFrame, n: int = TOP_N) -> list[str]:
    """The ``n`` keys with the most spend in the range (ties by name)."""
    totals: dict[str, int] = {}
    for key, cost in zip(series["key"].tolist(), series["cost_picousd"].tolist(), strict=True):
        totals[str(key)] = totals.get(str(key), 0) + int(cost)
    return sorted(totals, key=lambda k: (-totals[k], k))[:n]


def series_frame(
    series: pd.DataFrame, money: Money, grain: str, periods: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Rows per (period, key) for spend_over_time: the top ``TOP_N`` keys by spend and
    "other" for the rest (summed exactly per period), with the period's exact total on each
    row (the tooltip's; summed here, not by the browser, from ``periods`` when given: rows
    that count a call once, where the series' rows overlap, stacked by tag)."""
    if not series.empty and series["key"].nunique() > TOP_N + 1:
        series = _fold_other(series, set(top_keys(series)))
    series = series.reset_index(drop=True)
    period, span, label = slots(series, grain)
    starts = _ids(series)  # plain ints/datetimes: cheap to hash
    totals: dict[object, int] = {}
    rows, at = series, starts
    if periods is not None:
        rows, at = periods, _ids(periods)
    for start, cost in zip(at, rows["cost_picousd"], strict=True):
        totals[start] = totals.get(start, 0) + int(cost)
    shown = dict(zip(totals, money.floats(totals.values()), strict=True))
    texts = dict(zip(totals, money.tables(totals.values()), strict=True))
    bottom, top = _stacked(starts, series["key"], series["cost_picousd"], money)
    amounts = money.tables(series["cost_picousd"])
    return pd.DataFrame(
        {
            "period": period,
            "period_end": period + span * BAR_FILL,
            "label": label,
            "key": series["key"],
            "amount": money.floats(series["cost_picousd"]),
            "bottom": bottom,
            "top": top,
            "period_total": [shown[start] for start in starts],
            "requests": series["requests"],
            # the tooltip's text: exact, to the cent, half a cent up, as the tables (a float's
            # ',.2f' in the browser writes $1.005 as $1.00)
            "amount_text": amounts,
            "total_text": [texts[start] for start in starts],
            # each bar's screen-reader label (Vega's own read its stack top as the spend)
            "description": [
                describe(when, key, text, requests_text(n))
                for when, key, text, n in zip(
                    label, series["key"], amounts, series["requests"], strict=True
                )
            ],
            # the exact sums behind ``amount`` (the breakdown's; never sent to the browser)
            "cost_picousd": pd.Series([int(v) for v in series["cost_picousd"]], dtype=object),
        }
    )


def requests_text(n: int) -> str:
    return f"{int(n):,} request{'' if int(n) == 1 else 's'}"


def describe(*parts: object) -> str:
    """A mark's screen-reader label (its ARIA description, written here instead of the one
    Vega-Lite makes from the encoded floats): '2026-11-03 · gpt-4o-mini · $6.51 · 3 requests'."""
    return " · ".join(str(p) for p in parts)


def _fold_other(series: pd.DataFrame, keep: set[str]) -> pd.DataFrame:
    """``series`` with the keys outside ``keep`` summed exactly per period as OTHER: one row
    per (period, UTC offset, key), in that order (plain Python over the rows: a pandas
    groupby with a Python sum per group took ~0.1 s of every cold Overview run)."""
    ids = _ids(series)
    groups: dict[tuple[tuple[object, int], str], list[int]] = {}
    keys, costs, counts = (
        series["key"].tolist(),
        series["cost_picousd"],
        series["requests"].tolist(),
    )
    rows = zip(ids, keys, costs, counts, strict=True)
    for i, (ident, key, cost, n) in enumerate(rows):
        key = key if key in keep else OTHER
        group = groups.get((ident, key))
        if group is None:
            groups[(ident, key)] = [i, int(cost), int(n)]
        else:
            group[1] += int(cost)
            group[2] += int(n)
    order = sorted(groups, key=lambda g: (g[0][0], g[0][1], g[1]))
    kept = ["period", *(["utc_offset"] if "utc_offset" in series.columns else [])]
    out = series[kept].iloc[[groups[g][0] for g in order]].reset_index(drop=True)
    out["key"] = [g[1] for g in order]
    out["cost_picousd"] = pd.Series([groups[g][1] for g in order], dtype=object)
    out["requests"] = pd.Series([groups[g][2] for g in order], dtype="int64")
    return out


def _stacked(
    starts: list[tuple[object, int]], keys: pd.Series, picos: pd.Series, money: Money
) -> tuple[list[float], list[float]]:
    """Where each row's bar sits in its period's stack (bottom, top): the period's rows in
    key order from zero, spend up and refunds (negative) down, each bound the exact running
    sum converted once. The chart draws these (y to y2) instead of stacking in the browser:
    a bar that spans its period (x to x2) with a stacked y is drawn as a flat line."""
    names = [str(k) for k in keys.tolist()]
    costs = [int(p) for p in picos.tolist()]
    order = sorted(range(len(starts)), key=lambda i: (starts[i], names[i]))
    up: dict[object, int] = {}
    down: dict[object, int] = {}
    low, high = [0] * len(starts), [0] * len(starts)
    for i in order:
        cost = costs[i]
        sums = up if cost >= 0 else down
        base = sums.get(starts[i], 0)
        sums[starts[i]] = base + cost
        low[i], high[i] = (base, base + cost) if cost >= 0 else (base + cost, base)
    return money.floats(low), money.floats(high)


def chart_key(scope: object, dim: str, grain: str) -> str:
    """The spend chart's widget key: a new range, filter, stacking or grain is a new chart,
    whose brush starts empty (a brush of other periods never filters it)."""
    digest = hashlib.sha1(repr((scope, dim, grain)).encode()).hexdigest()[:12]
    return f"ov_spend_{digest}"


def chart_ms(period: pd.Series) -> pd.Series:
    """The chart's x values as the browser has them: milliseconds since the epoch of each
    period (naive times read as UTC, as Arrow sends them to the chart's UTC scale)."""
    at = pd.to_datetime(period)
    if at.dt.tz is not None:
        at = at.dt.tz_convert("UTC").dt.tz_localize(None)
    return at.astype("datetime64[ms]").astype("int64")


def breakdown_frame(
    frame: pd.DataFrame, money: Money, window: tuple[float, float] | None = None
) -> pd.DataFrame:
    """The spend chart's breakdown: one row per key with its exact sum over the periods the
    brush selected (``window``: the brush's [start, end] in chart milliseconds, bounds
    included, as Vega-Lite's interval filter tests a bar's ``period``; None: the whole range).
    ``amount`` is the bar's length; ``amount_text`` the tooltip's money, summed here from the
    picodollars of ``frame`` (series_frame output) and rounded once, half up, as the tables:
    the browser sums nothing (its float sum of the bars' amounts wrote $1.005 as 1.00)."""
    rows = frame
    if window is not None:
        at = chart_ms(frame["period"])
        rows = frame[((at >= window[0]) & (at <= window[1])).to_numpy()]
    sums: dict[str, int] = {}
    counts: dict[str, int] = {}
    for key, cost, n in zip(rows["key"], rows["cost_picousd"], rows["requests"], strict=True):
        sums[str(key)] = sums.get(str(key), 0) + int(cost)
        counts[str(key)] = counts.get(str(key), 0) + int(n)
    keys = sorted(sums, key=lambda k: (-sums[k], k))
    texts = money.tables(sums[k] for k in keys)
    return pd.DataFrame(
        {
            "key": pd.Series(keys, dtype=object),
            "amount": money.floats(sums[k] for k in keys),
            "amount_text": texts,
            "requests": pd.Series([counts[k] for k in keys], dtype="int64"),
            "description": [
                describe(k, f"{t} {BREAKDOWN_WORDS}", requests_text(counts[k]))
                for k, t in zip(keys, texts, strict=True)
            ],
        }
    )


def per_1k_frame(series: pd.DataFrame, money: Money, grain: str) -> pd.DataFrame:
    """Cost per 1,000 requests per period (all keys together): ``per_1k`` the line's height,
    ``per_1k_text`` its tooltip text (the exact quotient to four decimals, half up). The
    known cost over the priced requests: an unpriced call (``unpriced``) is not a $0 one,
    and a period of unpriced calls only has no point."""
    if series.empty:
        return pd.DataFrame(
            columns=["period", "label", "per_1k", "per_1k_text", "requests", "description"]
        )
    unpriced = series["unpriced"].tolist() if "unpriced" in series.columns else [0] * len(series)
    sums: dict[tuple[object, int], list[int]] = {}  # period: first row, cost, requests, unpriced
    counts = series["requests"].tolist()
    rows = zip(_ids(series), series["cost_picousd"], counts, unpriced, strict=True)
    for i, (ident, cost, n, u) in enumerate(rows):
        group = sums.get(ident)
        if group is None:
            sums[ident] = [i, int(cost), int(n), int(u)]
        else:
            group[1] += int(cost)
            group[2] += int(n)
            group[3] += int(u)
    order = sorted(sums)  # period, then UTC offset
    kept = ["period", *(["utc_offset"] if "utc_offset" in series.columns else [])]
    grouped = series[kept].iloc[[sums[g][0] for g in order]].reset_index(drop=True)
    grouped["requests"] = pd.Series([sums[g][2] for g in order], dtype="int64")
    period, _, label = slots(grouped, grain)
    priced = [sums[g][2] - sums[g][3] for g in order]
    exact = [
        money.amount(sums[g][1] * 1000) / n if n > 0 else Decimal(0)
        for g, n in zip(order, priced, strict=True)
    ]
    texts = [money.text(x, 4) for x in exact]
    counts = [sums[g][2] for g in order]
    frame = pd.DataFrame(
        {
            "period": period,
            "label": label,
            "per_1k": [float(x) for x in exact],
            "per_1k_text": texts,
            "requests": grouped["requests"].to_numpy(),
            "description": [
                describe(when, f"{t} per 1K requests", requests_text(n))
                for when, t, n in zip(label, texts, counts, strict=True)
            ],
        }
    )
    # a period of unpriced calls only has no known unit cost: no point, not a $0 one
    return frame[[n > 0 or r == 0 for n, r in zip(priced, grouped["requests"], strict=True)]]


def top_frame(top: pd.DataFrame, money: Money) -> pd.DataFrame:
    """name, amount (the bar's length), shown (the amount written beside it and in the
    tooltip: the exact sum to the cent, half a cent up, as the tables show it) and requests."""
    names = [str(n) for n in top["name"]]
    shown = money.tables(top["cost_picousd"])
    return pd.DataFrame(
        {
            "name": names,
            "amount": money.floats(top["cost_picousd"]),
            "shown": shown,
            "requests": top["requests"].to_numpy(),
            "description": [
                describe(n, s, requests_text(r))
                for n, s, r in zip(names, shown, top["requests"], strict=True)
            ],
        }
    )


def total_pico(series: pd.DataFrame) -> int:
    return sum(int(v) for v in series["cost_picousd"])
