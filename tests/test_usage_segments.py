"""Segments: corrupt files are skipped, compaction never makes a reader miss or double count."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from test_usage_support import event, finish, python

from core.usage import Reader, UsageLog, compact, rows_to_table, write_segment
from core.usage._schema import event_row


def segments(home: Path) -> Path:
    return home / "events" / "segments"


def test_corrupt_segments_are_skipped_with_a_warning(
    costline_home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with UsageLog(flush_every=10) as log:
        log.append_many(event(i) for i in range(20))
    sdir = segments(costline_home)
    good = sorted(sdir.iterdir())[0]
    (sdir / "garbage.parquet").write_bytes(b"PAR1 not really a parquet file" * 10)
    (sdir / "truncated.parquet").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    (sdir / "empty.parquet").write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="costline.usage"):
        reader = Reader()
        assert reader.count() == 20
        assert reader.totals()["cost_picousd"] == sum(event(i).cost_picousd for i in range(20))
    warned = " ".join(r.getMessage() for r in caplog.records)
    for name in ("garbage.parquet", "truncated.parquet", "empty.parquet"):
        assert name in warned
    assert compact().merged == 2  # compaction leaves the corrupt files alone
    assert Reader().count() == 20


def test_compaction_merges_sorts_and_deletes_inputs(costline_home: Path) -> None:
    with UsageLog(flush_every=100) as log:
        log.append_many(event(i) for i in reversed(range(1_000)))  # newest first
    sdir = segments(costline_home)
    assert len(os.listdir(sdir)) == 10
    before = Reader().totals()
    result = compact(target_rows=600)  # groups of < 600 rows from 100-row segments
    assert (result.merged, result.written) == (10, 2)
    files = sorted(sdir.iterdir())
    assert len(files) == 2
    table = pq.read_table(files[0])
    assert table.column("ts").to_pylist() == sorted(table.column("ts").to_pylist())
    assert Reader().totals() == before
    assert compact(target_rows=600) == compact(target_rows=600)  # nothing left to do
    assert compact().merged == 2 and Reader().totals() == before


def test_a_merged_file_hides_the_inputs_it_replaces(costline_home: Path) -> None:
    # The instant between the merged file's rename and the deletion of its inputs.
    sdir = segments(costline_home)
    a = write_segment(rows_to_table([event_row(event(i)) for i in range(3)]), sdir, "a")
    b = write_segment(rows_to_table([event_row(event(i)) for i in range(3, 5)]), sdir, "b")
    merged = rows_to_table([event_row(event(i)) for i in range(5)])
    write_segment(merged, sdir, "merged", replaces=[a.name, b.name])
    assert Reader().count() == 5
    # A leftover of a crashed compaction is cleaned by the next one.
    assert compact() == compact()
    assert sorted(os.listdir(sdir)) == ["merged.parquet"]
    assert Reader().count() == 5


READ_LOOP = """
import sys
from pathlib import Path
from core.usage import Reader
reader, stop, want = Reader(), Path(sys.argv[1]), (int(sys.argv[2]), int(sys.argv[3]))
Path(sys.argv[1] + ".ready").touch()
reads, wrong = 0, []
while not stop.exists():
    t = reader.totals()
    got = (t["requests"], t["cost_picousd"])
    reads += 1
    if got != want:
        wrong.append(got)
print(reads, len(wrong), wrong[:3])
"""


def test_reader_sees_exact_totals_during_compaction(costline_home: Path, tmp_path: Path) -> None:
    n = 6_000
    with UsageLog(flush_every=100) as log:
        log.append_many(event(i) for i in range(n))
    cost = sum(event(i).cost_picousd for i in range(n))
    stop = tmp_path / "stop"
    reader = python(READ_LOOP, costline_home, str(stop), str(n), str(cost))
    ready = Path(str(stop) + ".ready")
    while not ready.exists():
        assert reader.poll() is None, reader.communicate()
    rounds = [compact(target_rows=t) for t in (400, 1_000, 10_000)]  # 60 -> 15 -> 8 -> 1 files
    stop.touch()
    reads, wrong, sample = finish(reader).split(" ", 2)
    assert int(wrong) == 0, sample
    assert int(reads) > 0, reads
    assert [r.written for r in rounds] == [15, 7, 1]  # 7 pairs + 1 left alone
    assert len(os.listdir(segments(costline_home))) == 1
    assert Reader().count() == n


def test_segments_of_an_older_schema_are_still_read(costline_home: Path) -> None:
    sdir = segments(costline_home)
    table = rows_to_table([event_row(event(i)) for i in range(4)])
    old = table.drop_columns(["prompt", "response", "degraded"])
    sdir.mkdir(parents=True, exist_ok=True)
    pq.write_table(old, sdir / "old.parquet")
    write_segment(rows_to_table([event_row(event(9))]), sdir, "new")
    reader = Reader()
    assert reader.count() == 5
    assert reader.events(columns=["degraded"])["degraded"].isna().sum() == 4
    assert compact().merged == 2
    assert Reader().count() == 5
    shutil.rmtree(sdir)
    assert Reader().count() == 0


def test_merge_chunks_are_sorted_and_lose_nothing(costline_home: Path) -> None:
    from core.usage._compact import _chunks
    from core.usage._segments import scan

    sdir = segments(costline_home)
    for k in range(6):  # 6 segments of 130 rows, each written newest first
        rows = [event_row(event(i)) for i in reversed(range(k * 130, (k + 1) * 130))]
        write_segment(rows_to_table(rows), sdir, f"s{k}")
    chunks = list(_chunks(scan(sdir).active, 200))
    assert [c.num_rows for c in chunks] == [200, 200, 200, 180]
    for c in chunks:
        ts = c.column("ts").to_pylist()
        assert ts == sorted(ts)
    ids = [i for c in chunks for i in c.column("request_id").to_pylist()]
    assert sorted(ids) == sorted(event(i).request_id for i in range(780))


MERGE_MEMORY = """
import sys
import pyarrow as pa
import core.usage._compact as c
c.CHUNK_ROWS = 5_000
result = c.compact(target_rows=10**9, max_bytes=1 << 40)
print(result.merged, result.written, pa.default_memory_pool().max_memory())
"""


def test_a_merge_holds_one_chunk_in_memory_not_the_file(costline_home: Path) -> None:
    """Merging 16 segments (160k rows) with 5k-row chunks peaks far below the whole table."""
    sdir = segments(costline_home)
    whole = 0
    for k in range(16):
        table = rows_to_table([event_row(event(i)) for i in range(k * 10_000, (k + 1) * 10_000)])
        whole += table.nbytes
        write_segment(table, sdir, f"s{k:02d}")
    proc = python(MERGE_MEMORY, costline_home)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    merged, written, peak = (int(x) for x in out.split())
    assert (merged, written) == (16, 1)
    assert peak < whole / 4, (peak, whole)
    assert Reader().count() == 160_000
