"""Reading a CSV file: bytes in, header, dialect, a preview, and the whole file as string
columns with the physical line number of every row (pyarrow, no per-row Python)."""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from core.errors import ConfigError
from core.importer import _parquet

Source = bytes | bytearray | memoryview | str | Path | IO[bytes]
Invalid = tuple[int, str, int]  # a row with the wrong number of cells: record number, text, cells
SAMPLE_BYTES = 64 * 1024


def read_bytes(file: Source) -> tuple[bytes, str]:
    """The file's content as CSV and a display name. Accepts bytes, a path or a binary file
    object (e.g. Streamlit's UploadedFile); a Parquet file is read as the CSV of its table."""
    data, name = _raw_bytes(file)
    if _parquet.is_parquet(data):
        return _parquet.to_csv(data), name
    return _from_utf16(data), name


_BOMS = {
    b"\xff\xfe\x00\x00": "utf-32",
    b"\x00\x00\xfe\xff": "utf-32",
}  # UTF-32 before UTF-16: their little-endian marks share a prefix
_BOMS |= {b"\xff\xfe": "utf-16", b"\xfe\xff": "utf-16"}


def _from_utf16(data: bytes) -> bytes:
    """A UTF-16/32 file with its byte order mark (Excel's "Unicode Text") as UTF-8; it
    read as Latin-1 with a NUL between letters ('a carriage return without a line feed')."""
    for bom, codec in _BOMS.items():
        if data.startswith(bom):
            try:
                return data.decode(codec).encode()
            except UnicodeDecodeError as exc:
                line = data[: exc.start].decode(codec, errors="replace").count("\n") + 1
                raise ConfigError(
                    f"line {line}: the file starts as {codec.upper()} but does not decode"
                    " as it; save it as UTF-8",
                    field="file",
                ) from None
    return data


def _raw_bytes(file: Source) -> tuple[bytes, str]:
    if isinstance(file, bytes | bytearray | memoryview):
        return bytes(file), "upload.csv"
    if isinstance(file, str | Path):
        path = Path(file)
        try:
            return path.read_bytes(), path.name
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror}", field="file") from None
    data = file.read()
    if not isinstance(data, bytes):
        raise ConfigError("open the file in binary mode", field="file")
    return data, str(getattr(file, "name", "upload.csv"))


@dataclass(frozen=True)
class Dialect:
    delimiter: str
    encoding: str  # "utf8" or "latin-1" (a fallback for files that are not UTF-8)
    columns: tuple[str, ...]  # header names, stripped; repeats get a ".2", ".3" suffix


def _text(data: bytes, encoding: str) -> str:
    return data.decode("utf-8-sig" if encoding == "utf8" else encoding, errors="replace")


