"""Parquet segments: the one writer, validation (cached), and the set a reader should see.

Every segment carries a CRC32 of its bytes up to the footer in its Parquet key-value metadata
(``costline.crc32``, ``costline.crc_bytes``). A process checks it the first time it sees a
segment (reading the file once; cached by name, size and mtime); a segment whose checksum,
footer or schema is wrong is moved to the quarantine (see _quarantine), so readers,
compaction and exports never read it and ``costline doctor`` says what it held. Segments of
older versions have no checksum: only their footer and schema are checked.

A compacted segment names the segments it replaces in its Parquet key-value metadata
(``costline.replaces``). Readers skip every segment named there by a present, valid segment,
so during a compaction a reader sees either the old files or the merged one, never both.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import secrets
import tempfile
import threading
import time
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from core.private import private_dir, private_open
from core.settings import costline_home
from core.usage._schema import SCHEMA, conform

log = logging.getLogger("costline.usage")

SUFFIX = ".parquet"
REPLACES_KEY = b"costline.replaces"
CRC_KEY = b"costline.crc32"
CRC_BYTES_KEY = b"costline.crc_bytes"
_CHUNK = 1 << 20
ROW_GROUP_ROWS = 122_880  # DuckDB scans row groups of this size in parallel
COMPRESSION = "snappy"  # DuckDB decodes it ~20% faster than zstd; files ~25% larger


def events_dir(home: Path | None = None) -> Path:
    return (home if home is not None else costline_home()) / "events"


def segments_dir(home: Path | None = None) -> Path:
    return events_dir(home) / "segments"


def journal_dir(home: Path | None = None) -> Path:
    return events_dir(home) / "journal"


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_segment(
    table: pa.Table,
    directory: Path,
    name: str,
    *,
    replaces: Sequence[str] = (),
    row_group_rows: int = ROW_GROUP_ROWS,
) -> Path:
    """Write ``table`` as ``directory/name.parquet`` atomically: temp file, fsync, rename."""
    return write_segment_stream(
        [table], directory, name, replaces=replaces, row_group_rows=row_group_rows
    )[0]


def write_segment_stream(
    tables: Iterable[pa.Table],
    directory: Path,
    name: str,
    *,
    replaces: Sequence[str] = (),
    row_group_rows: int = ROW_GROUP_ROWS,
) -> tuple[Path, int]:
    """``write_segment`` for tables that arrive one at a time, so memory holds one of them,
    not the whole file. Returns (path, rows written)."""
    private_dir(directory)
    schema = SCHEMA
    if replaces:
        schema = SCHEMA.with_metadata({REPLACES_KEY: orjson.dumps(sorted(replaces))})
    final = directory / (name + SUFFIX)
    tmp = directory / f".{name}.{secrets.token_hex(4)}.tmp"
    rows = 0
    try:
        fd = private_open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC)
        with os.fdopen(fd, "wb") as fh:
            with pq.ParquetWriter(fh, schema, compression=COMPRESSION) as writer:
                for table in tables:
                    writer.write_table(conform(table), row_group_size=row_group_rows)
                    rows += table.num_rows
                fh.flush()  # every row group is in the file: checksum it, before the footer
                size = fh.tell()
                crc = file_crc(tmp, size)
                writer.add_key_value_metadata({CRC_KEY: f"{crc:08x}", CRC_BYTES_KEY: str(size)})
            fh.flush()
            os.fsync(fh.fileno())
        os.rename(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(directory)
    _remember(final)
    return final, rows


def file_crc(path: Path, size: int) -> int:
    """CRC32 of the first ``size`` bytes of ``path``."""
    crc = 0
    with open(path, "rb") as fh:
        left = size
        while left > 0:
            chunk = fh.read(min(_CHUNK, left))
            if not chunk:
                raise CorruptSegment(f"file ends at {size - left} of {size} checksummed bytes")
            crc = zlib.crc32(chunk, crc)
            left -= len(chunk)
    return crc


class CorruptSegment(ValueError):
    """A segment's bytes do not match its checksum, or it is not a usage segment."""


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    name: str  # file name, e.g. "host_12_345_ab12cd34_000001.parquet"
    path: Path
    rows: int
    nbytes: int  # uncompressed size, from the row-group metadata
    replaces: frozenset[str]
    columns: tuple[str, ...]  # fewer than SCHEMA's for files of an older schema
    mtime_ns: int = 0  # when it was written


