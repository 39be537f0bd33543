"""Row keys: what makes an imported row the same row when it comes back.

A row's key is its request id when the file maps one; otherwise a 128-bit hash of the row's
*parsed* values (UTC microseconds, model, provider, org, user, project, task, the five
disjoint token counts and the given cost in pUSD), so line endings, spaces, quoting and
number formatting ("12", "12.0", "0.0013750") do not change it.

The key is the event's ``request_id`` ("imp-" + 32 hex digits for a hash), which is how it is
stored with the load. Keys repeat legitimately (a call's retried attempts share a request
id; two identical calls share a hash), so rows are matched by count: the k-th row of the
file with a key is a duplicate when the usage log already holds at least k events with that
key. Everything here is column-wise (numpy/pyarrow).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

U64 = npt.NDArray[np.uint64]
HASH_PREFIX = "imp-"
_NULL = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xD1B54A32D192ED03))
_SEEDS = (np.uint64(0x243F6A8885A308D3), np.uint64(0x13198A2E03707344))
STRING_FIELDS = ("model", "provider", "org", "user", "project", "task")
INT_FIELDS = (
    "ts",
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "given_cost",
)


def _mix(x: U64) -> U64:
    """splitmix64's finaliser (wrapping uint64 arithmetic)."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    out: U64 = x ^ (x >> np.uint64(31))
    return out


def _string_lanes(col: pa.Array) -> tuple[U64, U64]:
    """Two 64-bit hashes per cell (blake2b of each distinct text; nulls a constant)."""
    enc = pc.dictionary_encode(col)
    values = enc.dictionary.to_pylist()
    digests = [hashlib.blake2b(str(v).encode(), digest_size=16).digest() for v in values]
    table = np.frombuffer(b"".join(digests), dtype="<u8").reshape(-1, 2) if values else None
    codes = enc.indices
    valid = pc.is_valid(codes).to_numpy(zero_copy_only=False)
    idx = pc.fill_null(codes, 0).to_numpy(zero_copy_only=False).astype(np.int64)
    n = len(col)
    a = np.full(n, _NULL[0], np.uint64)
    b = np.full(n, _NULL[1], np.uint64)
    if table is not None:
        a[valid] = table[idx[valid], 0]
        b[valid] = table[idx[valid], 1]
    return a, b


def row_hashes(strings: dict[str, pa.Array], ints: dict[str, npt.NDArray[np.int64]]) -> U64:
    """(n, 2) uint64: a 128-bit hash of each row's normalised values."""
    n = len(next(iter(ints.values())))
    lanes = [np.full(n, s, np.uint64) for s in _SEEDS]
    with np.errstate(over="ignore"):
        for name in STRING_FIELDS:
            col = strings.get(name)
            a, b = _string_lanes(col) if col is not None else (_NULL[0], _NULL[1])
            lanes[0] = _mix(lanes[0] ^ a)
            lanes[1] = _mix(lanes[1] ^ b)
        for k, name in enumerate(INT_FIELDS):
            v = ints[name].astype(np.uint64)
            lanes[0] = _mix(lanes[0] ^ _mix(v + np.uint64(k)))
            lanes[1] = _mix(lanes[1] ^ _mix(v ^ np.uint64(0xA5A5A5A5 + k)))
    return np.stack(lanes, axis=1)


def occurrences(codes: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """For each row, how many earlier rows of the file have the same key code (0, 1 ...)."""
    n = len(codes)
    if n == 0:
        return np.zeros(0, np.int64)
    order = np.argsort(codes, kind="stable")
    s = codes[order]
    new = np.ones(n, bool)
    new[1:] = s[1:] != s[:-1]
    start = np.maximum.accumulate(np.where(new, np.arange(n), 0))
    out = np.empty(n, np.int64)
    out[order] = np.arange(n) - start
    return out


def hash_occurrences(h: U64) -> npt.NDArray[np.int64]:
    """``occurrences`` of the 128-bit hashes: sorted on the first lane; only when two
    different hashes share it (a 1-in-10**8 event) is the slower two-lane sort needed."""
    n = len(h)
    order = np.argsort(h[:, 0], kind="stable")
    s0, s1 = h[order, 0], h[order, 1]
    same0 = s0[1:] == s0[:-1]
    if (same0 & (s1[1:] != s1[:-1])).any():
        order = np.lexsort((np.arange(n), h[:, 1], h[:, 0]))
        s0, s1 = h[order, 0], h[order, 1]
        same0 = s0[1:] == s0[:-1]
    new = np.ones(n, bool)
    new[1:] = ~(same0 & (s1[1:] == s1[:-1]))
    start = np.maximum.accumulate(np.where(new, np.arange(n), 0))
    out = np.empty(n, np.int64)
    out[order] = np.arange(n) - start
    return out


def hash_ids(h: U64) -> pa.Array:
    """ "imp-" + 32 hex digits per row, built in one buffer (no Python loop)."""
    n = len(h)
    width = len(HASH_PREFIX) + 32
    raw = np.frombuffer(h.astype(">u8").tobytes(), np.uint8).reshape(n, 16)
    digits = np.frombuffer(b"0123456789abcdef", np.uint8)
    text = np.empty((n, width), np.uint8)
    text[:, : len(HASH_PREFIX)] = np.frombuffer(HASH_PREFIX.encode(), np.uint8)
    text[:, len(HASH_PREFIX) :: 2] = digits[raw >> 4]
    text[:, len(HASH_PREFIX) + 1 :: 2] = digits[raw & 15]
    offsets = np.arange(0, width * n + 1, width, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(text.tobytes()))


@dataclass(frozen=True)
class Keys:
    ids: pa.Array  # the event request_id of every row: its key
    nth: npt.NDArray[np.int64]  # how many earlier rows of the file have the same key
    given: bool  # the file maps request ids (rows without one are still hashed)


def row_keys(
    strings: dict[str, pa.Array],
    ints: dict[str, npt.NDArray[np.int64]],
    request_ids: pa.Array | None,
) -> Keys:
    """The key of every row: its request id when given, else its hash."""
    h = row_hashes(strings, ints)
    ids = hash_ids(h)
    if request_ids is None:  # repeats found on the hash itself (cheaper than on the text)
        return Keys(ids, hash_occurrences(h), False)
    given = pc.utf8_trim_whitespace(request_ids)
    ids = pc.if_else(pc.fill_null(pc.not_equal(given, ""), False), given, ids)
    codes = pc.dictionary_encode(ids).indices.to_numpy(zero_copy_only=False).astype(np.int64)
    return Keys(ids, occurrences(codes), True)
