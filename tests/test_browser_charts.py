"""Real browser: the Overview's spend chart (with the demo's anomaly marks) fits its column:
the drawn canvas is no wider than the element Streamlit gives it."""

from __future__ import annotations

from pathlib import Path

from tests.test_browser_smoke import browser_ready, console_server, fill_home, signed_in

__all__ = ["browser_ready"]


def test_spend_chart_with_anomaly_marks_fits_its_column(
    browser_ready: None, costline_home: Path, tmp_path: Path
) -> None:
    fill_home(costline_home)
    with console_server(costline_home, tmp_path / "streamlit.log") as url, signed_in(url) as page:
        chart = page.locator('[data-testid="stVegaLiteChart"]').first
        drawn = chart.locator("canvas, svg.marks").first
        drawn.wait_for(timeout=60_000)
        page.wait_for_function(
            "el => el.getBoundingClientRect().width > 0", arg=drawn.element_handle()
        )
        outer = chart.bounding_box()
        inner = drawn.bounding_box()
        assert outer is not None and inner is not None
        assert inner["width"] <= outer["width"] + 1, (inner, outer)