_cache: dict[tuple[str, int, int], SegmentInfo | None] = {}
_cache_lock = threading.Lock()


def _after_fork() -> None:
    global _cache_lock
    _cache_lock = threading.Lock()  # a background thread may have held it during the fork


os.register_at_fork(after_in_child=_after_fork)


def _validate(path: Path, mtime_ns: int, verify: bool = True) -> SegmentInfo:
    md = pq.read_metadata(path)
    schema = md.schema.to_arrow_schema()
    for f in schema:
        want = SCHEMA.field(f.name) if f.name in SCHEMA.names else None
        if want is None or not f.type.equals(want.type):
            raise CorruptSegment(f"unexpected column {f.name}: {f.type}")
    if "ts" not in schema.names or "request_id" not in schema.names:
        raise CorruptSegment("not a usage segment (no ts/request_id column)")
    kv = md.metadata or {}
    if verify and CRC_KEY in kv:
        want_crc, size = int(kv[CRC_KEY], 16), int(kv[CRC_BYTES_KEY])
        got = file_crc(path, size)
        if got != want_crc:
            raise CorruptSegment(f"checksum mismatch: {got:08x}, written as {want_crc:08x}")
    replaces = orjson.loads(kv.get(REPLACES_KEY, b"[]"))
    nbytes = sum(md.row_group(i).total_byte_size for i in range(md.num_row_groups))
    return SegmentInfo(
        path.name, path, md.num_rows, nbytes, frozenset(replaces), tuple(schema.names), mtime_ns
    )


def segment_info(path: Path, st: os.stat_result) -> SegmentInfo | None:
    """Validated metadata of one segment, cached by name + size + mtime; None if corrupt."""
    key = (str(path), st.st_size, st.st_mtime_ns)
    with _cache_lock:
        if key in _cache:
            return _cache[key]
    try:
        info: SegmentInfo | None = _validate(path, st.st_mtime_ns)
    except FileNotFoundError:
        raise
    except OSError as exc:  # perhaps passing (I/O error, too many files): not cached
        log.warning("skipping unreadable usage segment %s: %s", path, exc)
        return None
    except (pa.ArrowException, ValueError, TypeError, KeyError) as exc:
        if quarantine_segment(path, str(exc) or type(exc).__name__):
            raise FileNotFoundError(path) from exc  # gone from the listing: scan lists again
        info = None  # could not be moved (read-only home): skipped, and said so
    with _cache_lock:
        if len(_cache) > 100_000:
            _cache.clear()
        _cache[key] = info
    return info


def _remember(path: Path) -> None:
    """Cache a segment this process has just written (its checksum is known good)."""
    with contextlib.suppress(OSError, pa.ArrowException, ValueError):
        st = path.stat()
        info = _validate(path, st.st_mtime_ns, verify=False)
        with _cache_lock:
            _cache[(str(path), st.st_size, st.st_mtime_ns)] = info


def quarantine_segment(path: Path, reason: str) -> bool:
    """Move a bad segment to the quarantine; False if it cannot be moved (then it is only
    skipped, with an error in the log)."""
    from core.usage._quarantine import quarantine_file

    rows: int | None = None
    cost: int | None = None
    with contextlib.suppress(Exception):  # what it held, if that much is readable
        rows = pq.read_metadata(path).num_rows
        col = pq.read_table(path, columns=["cost_picousd"])["cost_picousd"]
        # Python ints: numpy's sum went through float64 (NaN, so "unknown", when an unpriced
        # event's cost is null; rounded past $9,007) and wraps past int64
        cost = sum(v for v in col.to_pylist() if v is not None)
    try:
        quarantine_file(
            path.parent.parent.parent, path, reason, kind="segment", rows=rows, cost_picousd=cost
        )
    except FileNotFoundError:
        return True  # another process moved it first
    except OSError as exc:
        log.error(
            "skipping corrupt usage segment %s (%s); cannot quarantine it: %s", path, reason, exc
        )
        return False
    return True


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What a reader should read from one listing of the segments directory."""

    active: tuple[SegmentInfo, ...]  # valid and not replaced
    superseded: tuple[SegmentInfo, ...]  # present and valid but replaced by another segment
    replaced_names: frozenset[str]  # every name a present valid segment says it replaces
    version: str

    def has(self, name: str) -> bool:
        """Are ``name``'s rows in the data set (present, or merged into a present segment)?"""
        return name in self.replaced_names or any(s.name == name for s in self.active)


