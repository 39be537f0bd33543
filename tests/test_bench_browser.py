"""The browser bench's query half (tests/bench/bench_browser.py): what it times as "the
Overview's queries" is every query a cold Overview run makes, with the same arguments; and
its way of making a run cold (touching the segments) changes the version, not the data.

The browser half runs in ``python -m tests.bench --only browser`` (and the same server,
sign-in and waits in tests/test_browser_smoke.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import time_machine

from core import clock
from core.usage import Reader
from tests.bench import bench_browser
from tests.console_support import app


@pytest.fixture
def home(console_home: Path) -> Path:
    return console_home


def test_touch_changes_the_version_and_keeps_the_data(home: Path) -> None:
    with Reader(home) as reader:
        version, totals = reader.data_version(), reader.totals()
        bench_browser.touch(home)
        assert reader.data_version() != version
        assert reader.totals() == totals


def test_the_timed_queries_are_every_query_of_a_cold_overview_run(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a still clock: the page's "now" (to the minute) is the one the timed queries used
    at_minute = clock.now().replace(second=5, microsecond=0)
    with time_machine.travel(at_minute, tick=False):
        seconds, cpu, shown = bench_browser.overview_queries(home)  # fills st.cache_data
        assert seconds > 0 and cpu >= 0
        ran: list[str] = []
        real = Reader._run

        def counted(self: Reader, *args: Any, **kwargs: Any) -> Any:
            ran.append(str(args[0] if args else kwargs)[:200])
            return real(self, *args, **kwargs)

        monkeypatch.setattr(Reader, "_run", counted)
        at = app("admin", timeout=60)
        at.session_state["f_range"] = "90d"
        at.run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Overview"
    # every query of the page's run was answered from what the bench timed
    assert ran == [], ran
    assert [m.value for m in at.metric if m.label == "Spend in range"] == [shown]
    assert at.get("vega_lite_chart"), "the spend chart is drawn"