def _encoding(data: bytes) -> str:
    """ "utf8" when the whole file is UTF-8; "latin-1" when it is not and everything before
    its first non-UTF-8 byte is ASCII (a Latin-1/Windows file); else a ConfigError naming
    the line (UTF-8 text, then a byte that is not: a file pasted from two encodings). The
    file is checked in chunks, so memory holds one chunk's text."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    step = 1 << 24
    try:
        for i in range(0, len(data), step):
            decoder.decode(data[i : i + step], final=i + step >= len(data))
    except UnicodeDecodeError:
        at = _first_non_utf8(data)
    else:
        return "utf8"
    if data[:at].isascii():
        return "latin-1"
    line = data.count(b"\n", 0, at) + 1
    raise ConfigError(
        f"line {line}: byte 0x{data[at]:02X} is not UTF-8, but the lines before it hold UTF-8"
        " text; save the whole file as UTF-8",
        field="file",
    )


def _first_non_utf8(data: bytes) -> int:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start
    return len(data)


def dialect(data: bytes) -> Dialect:
    head = data[:SAMPLE_BYTES]
    encoding = _encoding(data)
    text = _text(head, encoding)
    if not text.strip():
        raise ConfigError("the file is empty", field="file")
    try:
        head_lines = "\n".join(text.split("\n", 20)[:20])
        delimiter = csv.Sniffer().sniff(head_lines, delimiters=",;\t|").delimiter
    except csv.Error:
        delimiter = ","
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    header = _next_row(reader) or []
    names: list[str] = []
    for raw in header:
        name = raw.strip() or f"column{len(names) + 1}"
        base, k = name, 2
        while name in names:
            name, k = f"{base}.{k}", k + 1
        names.append(name)
    return Dialect(delimiter, encoding, tuple(names))


def sample_rows(data: bytes, d: Dialect, max_rows: int) -> list[list[str]]:
    reader = csv.reader(
        io.StringIO(_text(data[: SAMPLE_BYTES * 4], d.encoding)), delimiter=d.delimiter
    )
    _next_row(reader)
    rows: list[list[str]] = []
    while len(rows) < max_rows:
        row = _next_row(reader)
        if row is None:
            break
        if any(v.strip() for v in row):
            rows.append((row + [""] * len(d.columns))[: len(d.columns)])
    return rows


def _next_row(reader: Iterator[list[str]]) -> list[str] | None:
    """The next row (None at the end); a bad one is a ConfigError naming its line, not a
    raw ``_csv.Error``."""
    try:
        return next(reader)
    except StopIteration:
        return None
    except csv.Error as exc:
        line = getattr(reader, "line_num", 0) or 1
        if "new-line character" in str(exc):
            raise ConfigError(
                f"line {line}: a carriage return (CR) without a line feed inside a field; "
                "quote that field or save the file with LF or CRLF line endings",
                field="file",
            ) from None
        raise ConfigError(f"line {line}: cannot read the CSV file: {exc}", field="file") from None


def _norm(name: str) -> str:
    """'Prompt Tokens', 'promptTokens', 'prompt-tokens' -> 'prompt_tokens'."""
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name.strip())
    return re.sub(r"[^a-z0-9]+", "_", snake.lower()).strip("_")


def suggest(columns: Sequence[str], synonyms: dict[str, tuple[str, ...]]) -> dict[str, str]:
    """field -> column, from header names (each column used once, best synonym first)."""
    normal = {_norm(c): c for c in reversed(columns)}  # first column wins a tie
    out: dict[str, str] = {}
    used: set[str] = set()
    for field, names in synonyms.items():
        for name in names:
            col = normal.get(name)
            if col is not None and col not in used:
                out[field] = col
                used.add(col)
                break
    return out


def head(data: bytes, lines: int) -> bytes:
    """The file's first ``lines`` lines and a line break, extended line by line while a
    quoted value is still open (an odd count of quotes): never cut inside a value that
    holds line breaks (the rest of the file would read as one broken row)."""
    end, quotes = 0, 0
    while end < len(data):
        nl = data.find(b"\n", end)
        stop = len(data) if nl < 0 else nl + 1
        quotes += data.count(b'"', end, stop)
        end = stop
        lines -= 1
        if lines <= 0 and quotes % 2 == 0:
            break
    out = data[:end]
    return out if out.endswith(b"\n") else out + b"\n"


@dataclass(frozen=True)
class BadLine:
    line: int
    reason: str


def read_columns(
    data: bytes, d: Dialect, wanted: Sequence[str]
) -> tuple[pa.Table, npt.NDArray[np.int64], list[BadLine]]:
    """The ``wanted`` columns as strings ("" for empty cells), the physical line number of
    each row (header = line 1), and the rows with a wrong number of cells."""
    if b"\n" not in data:  # a header alone, without a line break: no rows
        data += b"\n"
    physical = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
    table, invalid = _read(data, d, list(wanted))
    if physical != table.num_rows + len(invalid) + 1:
        # some quoted values hold newlines: count them in every column to number lines exactly
        table, invalid = _read(data, d, list(d.columns))
        record, line_of = _records(table, invalid, _newlines(table))
    else:
        record, line_of = _records(table, invalid, None)
    bad = [
        BadLine(int(line_of[r]), f"expected {len(d.columns)} columns, got {cells}")
        for r, _, cells in invalid
    ]
    return table.select(list(wanted)), line_of[record], bad


def _read(data: bytes, d: Dialect, columns: list[str]) -> tuple[pa.Table, list[Invalid]]:
    invalid: list[Invalid] = []  # (record number, text, cells)

    def on_invalid(row: pacsv.InvalidRow) -> str:
        invalid.append((int(row.number or 0), row.text or "", row.actual_columns))
        return "skip"

    try:
        table = pacsv.read_csv(
            io.BytesIO(data),
            read_options=pacsv.ReadOptions(
                use_threads=False,
                column_names=list(d.columns),
                skip_rows=1,
                encoding=d.encoding,
                block_size=16 << 20,
            ),
            parse_options=pacsv.ParseOptions(
                delimiter=d.delimiter,
                newlines_in_values=True,
                ignore_empty_lines=False,
                invalid_row_handler=on_invalid,
            ),
            convert_options=pacsv.ConvertOptions(
                include_columns=columns,
                column_types={c: pa.string() for c in columns},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid as exc:
        raise ConfigError(f"cannot read the CSV file: {exc}", field="file") from None
    return table, invalid


def _newlines(table: pa.Table) -> npt.NDArray[np.int64]:
    out = np.zeros(table.num_rows, np.int64)
    for col in table.columns:
        out += pc.count_substring(col, "\n").to_numpy(zero_copy_only=False).astype(np.int64)
    return out


def _records(
    table: pa.Table, invalid: list[Invalid], newlines: npt.NDArray[np.int64] | None
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Record number of each row (the reader numbers records from 1, header included, skipped
    ones too) and the physical first line of every record number: the record number plus the
    newlines inside quoted values of earlier records."""
    n = table.num_rows
    v = np.array(sorted(r for r, _, _ in invalid), np.int64)
    # the j-th skipped record comes after (v_j - 2 - j) valid rows
    shift = np.searchsorted(v - 2 - np.arange(len(v)), np.arange(n), side="right")
    record = np.arange(n, dtype=np.int64) + 2 + shift
    nl = np.zeros(n + len(v) + 2, np.int64)
    if newlines is None:
        return record, np.arange(len(nl), dtype=np.int64)
    nl[record] = newlines
    for r, text, _ in invalid:
        nl[r] = text.count("\n")
    before = np.concatenate([[0], np.cumsum(nl)[:-1]])  # newlines in records < r
    line_of: npt.NDArray[np.int64] = np.arange(len(nl), dtype=np.int64) + before
    return record, line_of
