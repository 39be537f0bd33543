"""The demo's story holds whatever day "today" is.

The demo is generated relative to now, in the configured time zone, so weekday alignment,
month ends, DST changes and the incident's place in the window move every day. For each of
the days below (month ends, 29 February, both DST changes of the zone, a Monday, a Sunday,
the last day of a year) the demo is built with the clock pinned there, and the alert worker
scans it:

- the injected incident is found on its (local) day, attributed to its user and model;
- each anomaly alert is recorded once per series and day;
- the demo budget degrades non-critical calls past 100 % and blocks past the cap.

The history is 62 days: the smallest that always holds the last complete month (the budget
story) and four weeks of baseline before the incident. To keep 14 days fast, each writes
only the events (``load_demo``'s control-plane seeding is tested once, below) and the worker
scans the org series: the incident's alert.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from core import clock
from core.control import ControlPlane
from core.demo import _store, generate_demo, load_demo, world
from core.demo._generate import demo_budget
from core.usage import Reader
from core.worker import Worker, _worker

TZ = "America/New_York"  # DST from 14 Mar 2027 02:00 to 7 Nov 2027 02:00 (01:00-02:00 twice)
DAYS = 62
LOCAL = [
    ("today", datetime(2026, 12, 4, 16, 0)),
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
    ("dst-end", datetime(2027, 11, 7, 1, 30, fold=1)),  # the repeated hour, second pass (EST)
    ("dec-end", datetime(2027, 12, 31, 23, 0)),
    ("leap-day", datetime(2028, 2, 29, 12, 0)),
]
REASON = re.compile(r"^gpt-4o-mini: org=globex at (\d+)% of monthly budget '[^']+', degraded")


@pytest.mark.parametrize(("label", "local"), LOCAL, ids=[x[0] for x in LOCAL])
def test_demo_story_holds_on(
    label: str, local: datetime, costline_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COSTLINE_TIMEZONE", TZ)
    monkeypatch.setattr(_worker, "ANOMALY_DIMS", ("org",))
    now = local.replace(tzinfo=ZoneInfo(TZ)).astimezone(UTC)
    with clock.frozen(now):
        table = generate_demo(DAYS, now=now, tz=TZ)
        _store.write(table, costline_home, 7)
        with ControlPlane() as plane, Reader(costline_home) as reader:
            worker = Worker(costline_home, plane=plane, reader=reader, name=f"dates-{label}")
            found = worker.scan()
            worker.close()
            assert not found.errors, found.errors
            alerts = [a for a in plane.alerts(limit=100_000) if a.kind == "anomaly"]
    cols = ["ts", "org", "user", "model", "status", "degraded", "route_reason"]
    frame = table.select(cols).to_pandas()
    assert frame["ts"].max() < now and frame["ts"].min() >= now - timedelta(days=DAYS)
    loop = frame[(frame["user"] == world.INCIDENT_USER) & (frame["model"] == world.INCIDENT_MODEL)]
    local_days = loop["ts"].dt.tz_convert(TZ).dt.date.value_counts()
    incident = local_days.idxmax().isoformat()  # the loop's day: by far the user's busiest
    assert 9 <= (clock_today(now) - local_days.idxmax()).days <= 13
    pairs = [(a.budget_id, a.window_key) for a in alerts]
    assert len(pairs) == len(set(pairs))  # once per series and day
    mine = [a for a in alerts if (a.budget_id, a.window_key) == ("org=initech", incident)]
    assert len(mine) == 1, sorted(pairs)
    assert world.INCIDENT_USER in mine[0].message and world.INCIDENT_MODEL in mine[0].message
    # the budget story: in a month, globex degrades past 100 %, then is blocked past the cap
    budget = demo_budget(Decimal(1), TZ)
    story = frame[(frame["org"] == "globex") & (frame["degraded"] | (frame["status"] == "blocked"))]
    story = story.assign(month=story["ts"].map(budget.window_key))
    blocked = story[story["status"] == "blocked"]
    degraded = story[story["degraded"]]
    assert len(blocked) > 10 and len(degraded) > 10
    pct = degraded["route_reason"].str.extract(REASON)[0].astype(int)
    assert pct.between(100, 124).all()
    for month, rows in blocked.groupby("month"):
        before = degraded[(degraded["month"] == month) & (degraded["ts"] < rows["ts"].min())]
        assert len(before) > 0, f"{month}: blocked without degrading first"


def clock_today(now: datetime) -> date:
    return now.astimezone(ZoneInfo(TZ)).date()


def test_load_demo_uses_the_configured_time_zone(
    costline_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At 21:30 in New York it is already tomorrow in UTC: the demo ends on New York's day,
    and its budget counts New York's months."""
    monkeypatch.setenv("COSTLINE_TIMEZONE", TZ)
    now = datetime(2027, 2, 28, 21, 30, tzinfo=ZoneInfo(TZ))
    with clock.frozen(now.astimezone(UTC)):
        summary = load_demo(costline_home, days=35)
        assert summary.end == clock.today(TZ) == date(2027, 2, 28) != clock.today()
        with ControlPlane() as plane:
            assert plane.get_setting("timezone") == TZ
            budget = plane.budget("demo-org-globex-monthly")
            assert budget is not None and budget.timezone == TZ
            assert budget.window_key(clock.now()) == "2027-02"
