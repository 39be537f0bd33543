"""Real browser: every mark on the Overview's charts carries the screen-reader label the server
wrote (its ARIA description), with the money rounded as the tooltips round it: the exact sum,
to the cent, half a cent up. Vega-Lite's own label read every encoded field, so a stacked bar
said its stack top under "spend ($)" (gpt-4o-mini's $1.00 on top of gpt-4o's $2.00 read
"spend ($): 3") and the other charts read raw floats ("spend ($): 85.6771025")."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

from core import clock
from core.periods import local_midnight
from tests.test_browser_breakdown import fill, tooltip
from tests.test_browser_smoke import IDLE, browser_ready, console_server, signed_in

__all__ = ["browser_ready"]

CHART = '[data-testid="stVegaLiteChart"]'
MARKS = (
    CHART
    + ' [aria-roledescription="bar"], '
    + CHART
    + ' [aria-roledescription="point"], '
    + CHART
    + ' [aria-roledescription="text mark"]'
)
LABELS = "els => els.map(e => e.getAttribute('aria-label'))"


def test_every_overview_mark_is_labelled_with_its_exact_money(
    browser_ready: None, costline_home: Path, tmp_path: Path
) -> None:
    fill(costline_home)  # per model: two days ago, yesterday ($1.00 + $0.005, $2.00 + $0.675)
    midnight = local_midnight(clock.now(), "UTC")
    two, one = (f"{midnight - timedelta(days=d):%Y-%m-%d}" for d in (2, 1))
    with console_server(costline_home, tmp_path / "streamlit.log") as url, signed_in(url) as page:
        page.wait_for_selector(IDLE, timeout=60_000)
        page.locator(CHART + ' svg [aria-roledescription="point"]').first.wait_for(timeout=60_000)
        labels = page.eval_on_selector_all(MARKS, LABELS)
        bars = {
            f"{two} · gpt-4o · $2.00 · 1 request",
            f"{two} · gpt-4o-mini · $1.00 · 1 request",  # on top of $2.00: Vega read "3"
            f"{one} · gpt-4o · $0.68 · 1 request",  # $0.675, half a cent up
            f"{one} · gpt-4o-mini · $0.01 · 1 request",  # $0.005
        }
        breakdown = {
            "gpt-4o · $2.68 in the selected periods · 2 requests",
            "gpt-4o-mini · $1.01 in the selected periods · 2 requests",
        }
        top = {"ann · $3.68 · 4 requests"}  # the top users: a bar and its text
        per_1k = {f"{two} · $1,500.0000 per 1K requests · 2 requests"}
        per_1k.add(f"{one} · $340.0000 per 1K requests · 2 requests")
        assert bars | breakdown | top | per_1k == set(labels), labels
        assert not [s for s in labels if re.search(r"\d\.\d{5,}|: ", s)], labels  # no raw floats
        # a bar's label says what its tooltip says
        mini = page.locator(CHART + f' [aria-label="{two} · gpt-4o-mini · $1.00 · 1 request"]')
        assert "spend $1.00" in tooltip(page, mini)
