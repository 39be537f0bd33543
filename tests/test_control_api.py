"""The package surface, calendar windows, URL resolution and the no-UI-import contract."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

import core.control as control
from core.control import Budget, control_url, window_bounds, window_key

ROOT = Path(__file__).resolve().parents[1]


def test_all_is_complete_and_sorted() -> None:
    public = {n for n in vars(control) if not n.startswith("_") and n not in ("annotations",)}
    modules = {n for n in public if type(getattr(control, n)).__name__ == "module"}
    assert set(control.__all__) - modules == public - modules  # a module may be exported too
    consts = [n for n in control.__all__ if n.isupper()]
    classes = [n for n in control.__all__ if n[0].isupper() and not n.isupper()]
    funcs = [n for n in control.__all__ if n[0].islower() and n not in modules]
    names = [n for n in control.__all__ if n not in modules]
    assert names == sorted(consts) + sorted(classes) + sorted(funcs)


def test_importing_the_control_plane_loads_no_ui_package() -> None:
    code = (
        "import sys, core.control; "
        "print(sorted(m for m in ('streamlit', 'altair', 'prophet') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize(
    ("period", "tz", "at", "key", "start", "end"),
    [
        (
            "day",
            "UTC",
            datetime(2026, 5, 14, 23, 30, tzinfo=UTC),
            "2026-05-14",
            "2026-05-14T00:00:00+00:00",
            "2026-05-15T00:00:00+00:00",
        ),
        (
            "day",
            "Asia/Tokyo",
            datetime(2026, 5, 14, 23, 30, tzinfo=UTC),
            "2026-05-15",
            "2026-05-15T00:00:00+09:00",
            "2026-05-16T00:00:00+09:00",
        ),
        (
            "week",
            "UTC",
            datetime(2027, 1, 1, tzinfo=UTC),
            "2026-W53",  # Friday of ISO week 53
            "2026-12-28T00:00:00+00:00",
            "2027-01-04T00:00:00+00:00",
        ),
        (
            "month",
            "Europe/Paris",
            datetime(2026, 3, 31, 22, 30, tzinfo=UTC),
            "2026-04",
            "2026-04-01T00:00:00+02:00",
            "2026-05-01T00:00:00+02:00",
        ),
        (
            "month",
            "America/New_York",
            datetime(2026, 12, 15, tzinfo=UTC),
            "2026-12",
            "2026-12-01T00:00:00-05:00",
            "2027-01-01T00:00:00-05:00",
        ),
        (
            "month",
            "Europe/Paris",
            datetime(2026, 3, 15, tzinfo=UTC),
            "2026-03",  # DST inside
            "2026-03-01T00:00:00+01:00",
            "2026-04-01T00:00:00+02:00",
        ),
    ],
)
def test_calendar_windows(
    period: str, tz: str, at: datetime, key: str, start: str, end: str
) -> None:
    assert window_key(period, tz, at) == key
    lo, hi = window_bounds(period, tz, at)
    assert (lo.isoformat(), hi.isoformat()) == (start, end)
    assert lo <= at < hi


def test_budget_window_key_carries_the_reset_generation() -> None:
    b = Budget(id="b", name="B", limit_tokens=10, period="day", timezone="UTC")
    at = datetime(2026, 5, 14, 12, tzinfo=UTC)
    assert b.window_key(at) == "2026-05-14"
    assert (
        Budget(
            id="b", name="B", limit_tokens=10, period="day", timezone="UTC", reset_generation=3
        ).window_key(at)
        == "2026-05-14.r3"
    )


def test_control_url_precedence(tmp_path: Path) -> None:
    env = {"COSTLINE_HOME": str(tmp_path)}
    assert control_url(env=env) == f"sqlite:///{tmp_path / 'control.db'}"
    env["COSTLINE_CONTROL_URL"] = "postgresql://u@db:5432/costline"
    assert control_url(env=env) == "postgresql+psycopg://u@db:5432/costline"
    assert control_url("sqlite:////x/c.db", env=env) == "sqlite:////x/c.db"
