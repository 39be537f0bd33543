"""The demo's story holds whatever day "today" is.

The demo is generated relative to now, in the configured time zone, so weekday alignment,
month ends, DST changes and the incident's place in the window move every day. For each of
the days below (month ends, 29 February, both DST changes of the zone, a Monday, a Sunday,
a new year) the demo is built with the clock pinned there, and the alert worker scans it:

- the injected incident is found on its (local) day, attributed to its user and model;
- each anomaly alert is recorded once per series and day, and a second scan adds nothing;
- the demo budget degrades non-critical calls past 100 % and blocks past the cap.

The history is 62 days: the smallest that always holds the last complete month (the budget
story) and four weeks of baseline before the incident.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from core import clock
from core.control import ControlPlane
from core.demo import load_demo, world
from core.usage import Reader
from core.worker import Worker

TZ = "America/New_York"  # DST from 14 Mar 2027 02:00 to 7 Nov 2027 02:00 (01:00-02:00 twice)
DAYS = 62
LOCAL = [
    ("today", datetime(2026, 12, 4, 16, 0)),
    ("new-year", datetime(2027, 1, 1, 0, 20)),
    ("jan-end", datetime(2027, 1, 31, 23, 45)),
    ("feb-end", datetime(2027, 2, 28, 23, 30)),
    ("dst-start", datetime(2027, 3, 14, 3, 30)),  # an hour after the clocks went forward
    ("monday", datetime(2027, 3, 29, 9, 0)),
    ("apr-end", datetime(2027, 4, 30, 18, 0)),
    ("sunday", datetime(2027, 5, 2, 12, 0)),
    ("jun-end", datetime(2027, 6, 30, 23, 59)),
    ("jul-monday", datetime(2027, 7, 5, 3, 0)),
    ("sep-end", datetime(2027, 9, 30, 12, 0)),
    ("oct-end-sunday", datetime(2027, 10, 31, 1, 30)),
    ("dst-end", datetime(2027, 11, 7, 1, 30)),  # the repeated hour (first pass, EDT)
    ("dst-end-after", datetime(2027, 11, 7, 1, 30, fold=1)),  # its second pass, EST
    ("dec-end", datetime(2027, 12, 31, 23, 0)),
    ("leap-day", datetime(2028, 2, 29, 12, 0)),
]
REASON = re.compile(r"^gpt-4o-mini: org=globex at (\d+)% of monthly budget '[^']+', degraded")


@pytest.mark.parametrize(("label", "local"), LOCAL, ids=[x[0] for x in LOCAL])
def test_demo_story_holds_on(
    label: str, local: datetime, costline_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COSTLINE_TIMEZONE", TZ)
    now = local.replace(tzinfo=ZoneInfo(TZ)).astimezone(UTC)
    with clock.frozen(now):
        summary = load_demo(costline_home, days=DAYS)
        assert summary.end == clock.today(TZ)
        incident = summary.incident[:10]
        assert 9 <= (summary.end - datetime.fromisoformat(incident).date()).days <= 13
        with ControlPlane() as plane, Reader(costline_home) as reader:
            worker = Worker(costline_home, plane=plane, reader=reader, name=f"dates-{label}")
            first = worker.scan()
            again = worker.scan()  # a second scan (or another worker) records nothing new
            worker.close()
            assert not first.errors and not again.errors, (first.errors, again.errors)
            assert again.recorded == {}
            alerts = [a for a in plane.alerts(limit=100_000) if a.kind == "anomaly"]
            budget = plane.budget("demo-org-globex-monthly")
            assert budget is not None and budget.timezone == TZ
            story = reader.sql(
                "SELECT ts, status, degraded, route_reason FROM events"
                " WHERE org = 'globex' AND (degraded OR status = 'blocked') ORDER BY ts"
            )
    pairs = [(a.budget_id, a.window_key) for a in alerts]
    assert len(pairs) == len(set(pairs))  # once per series and day
    mine = [a for a in alerts if (a.budget_id, a.window_key) == ("org=initech", incident)]
    assert len(mine) == 1, sorted(pairs)
    assert world.INCIDENT_USER in mine[0].message and world.INCIDENT_MODEL in mine[0].message
    # the budget story: in a month, globex degrades past 100 %, then is blocked past the cap
    story["month"] = story["ts"].map(budget.window_key)
    blocked = story[story["status"] == "blocked"]
    degraded = story[story["degraded"]]
    assert len(blocked) > 10 and len(degraded) > 10
    pct = degraded["route_reason"].str.extract(REASON)[0].astype(int)
    assert pct.between(100, 124).all()
    for month, rows in blocked.groupby("month"):
        before = degraded[(degraded["month"] == month) & (degraded["ts"] < rows["ts"].min())]
        assert len(before) > 0, f"{month}: blocked without degrading first"
