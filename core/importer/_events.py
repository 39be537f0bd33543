"""The event fields besides usage (status, error, tags, flags, latency, metadata ...): checked
column-wise like the rest, so Costline's own export imported back keeps what a report reads.

None of them is part of a row's key (see _keys): a file imported before these fields were
mapped has the same keys when imported again with them.
"""

from __future__ import annotations

import json
import math

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from core.importer._parse import Checker, cost, ints, text
from core.types import CRITICALITIES
from core.usage import STATUSES

TEXTS = ("error_type", "error_message", "app", "requested_model", "route_reason", "key")
BOOLS = {"usage_estimated": False, "cache_hit": False, "ai_called": True, "degraded": False}
_TRUE = ("true", "t", "1", "yes", "y")
_FALSE = ("false", "f", "0", "no", "n")
MAX_MS = 10.0**10  # a latency of 115 days is a broken file, not a call
MAX_ATTEMPT = 2**31 - 1


def parse(ck: Checker, col: dict[str, pa.Array], fields: dict[str, str]) -> dict[str, pa.Array]:
    """SCHEMA column -> values of every row (bad cells flagged on ``ck``), for the mapped
    event fields only; ``metadata`` is the given JSON object's text (null when empty)."""
    n = ck.n
    out: dict[str, pa.Array] = {}
    for f in TEXTS:
        if f in col:
            out[f] = text(col[f])
    if "status" in col:
        out["status"] = _choice(ck, col["status"], fields["status"], STATUSES, "ok")
    if "criticality" in col:
        out["criticality"] = _choice(
            ck, col["criticality"], fields["criticality"], CRITICALITIES, "normal"
        )
    for f, default in BOOLS.items():
        if f in col:
            out[f] = bools(ck, col[f], fields[f], default)
    if "attempt" in col:
        v = ints(ck, col["attempt"], fields["attempt"], False)
        empty = _np(pc.equal(col["attempt"], ""))
        ck.flag(
            ~empty & (v > MAX_ATTEMPT),
            lambda i, x: f"{fields['attempt']} {x!r} is too large",
            col["attempt"],
        )
        out["attempt"] = pa.array(np.where(empty | (v > MAX_ATTEMPT), 1, v), pa.int32())
    if "cache_write_1h_tokens" in col:
        f = "cache_write_1h_tokens"
        out[f] = pa.array(ints(ck, col[f], fields[f], False), pa.int64())
    if "saved" in col:  # negative for a call that only wrote the cache
        raw = col["saved"]
        neg = _np(pc.starts_with(raw, "-"))
        pico, _ = cost(
            ck, pc.replace_substring_regex(raw, "^-", "", max_replacements=1), fields["saved"]
        )
        out["saved_picousd"] = pa.array(np.where(neg, -pico, pico), pa.int64())
    for f in ("latency_ms", "ttft_ms"):
        if f in col:
            out[f] = _millis(ck, col[f], fields[f])
    if "tags" in col:
        out["tags"] = _tags(col["tags"])
    if "metadata" in col:
        out["metadata"] = _metadata(ck, col["metadata"], fields["metadata"])
    assert all(len(a) == n for a in out.values())
    return out


def _np(mask: pa.Array) -> npt.NDArray[np.bool_]:
    out: npt.NDArray[np.bool_] = pc.fill_null(mask, False).to_numpy(zero_copy_only=False)
    return out.astype(bool)


def _choice(
    ck: Checker, raw: pa.Array, column: str, allowed: tuple[str, ...], default: str
) -> pa.Array:
    low = pc.utf8_lower(raw)
    bad = pc.and_(pc.not_equal(low, ""), pc.invert(pc.is_in(low, value_set=pa.array(allowed))))
    ck.flag(bad, lambda i, v: f"{column} {v!r} is not one of {', '.join(allowed)}", raw)
    return pc.if_else(pc.equal(low, ""), pa.scalar(default), low)


def bools(ck: Checker, raw: pa.Array, column: str, default: bool) -> pa.Array:
    low = pc.utf8_lower(raw)
    yes = pc.is_in(low, value_set=pa.array(_TRUE))
    no = pc.is_in(low, value_set=pa.array(_FALSE))
    empty = pc.equal(low, "")
    bad = pc.invert(pc.or_(pc.or_(yes, no), empty))
    ck.flag(bad, lambda i, v: f"{column} {v!r} is not true or false", raw)
    return pc.if_else(yes, True, pc.if_else(no, False, default))


def _millis(ck: Checker, raw: pa.Array, column: str) -> pa.Array:
    """Milliseconds >= 0 (empty: unknown, null); each distinct text is read once."""
    try:  # fast path: every cell is a number or empty
        fast = pc.cast(text(raw), pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        fast = None
    if fast is not None:
        v = pc.fill_null(fast, 0.0).to_numpy(zero_copy_only=False)
        wrong = ~np.isfinite(v) | (v < 0) | (v > MAX_MS)
        ck.flag(wrong, lambda i, x: f"{column} {x!r} is not a number of milliseconds >= 0", raw)
        null = _np(pc.is_null(fast)) | wrong
        return pa.array(np.where(null, 0.0, v), pa.float64(), mask=null)
    enc = pc.dictionary_encode(raw)
    words = enc.dictionary.to_pylist()
    value = np.zeros(len(words), np.float64)
    null = np.zeros(len(words), bool)
    wrong = np.zeros(len(words), bool)
    for k, s in enumerate(words):
        if s == "":
            null[k] = True
            continue
        try:
            x = float(s)
        except ValueError:
            x = math.nan
        if math.isfinite(x) and 0 <= x <= MAX_MS:
            value[k] = x
        else:
            wrong[k] = null[k] = True
    codes = enc.indices.to_numpy(zero_copy_only=False)
    ck.flag(wrong[codes], lambda i, v: f"{column} {v!r} is not a number of milliseconds >= 0", raw)
    return pa.array(value[codes], pa.float64(), mask=null[codes])


def _tags(raw: pa.Array) -> pa.Array:
    """ "a;b" -> ["a", "b"] (as Costline's export joins them); empty -> no tags."""
    parts = pc.split_pattern(pc.fill_null(raw, ""), ";")
    flat = pc.utf8_trim_whitespace(pc.list_flatten(parts))
    parent = pc.list_parent_indices(parts)
    keep = pc.not_equal(flat, "")
    flat, parent = flat.filter(keep), parent.filter(keep)
    counts = np.bincount(parent.to_numpy(zero_copy_only=False), minlength=len(raw))
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), flat.cast(pa.string()))


def _metadata(ck: Checker, raw: pa.Array, column: str) -> pa.Array:
    """A JSON object of texts ({"k": "v"}), normalised; empty -> null."""
    enc = pc.dictionary_encode(raw)
    norm: list[str | None] = []
    wrong: list[bool] = []
    for s in enc.dictionary.to_pylist():
        if s == "":
            norm.append(None)
            wrong.append(False)
            continue
        try:
            d = json.loads(s)
        except ValueError:
            d = None
        ok = isinstance(d, dict) and all(isinstance(v, str) for v in d.values())
        norm.append(json.dumps(d, sort_keys=True) if ok else None)
        wrong.append(not ok)
    codes = pa.array(enc.indices)
    bad = np.asarray(wrong, bool)[codes.to_numpy(zero_copy_only=False)]
    ck.flag(bad, lambda i, v: f"{column} {v!r} is not a JSON object of texts", raw)
    return pa.array(norm, pa.string()).take(codes)