def _listing(directory: Path) -> list[str]:
    try:
        return sorted(n for n in os.listdir(directory) if n.endswith(SUFFIX) and n[0] != ".")
    except FileNotFoundError:
        return []


def scan(directory: Path, attempts: int = 30) -> Snapshot:
    """List, stat and validate segments; retry when files change meanwhile (with a growing
    pause: writers and compactions change the directory in short bursts)."""
    for attempt in range(attempts):
        if attempt > 1:
            time.sleep(min(0.002 * attempt, 0.05))
        names = _listing(directory)
        try:
            stats = [(n, os.stat(directory / n)) for n in names]
            infos = [segment_info(directory / n, st) for n, st in stats]  # cached once valid
        except FileNotFoundError:
            continue
        if _listing(directory) == names:  # no rename or delete raced the listing
            break
    else:
        raise RuntimeError(f"usage segments in {directory} kept changing during {attempts} scans")
    digest = hashlib.blake2b(digest_size=12)
    for n, st in stats:
        digest.update(f"{n}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    valid = [i for i in infos if i is not None]
    replaced = frozenset().union(*(i.replaces for i in valid))
    return Snapshot(
        active=tuple(i for i in valid if i.name not in replaced),
        superseded=tuple(i for i in valid if i.name in replaced),
        replaced_names=replaced,
        version=digest.hexdigest(),
    )


IMPORT_LOCK = "import.lock"  # in events_dir: held by an import while it writes its segment
IMPORT_TEMP = ".import-"  # how the temp file of an import's segment starts


def fs_now_ns(directory: Path) -> int:
    """The file system's clock now (ns): the mtime of a file created in ``directory`` just
    now (unnamed where the kernel allows). A file's age is measured on this clock, never on
    ``time.time()``, which may be moved in this process (a test travelling in time) or differ
    from the clock that stamps mtimes (the kernel's, a file server's)."""
    try:
        with tempfile.TemporaryFile(dir=directory) as f:
            return os.fstat(f.fileno()).st_mtime_ns
    except OSError:  # gone or read-only: this process's clock is all there is
        return time.time_ns()


def remove_stale_temps(directory: Path, older_than_s: float = 3600.0) -> int:
    """Delete temp files left by writers that died mid-write (an hour old, by default).
    An import's temp files are left to ``remove_import_temps``: its lock says when they
    are stale, at any age (a big import may write for longer than an hour)."""
    removed = 0
    cutoff: int | None = None
    for n in os.listdir(directory) if directory.is_dir() else ():
        if n.startswith(".") and n.endswith(".tmp") and not n.startswith(IMPORT_TEMP):
            p = directory / n
            try:
                if cutoff is None:
                    cutoff = fs_now_ns(directory) - int(older_than_s * 1e9)
                if p.stat().st_mtime_ns < cutoff:
                    p.unlink()
                    removed += 1
            except FileNotFoundError:
                pass
    return removed


def remove_import_temps(directory: Path, lock: Path | None) -> int:
    """Delete the temp files of imports killed mid-write. An import writes its segment only
    while it holds the import lock (an flock on ``lock``), so while the lock is free, or
    held by the caller (``lock=None``), no import is writing and every import temp file is
    stale. When another process holds the lock nothing is removed (its import may be
    writing one)."""
    if not directory.is_dir():
        return 0
    fd = None
    if lock is not None:
        if not any(_is_import_temp(n) for n in os.listdir(directory)):
            return 0
        private_dir(lock.parent)
        fd = private_open(lock, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return 0
    try:
        removed = 0
        for n in os.listdir(directory):
            if _is_import_temp(n):
                with contextlib.suppress(FileNotFoundError):
                    (directory / n).unlink()
                    removed += 1
        return removed
    finally:
        if fd is not None:
            os.close(fd)


def _is_import_temp(name: str) -> bool:
    return name.startswith(IMPORT_TEMP) and name.endswith(".tmp")
