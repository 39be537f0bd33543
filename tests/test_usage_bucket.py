"""The usage log on S3-compatible storage, against a real SeaweedFS on loopback."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import duckdb
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from core.errors import ConfigError
from core.usage import CompactResult, Reader, UsageLog
from core.usage._bucket import BucketConfig, list_segments, outbox_status, shipper_for
from core.usage._bucket_compact import compact_bucket
from core.usage._leader import leader_lock
from tests.servers.seaweed import SeaweedS3
from tests.test_usage_support import event, python


@pytest.fixture
def bucket(weed: SeaweedS3, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh bucket + prefix; COSTLINE_EVENTS_URL and AWS_* point at it."""
    name = f"costline-{uuid.uuid4().hex[:10]}"
    weed.create_bucket(name)
    for k, v in weed.env(f"{name}/usage").items():
        monkeypatch.setenv(k, v)
    yield name


def bucket_rows(weed: SeaweedS3, location: str) -> list[str]:
    """Every request_id in the committed segment objects, read straight from S3."""
    fs = weed.filesystem()
    ids: list[str] = []
    infos = fs.get_file_info(pafs.FileSelector(location, allow_not_found=True))
    for info in infos:
        if info.base_name.endswith(".parquet"):
            table = pq.read_table(info.path, filesystem=fs, columns=["request_id"])
            ids += table["request_id"].to_pylist()
    return ids


