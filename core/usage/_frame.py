"""Journal records: each is one line ``@`` + payload length (8 hex digits) + CRC32 of the
payload (8 hex digits) + the payload (one JSON array, the event in schema order) + ``\\n``.

The newline ends a record; the length and the CRC tell a whole record from a torn or damaged
one. A writer whose write failed half-way cuts the file back (or, if it cannot, starts its
next record with an extra newline), so a torn record never merges with the next one.
Journals of older versions (bare JSON lines starting with ``[``) stay readable.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

MARK = 0x40  # "@"
HEADER = 17  # "@" + 8 + 8 hex digits


def frame(payload: bytes) -> bytes:
    """One framed record, newline included."""
    return b"@%08x%08x%b\n" % (len(payload), zlib.crc32(payload), payload)


@dataclass(frozen=True, slots=True)
class BadRecord:
    line: int  # 0-based line number in the journal
    raw: bytes  # the line as found (no newline)
    reason: str


def split_records(data: bytes) -> tuple[list[bytes], list[int], list[BadRecord]]:
    """The payloads of the whole records in ``data`` (complete lines only), their line
    numbers, and the lines that are not whole records. Empty lines are separators."""
    payloads: list[bytes] = []
    numbers: list[int] = []
    bad: list[BadRecord] = []
    for i, line in enumerate(data.split(b"\n")[:-1]):
        if not line:
            continue
        first = line[0]
        if first == MARK:
            try:
                size, want = int(line[1:9], 16), int(line[9:17], 16)
            except ValueError:
                bad.append(BadRecord(i, line, "damaged record header"))
                continue
            body = line[HEADER:]
            if len(body) != size:
                bad.append(BadRecord(i, line, f"torn record ({len(body)} of {size} bytes)"))
            elif zlib.crc32(body) != want:
                bad.append(BadRecord(i, line, "record checksum mismatch"))
            else:
                payloads.append(body)
                numbers.append(i)
        elif first == 0x5B:  # "[": an unframed line of an older version
            payloads.append(line)
            numbers.append(i)
        else:
            bad.append(BadRecord(i, line, "not a usage record"))
    return payloads, numbers, bad


def payload_of(raw: bytes) -> bytes:
    """The JSON part of a line, framed or not (for reading what a bad record held)."""
    return raw[HEADER:] if raw[:1] == b"@" else raw
