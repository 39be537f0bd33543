"""Hourly anomalies in real hours: the hour a DST fall-back repeats is two hours, each judged
on its own against the same wall-clock hour of the days before, and a finding in it is
labelled with its UTC offset (the two 01:00s merged into one and the label could be either)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from core.insights import scan_usage
from core.insights._alerts import alert_message
from core.usage import Reader, UsageLog
from tests.events_support import spend_event

TZ = "America/New_York"  # falls back on 1 Nov 2026: 01:00-02:00 EDT, then 01:00-02:00 EST
NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
SECOND_ONE_AM = datetime(2026, 11, 1, 6, 30, tzinfo=UTC)  # 01:30 EST (UTC-05:00)


def test_the_repeated_fall_back_hour_is_judged_alone_and_labelled(costline_home: Path) -> None:
    log = UsageLog(costline_home)
    at = (NOW - timedelta(days=40)).replace(minute=30)
    n = 0
    while at < NOW:  # $1 every real hour
        log.append(spend_event(f"h{n}", at, 1))
        at += timedelta(hours=1)
        n += 1
    log.append(spend_event("spike", SECOND_ONE_AM + timedelta(minutes=5), 29))  # $30 in that hour
    log.close()
    with Reader(costline_home) as reader:
        found = scan_usage(
            reader,
            dims=("org",),
            metrics=("spend",),
            grains=("hour",),
            tz=TZ,
            since=NOW - timedelta(days=3),
            now=NOW,
        )
    (fd,) = found
    assert fd.anomaly.value == 30.0  # not $31: the first 01:00 (EDT) is an hour of its own
    assert fd.utc_offset == -300 and fd.start_utc == SECOND_ONE_AM.replace(minute=0)
    assert fd.when == "2026-11-01 01:00 UTC-05:00"
    assert "on 2026-11-01 01:00 UTC-05:00:" in fd.describe()
    assert "unusual hours: 01:00 UTC-05:00" in alert_message([fd])
