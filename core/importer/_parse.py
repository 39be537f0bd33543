"""Column-wise parsing and checking of the mapped CSV columns (strings in, typed out).

Every check runs on whole columns; Python only formats the reasons of the rows that fail.
A row is imported only when all its fields are good; all of a bad row's problems are listed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from core.importer._formats import SLASH_DATE, iso_dates

MAX_TOKENS = 10**12  # per row and class: more is a broken file, not usage
MAX_PICO = 2**63 - 1
_NAT = np.iinfo(np.int64).min
I64 = npt.NDArray[np.int64]
Mask = npt.NDArray[np.bool_]


class Checker:
    """Collects each bad row's reasons, in check order."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.reasons: dict[int, list[str]] = {}

    def flag(
        self,
        mask: Mask | pa.Array,
        reason: Callable[[int, object], str],
        col: pa.Array | None = None,
    ) -> None:
        m = mask if isinstance(mask, np.ndarray) else _np_bool(mask)
        idx = np.nonzero(m)[0]
        if not len(idx):
            return
        values = col.take(pa.array(idx)).to_pylist() if col is not None else [None] * len(idx)
        for i, v in zip(idx.tolist(), values, strict=True):
            self.reasons.setdefault(i, []).append(reason(i, v))

    def bad_mask(self) -> Mask:
        m = np.zeros(self.n, bool)
        if self.reasons:
            m[np.fromiter(self.reasons, np.int64, len(self.reasons))] = True
        return m


def _np_bool(a: pa.Array | pa.ChunkedArray) -> Mask:
    out: Mask = pc.fill_null(a, False).to_numpy(zero_copy_only=False).astype(bool)
    return out


def clean(col: pa.Array | pa.ChunkedArray) -> pa.Array:
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    return pc.utf8_trim_whitespace(arr)