def test_config_from_env() -> None:
    assert BucketConfig.from_env({}) is None
    cfg = BucketConfig.from_env(
        {"COSTLINE_EVENTS_URL": "s3://b1x/a/b/", "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}
    )
    assert cfg is not None
    assert (cfg.bucket, cfg.prefix, cfg.endpoint, cfg.scheme) == (
        "b1x",
        "a/b",
        "127.0.0.1:9",
        "http",
    )
    assert cfg.path("segments", "x.parquet") == "b1x/a/b/segments/x.parquet"
    with pytest.raises(ConfigError, match="s3://bucket/prefix"):
        BucketConfig.from_env({"COSTLINE_EVENTS_URL": "gs://x/y"})
    with pytest.raises(ConfigError, match="COSTLINE_EVENTS_QUEUE_MB"):
        BucketConfig.from_env({"COSTLINE_EVENTS_URL": "s3://b/p", "COSTLINE_EVENTS_QUEUE_MB": "x"})


def test_segments_ship_and_readers_query_the_bucket(
    weed: SeaweedS3, bucket: str, costline_home: Path, tmp_path: Path
) -> None:
    with UsageLog(costline_home, flush_every=400) as log:
        log.append_many(event(i) for i in range(1000))
    ids = bucket_rows(weed, f"{bucket}/usage/segments")
    assert sorted(ids) == [f"req_{i:08d}" for i in range(1000)]  # each once
    assert outbox_status(costline_home)["segments"] == 0
    # a reader on another host (empty cache) sees the same totals as DuckDB over the objects
    other = tmp_path / "reader-host"
    with Reader(other) as reader:
        totals = reader.totals()
        by_model = reader.spend_by(["model"], "day")
    assert totals["requests"] == 1000
    direct = _direct_totals(weed, bucket)
    assert totals["cost_picousd"] == direct
    assert int(by_model["cost_picousd"].sum()) == direct


def _direct_totals(weed: SeaweedS3, bucket: str) -> int:
    """sum(cost) by DuckDB over the bucket's objects (pyarrow's S3 filesystem, no extension)."""
    fs = weed.filesystem()
    infos = fs.get_file_info(pafs.FileSelector(f"{bucket}/usage/segments"))
    tables = [pq.read_table(i.path, filesystem=fs) for i in infos if i.base_name.endswith("et")]
    con = duckdb.connect()
    total = 0
    for t in tables:  # noqa: B007 - DuckDB scans the Arrow table by name
        total += int(con.execute("SELECT coalesce(sum(cost_picousd), 0) FROM t").fetchone()[0])
    con.close()
    return total


def test_outage_queues_locally_then_ships(
    weed: SeaweedS3, bucket: str, costline_home: Path
) -> None:
    log = UsageLog(costline_home, flush_every=100, flush_interval_s=0.2)
    shipper = shipper_for(costline_home)
    assert shipper is not None
    try:
        log.append_many(event(i) for i in range(300))
        log.flush()
        assert shipper.drain(10)
        weed.pause()
        started = time.monotonic()
        log.append_many(event(i) for i in range(300, 700))
        log.flush()  # segments are written locally; nothing waits for the bucket
        assert time.monotonic() - started < 2.0
        assert not shipper.drain(1.0)
        status = shipper.status()
        assert status["segments"] >= 4 and status["last_error"]
        weed.resume()
        deadline = time.monotonic() + 30
        while outbox_status(costline_home)["segments"] and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        log.close()
    ids = bucket_rows(weed, f"{bucket}/usage/segments")
    assert sorted(ids) == [f"req_{i:08d}" for i in range(700)]


def test_killed_writer_ships_once_after_restart(
    weed: SeaweedS3, bucket: str, costline_home: Path
) -> None:
    """SIGKILL a writer whose events are only in its journal; the next process ships them."""
    code = """
        import os, signal, sys
        from core.usage import UsageLog
        from test_usage_support import event
        log = UsageLog(flush_interval_s=3600)
        log.append_many(event(i) for i in range(500))
        print("appended", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """
    proc = python(code, costline_home)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, err
    assert "appended" in out
    assert bucket_rows(weed, f"{bucket}/usage/segments") == []
    with UsageLog(costline_home) as log:  # recovers the journal, then ships it
        shipper = shipper_for(costline_home)
        assert shipper is not None and shipper.drain(10)
        log.flush()
    ids = bucket_rows(weed, f"{bucket}/usage/segments")
    assert sorted(ids) == [f"req_{i:08d}" for i in range(500)]


def test_compaction_has_one_leader_and_keeps_every_row(
    weed: SeaweedS3, bucket: str, costline_home: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COSTLINE_CONTROL_URL", pg_url)
    monkeypatch.setenv("COSTLINE_EVENTS_COMPACT_S", "0")
    with UsageLog(costline_home, flush_every=50) as log:
        log.append_many(event(i) for i in range(1000))
    cfg = BucketConfig.from_env()
    assert cfg is not None
    assert len(list_segments(cfg)) == 20
    # while another process leads, this one does nothing
    with leader_lock("costline.compact:" + cfg.url(), costline_home) as leading:
        assert leading
        result: list[object] = []
        t = threading.Thread(target=lambda: result.append(compact_bucket(costline_home, cfg)))
        t.start()
        t.join()
        assert result[0] == CompactResult(0, 0, "another process leads the compaction")
    done = compact_bucket(costline_home, cfg, min_small=2, keep_replaced_s=0)
    assert done.written == 1 and done.merged == 20
    with Reader(costline_home / "elsewhere") as reader:
        assert reader.count() == 1000  # the inputs are still there, hidden by the merge
    compact_bucket(costline_home, cfg, min_small=2, keep_replaced_s=0)  # deletes them
    assert len(list_segments(cfg)) == 1
    ids = bucket_rows(weed, f"{bucket}/usage/segments")
    assert sorted(ids) == [f"req_{i:08d}" for i in range(1000)]


def test_retention_leaves_the_outbox_alone(
    costline_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.usage import _bucket
    from core.usage._prune import prune
    from core.usage._segments import segments_dir

    # the bucket is away for good here: closing the log need not retry it for 5 s
    monkeypatch.setattr(_bucket, "CLOSE_DRAIN_S", 0.5)
    monkeypatch.setenv("COSTLINE_EVENTS_URL", "s3://nowhere-bucket/p")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens
    monkeypatch.setenv("COSTLINE_EVENTS_COMPACT_S", "0")
    with UsageLog(costline_home, flush_every=100) as log:  # old events; the bucket is away
        log.append_many(event(i) for i in range(300))
    assert outbox_status(costline_home)["segments"] == 3
    assert prune(costline_home, 1).segments == 0
    assert len(list(segments_dir(costline_home).glob("*.parquet"))) == 3


def test_console_overview_over_the_bucket_matches_duckdb_to_the_cent(
    weed: SeaweedS3,
    bucket: str,
    costline_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A console host with nothing local: its Overview reads the bucket."""
    from datetime import timedelta
    from decimal import ROUND_HALF_UP, Decimal

    from core import clock
    from tests.console_support import app, make_users

    now = clock.now()
    with UsageLog(tmp_path / "gateway-host", flush_every=100) as log:
        log.append_many(event(i, ts=now - timedelta(minutes=7 * i + 1)) for i in range(250))
    monkeypatch.setenv("COSTLINE_ADMIN_PASSWORD", "admin-pass-123")
    make_users(costline_home)
    at = app("admin", timeout=90).run()
    assert not at.exception, at.exception
    scope = at.session_state["selection"].scope
    fs = weed.filesystem()
    infos = fs.get_file_info(pafs.FileSelector(f"{bucket}/usage/segments"))
    con = duckdb.connect()
    direct = 0
    for info in infos:
        con.register("segment", pq.read_table(info.path, filesystem=fs))
        row = con.execute(
            "SELECT coalesce(sum(cost_picousd), 0) FROM segment WHERE ts >= ? AND ts < ?",
            [scope.start, scope.end],
        ).fetchall()
        direct += int(row[0][0])
    con.close()
    shown = [m.value for m in at.metric if m.label == "Spend in range"][0]
    cents = (Decimal(direct) / Decimal(10**12)).quantize(Decimal("0.01"), ROUND_HALF_UP)
    assert direct > 0
    assert Decimal(shown.lstrip("$").replace(",", "")) == cents


def test_costline_compact_leads_a_bucket_compaction(
    weed: SeaweedS3, bucket: str, costline_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import subprocess
    import sys

    monkeypatch.setenv("COSTLINE_EVENTS_COMPACT_S", "0")
    with UsageLog(costline_home, flush_every=100) as log:
        log.append_many(event(i) for i in range(300))
    done = subprocess.run(
        [sys.executable, "-m", "core.cli", "compact"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert done.returncode == 0, done.stderr
    assert f"Merged 3 usage segments in s3://{bucket}/usage into 1." in done.stdout
    with Reader(costline_home / "elsewhere") as reader:
        assert reader.count() == 300


def test_a_segment_shipped_while_a_reader_lists_the_bucket_stays_in_the_cache(
    weed: SeaweedS3,
    bucket: str,
    costline_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The shipper moves a confirmed segment into the cache, the directory a Mirror syncs.
    On main a sync that listed the bucket just before that upload then deleted the segment
    as 'merged away by a compaction': this host's readers lost its events until a later
    sync downloaded them back."""
    import shutil

    import core.usage._bucket as bucket_mod
    from core.usage import segments_dir

    with UsageLog(costline_home) as log:
        log.append_many(event(i) for i in range(100))
    monkeypatch.delenv("COSTLINE_EVENTS_URL")  # a segment written, not yet shipped
    src = tmp_path / "src"
    with UsageLog(src) as log:
        log.append_many(event(i) for i in range(100, 150))
    monkeypatch.setenv("COSTLINE_EVENTS_URL", f"s3://{bucket}/usage")
    (seg,) = [p for p in segments_dir(src).iterdir() if p.name.endswith(".parquet")]
    outbox = segments_dir(costline_home) / seg.name
    shutil.copy(seg, outbox)
    cfg = BucketConfig.from_env()
    assert cfg is not None
    real = bucket_mod.list_segments

    def listed_then_shipped(*args: object, **kw: object) -> dict[str, int]:
        got = real(*args, **kw)  # type: ignore[arg-type]
        bucket_mod.upload(cfg, outbox, outbox.name)  # what Shipper.ship_once does, now
        os.replace(outbox, bucket_mod.cache_dir(costline_home) / outbox.name)
        monkeypatch.setattr(bucket_mod, "list_segments", real)
        return got

    monkeypatch.setattr(bucket_mod, "list_segments", listed_then_shipped)
    mirror = bucket_mod.mirror_for(costline_home)
    assert mirror is not None
    mirror.sync(force=True)
    assert (mirror.dir / seg.name).exists(), "the just-shipped segment left the cache"
    with Reader(costline_home) as reader:
        assert reader.totals()["requests"] == 150


def test_replacing_a_sources_rows_never_leaves_the_old_rows_in_the_bucket(
    weed: SeaweedS3, bucket: str, costline_home: Path, tmp_path: Path
) -> None:
    """``import --replace`` rewrote the segments of ``events/segments/``: with a bucket that is
    only the outbox, so the old rows (already uploaded) stayed and the corrected ones were
    added (on main: 100 rows of the vendor for 50 calls)."""
    from datetime import timedelta

    from core.errors import CostlineError
    from core.importer import import_csv, read_preview
    from core.usage import Filters
    from tests.test_import_crash import NOW, START, rows, write

    first = write(tmp_path / "v1.csv", rows(0, 50))
    mapping = read_preview(first).mapping
    import_csv(first, mapping, source="vendor", now=NOW)
    shipper = shipper_for(costline_home)
    assert shipper is not None and shipper.drain(30)
    corrected = [(ts, p, c * 2) for ts, p, c in rows(0, 50)]
    second = write(tmp_path / "v2.csv", corrected)
    span = ("vendor", START, START + timedelta(minutes=50))
    try:
        import_csv(second, mapping, source="vendor", now=NOW, replace=span)
    except CostlineError as exc:  # refused: the rows in the bucket cannot be replaced here
        assert "COSTLINE_EVENTS_URL" in str(exc)
        want = rows(0, 50)
    else:
        want = corrected
    assert shipper.drain(30)
    with Reader(tmp_path / "other-host") as reader:
        vendor = reader.totals(Filters(source="vendor"))
    assert vendor["requests"] == 50
    assert vendor["cost_picousd"] == sum(c for _, _, c in want)


def test_bucket_compaction_writes_rollups_and_readers_use_them(
    weed: SeaweedS3,
    bucket: str,
    costline_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The leader uploads each merged segment's rollup beside it; a reader on another host
    mirrors it and reads whole hours from it: the Overview's and the API's totals equal a
    direct DuckDB sum over the bucket's segment objects, to the picodollar."""
    from core import reports
    from core.usage import Filters

    monkeypatch.setenv("COSTLINE_EVENTS_COMPACT_S", "0")
    base = event(0).ts
    dense = (  # 1,000 events over 8 hours, two dimension values an hour
        event(
            i,
            ts=base + timedelta(seconds=29 * i),
            org="acme",
            project="p0",
            user="u0",
            task="chat",
            provider="openai",
            model=("m-a", "m-b")[i % 2],
            status="ok",
        )
        for i in range(1000)
    )
    with UsageLog(costline_home, flush_every=100) as log:
        log.append_many(dense)
    cfg = BucketConfig.from_env()
    assert cfg is not None
    assert compact_bucket(costline_home, cfg, min_small=2, keep_replaced_s=0).written == 1
    compact_bucket(costline_home, cfg, min_small=2, keep_replaced_s=0)  # deletes the inputs
    segments = list_segments(cfg)
    assert len(segments) == 1
    in_bucket = weed.filesystem().get_file_info(
        pafs.FileSelector(f"{bucket}/usage/rollups", allow_not_found=True)
    )
    assert {i.base_name for i in in_bucket} == set(segments)  # the inputs' went too

    fs = weed.filesystem()
    con = duckdb.connect()
    (name,) = segments
    con.register("segment", pq.read_table(cfg.path("segments", name), filesystem=fs))
    start, end = base + timedelta(minutes=30), base + timedelta(hours=7, minutes=11)
    direct = con.execute(
        "SELECT sum(cost_picousd)::VARCHAR, count(*) FROM segment WHERE ts >= ? AND ts < ?",
        [start, end],
    ).fetchall()[0]
    con.close()

    from core.usage._bucket import rollup_cache_dir

    other = tmp_path / "console-host"  # nothing local: reads the bucket
    with Reader(other) as reader:
        f = Filters(start=start, end=end)
        spend = reports.spend(reader, f, "model", "day", "Asia/Kolkata")
        api = reader.spend_by(["model"], "day", f, tz="UTC")
        assert [p.name for p in rollup_cache_dir(other).glob("*.parquet")] == [name]
        rows = reader.sql(
            "SELECT count(*) AS n FROM facts WHERE ts >= ? AND ts < ?",
            [start, end],
            cuts=(start, end),
        )["n"].iloc[0]
    assert (str(spend.totals.cost), spend.totals.requests) == (direct[0], direct[1])
    assert str(sum(int(c) for c in api["cost_picousd"])) == direct[0]
    assert int(api["requests"].sum()) == direct[1]
    # the bucket's rollup is read for the 6 whole hours (2 rows each), raw events only
    # for the 2 hours the range's ends split (~124 events an hour)
    assert rows <= 6 * 2 + 2 * 125 < direct[1] / 2
