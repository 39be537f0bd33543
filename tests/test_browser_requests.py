"""Real browser: clicking a row of the Requests log opens that call's detail."""

from __future__ import annotations

from pathlib import Path

from core.usage import Reader
from tests.console_support import sample_data
from tests.test_browser_smoke import browser_ready, console_server, signed_in, wait_idle

__all__ = ["browser_ready"]

HEADER_PX = 35  # glide grid header and row height at the default density
ROW_PX = 35


def test_clicking_a_row_opens_its_detail(
    browser_ready: None, costline_home: Path, tmp_path: Path
) -> None:
    sample_data(costline_home)
    with Reader(costline_home) as reader:
        newest = list(reader.events(None, ["request_id"], "ts", True, limit=5)["request_id"])
    with console_server(costline_home, tmp_path / "streamlit.log") as url, signed_in(url) as page:
        page.goto(url + "/requests?range=all")
        wait_idle(page)
        # the log's grid: the Errors tab's, hidden, may be in the page first while it loads
        grid = page.locator('[data-testid="stDataFrame"]:visible').first
        grid.scroll_into_view_if_needed()
        box = grid.bounding_box()
        assert box is not None
        for row in (2, 0):
            y = box["y"] + HEADER_PX + ROW_PX * row + ROW_PX / 2
            page.mouse.click(box["x"] + 14, y)  # the row marker column
            wait_idle(page)
            detail = page.locator('[data-testid="stJson"]').first
            detail.get_by_text(newest[row]).first.wait_for(timeout=30_000)
            assert newest[row - 1 if row else 1] not in detail.inner_text()