def ints(ck: Checker, col: pa.Array, field: str, required: bool) -> I64:
    """Whole numbers >= 0 ("12" or "12.0"); empty is 0 unless ``required``."""
    try:  # fast path: every cell is an integer or empty
        fast = pc.cast(text(col), pa.int64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return _ints_slow(ck, col, field, required)
    empty = _np_bool(pc.is_null(fast))
    values: I64 = pc.fill_null(fast, 0).to_numpy(zero_copy_only=False).copy()
    if required:
        ck.flag(empty, lambda i, v: f"{field} is empty")
    ck.flag(values < 0, lambda i, v: f"{field} {v} is negative", col)
    ck.flag(values > MAX_TOKENS, lambda i, v: f"{field} {v} is too large", col)
    values[(values < 0) | (values > MAX_TOKENS)] = 0
    return values


def _ints_slow(ck: Checker, col: pa.Array, field: str, required: bool) -> I64:
    s = pc.replace_substring_regex(col, r"(\d)\.0*$", r"\1")
    empty = _np_bool(pc.equal(s, ""))
    ok = _np_bool(pc.match_substring_regex(s, r"^\d{1,13}$"))
    values: I64 = pc.cast(pc.if_else(pa.array(ok), s, "0"), pa.int64()).to_numpy().copy()
    if required:
        ck.flag(empty, lambda i, v: f"{field} is empty")
    negative = _np_bool(pc.match_substring_regex(s, r"^-\d+$"))
    long = _np_bool(pc.match_substring_regex(s, r"^\d{14,}$"))
    ck.flag(negative, lambda i, v: f"{field} {v} is negative", col)
    ck.flag(
        ~ok & ~empty & ~negative & ~long, lambda i, v: f"{field} {v!r} is not a whole number", col
    )
    ck.flag(long | (values > MAX_TOKENS), lambda i, v: f"{field} {v} is too large", col)
    values[~ok] = 0
    return values


def _slow_cost(text: str) -> int | str:
    """Picodollars of a USD amount the fast path did not take, or the problem."""
    t = text.removeprefix("$").strip()
    if "," in t:
        return "has a comma: say which character is the decimal mark"
    try:
        d = Decimal(t)
    except InvalidOperation:
        return "is not a number of USD"
    if not d.is_finite():
        return "is not a number of USD"
    if d < 0:
        return "is negative"
    pico = d.scaleb(12)
    if pico != pico.to_integral_value():
        return "has more than 12 decimals"
    if pico > MAX_PICO:  # one event's cost is an int64 of picodollars
        return f"is too large: one row's cost is at most ${Decimal(MAX_PICO).scaleb(-12):,}"
    return int(pico)


def cost(
    ck: Checker, col: pa.Array, label: str = "cost", shown: pa.Array | None = None
) -> tuple[I64, Mask]:
    """USD amounts as exact picodollars, and which rows give one (empty cells do not).
    ``shown``: the cells to quote in a bad row's reason (default ``col``)."""
    s = pc.replace_substring_regex(col, r"^\$\s*", "")
    given = ~_np_bool(pc.equal(s, ""))
    parts = pc.extract_regex(s, r"^(?P<i>\d{1,6})(?:\.(?P<f>\d{0,12}))?$")
    fast = _np_bool(pc.is_valid(parts))
    whole = pc.cast(pc.fill_null(pc.struct_field(parts, "i"), "0"), pa.int64())
    frac = pc.utf8_rpad(pc.fill_null(pc.struct_field(parts, "f"), ""), 12, "0")
    pico: I64 = (whole.to_numpy() * 10**12 + pc.cast(frac, pa.int64()).to_numpy()).astype(np.int64)
    slow = np.nonzero(given & ~fast)[0]
    if len(slow):
        texts = s.take(pa.array(slow)).to_pylist()
        problems: dict[int, str] = {}
        for i, text in zip(slow.tolist(), texts, strict=True):
            got = _slow_cost(text)
            if isinstance(got, int):
                pico[i] = got
            else:
                problems[i] = got
                pico[i] = 0
        mask = np.zeros(ck.n, bool)
        mask[list(problems)] = True
        ck.flag(mask, lambda i, v: f"{label} {v!r} {problems[i]}", col if shown is None else shown)
    return pico, given


def signed_cost(
    ck: Checker, col: pa.Array, label: str, column: str, refund: Mask | None
) -> tuple[I64, Mask]:
    """``cost``, but a negative amount is taken on the rows ``refund`` marks (Costline's export
    marks a refund or credit so); on another row it is bad, naming ``column``. Without a
    refund column (``refund`` None: a file from elsewhere) every negative amount is bad."""
    if refund is None:
        return cost(ck, col, label)
    neg = _np_bool(pc.starts_with(col, "-"))
    if not neg.any():
        return cost(ck, col, label)
    rest = pc.replace_substring_regex(col, "^-", "", max_replacements=1)
    pico, given = cost(ck, rest, label, shown=col)
    ck.flag(neg & ~given, lambda i, v: f"{label} {v!r} is not a number of USD", col)
    ck.flag(
        neg & ~refund & (pico != 0),
        lambda i, v: f"{column} {v!r} is negative on a row not marked refund",
        col,
    )
    return np.where(neg, -pico, pico), given


def timestamps(ck: Checker, col: pa.Array, now: datetime, order: str | None = None) -> I64:
    """Microseconds since the epoch (UTC; naive times are taken as UTC). Dates like
    05/11/2023 are read in the given ``order`` ("dmy"/"mdy"); without one they are bad rows,
    never guessed."""
    raw = col
    col = iso_dates(col, order)
    undecided = np.zeros(len(col), bool)
    if order is None:
        undecided = _np_bool(pc.match_substring_regex(col, SLASH_DATE))
        if undecided.any():
            col = pc.if_else(pa.array(undecided), "", col)
    empty = _np_bool(pc.equal(col, "")) & ~undecided
    us = _arrow_times(col)
    if us is None:
        us = _pandas_times(col)
    bad = (us == _NAT) & ~empty & ~undecided
    ck.flag(empty, lambda i, v: "timestamp is empty")
    ck.flag(undecided, lambda i, v: f"timestamp {v!r}: day/month order not given (date_order)", raw)
    ck.flag(bad, lambda i, v: f"timestamp {v!r} is not a date/time", raw)
    limit = int((now + timedelta(days=1)).timestamp() * 1_000_000)
    ck.flag(
        (us > limit) & ~bad & ~empty & ~undecided,
        lambda i, v: f"timestamp {v!r} is in the future",
        raw,
    )
    return us


def _arrow_times(col: pa.Array) -> I64 | None:
    """Fast path: the whole column is ISO 8601, all with offsets or all without."""
    col = text(col)
    for tz in ("UTC", None):
        try:
            ts = pc.cast(col, pa.timestamp("us", tz))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
        out: I64 = pc.fill_null(ts.cast(pa.int64()), _NAT).to_numpy(zero_copy_only=False)
        return out
    return None


def _pandas_times(col: pa.Array) -> I64:
    """Mixed forms: ISO 8601, epoch seconds/milliseconds/microseconds, then anything pandas
    reads. Built as int64 microseconds (pandas picks a unit per call; mixing them raised)."""
    ser = pd.Series(col.to_numpy(zero_copy_only=False), dtype=object)
    out = np.full(len(ser), _NAT, np.int64)
    ts = pd.to_datetime(ser, utc=True, format="ISO8601", errors="coerce")
    ok = ts.notna().to_numpy()
    out[ok] = pd.DatetimeIndex(ts[ok]).as_unit("us").asi8
    need = ~ok & (ser != "").to_numpy()
    if need.any():
        sub = ser[need]
        parts = sub.str.extract(r"^(\d{9,16})(?:\.(\d*))?$")
        epoch = parts[0].notna()
        if epoch.any():  # seconds, milliseconds or microseconds since 1970
            whole = parts[0][epoch].astype(np.int64).to_numpy()
            frac = parts[1][epoch].fillna("").to_numpy(dtype=object)
            unit = np.where(whole < 10**11, 10**6, np.where(whole < 10**14, 10**3, 1))
            us = whole * unit
            for scale, digits in ((10**6, 6), (10**3, 3)):  # the fraction, to the microsecond
                sel = np.nonzero((unit == scale) & (frac != ""))[0]
                if len(sel):
                    fr = pd.Series(frac[sel]).str.ljust(digits, "0").str[:digits]
                    us[sel] += fr.astype(np.int64).to_numpy()
            out[np.nonzero(need)[0][epoch.to_numpy()]] = us
        rest = sub[~epoch.to_numpy()]
        if len(rest):
            more = pd.to_datetime(rest, utc=True, format="mixed", errors="coerce")
            good = more.notna().to_numpy()
            where = np.nonzero(need)[0][~epoch.to_numpy()][good]
            out[where] = pd.DatetimeIndex(more[good]).as_unit("us").asi8
    return out


def text(col: pa.Array) -> pa.Array:
    """Strings with empty cells as nulls."""
    return pc.if_else(pc.equal(col, ""), pa.scalar(None, pa.string()), col)


@dataclass(frozen=True)
class Checked:
    keep: Mask  # rows to import
    blank: Mask  # rows whose mapped cells are all empty (skipped silently)
    reasons: Mapping[int, list[str]]


def finish(ck: Checker, columns: list[pa.Array]) -> Checked:
    """``columns``: the mapped columns, cleaned."""
    blank = np.ones(ck.n, bool)
    for c in columns:
        blank &= _np_bool(pc.equal(c, ""))
    reasons = {i: r for i, r in ck.reasons.items() if not blank[i]}
    return Checked(~ck.bad_mask() & ~blank, blank, reasons)
