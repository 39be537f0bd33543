"""Real browser at 1440x900: the Playground's cost estimate and Send are in view without
scrolling."""

from __future__ import annotations

from pathlib import Path

from tests.test_browser_smoke import browser_ready, console_server, signed_in, wait_idle

__all__ = ["browser_ready"]


def test_estimate_and_send_are_visible_without_scrolling(
    browser_ready: None, costline_home: Path, tmp_path: Path
) -> None:
    with (
        console_server(costline_home, tmp_path / "streamlit.log") as url,
        signed_in(url, height=900) as page,
    ):
        page.goto(url + "/playground")
        wait_idle(page)
        page.get_by_text("Before sending").wait_for(timeout=30_000)
        for locator in (
            page.locator('[data-testid="stDataFrame"]').first,  # the estimate table
            page.get_by_role("button", name="Send"),
        ):
            box = locator.bounding_box()
            assert box is not None
            assert box["y"] >= 0 and box["y"] + box["height"] <= 900, box
        assert page.evaluate("window.scrollY") == 0
