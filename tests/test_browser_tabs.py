"""Real browser: a save or a failed save on an edit tab keeps that tab open, with the error
or the confirmation in view (Budgets' "Edit budgets"); a reload keeps the tab (URL)."""

from __future__ import annotations

from pathlib import Path

from tests.console_support import sample_data
from tests.test_browser_smoke import browser_ready, console_server, signed_in, wait_idle

__all__ = ["browser_ready"]

SELECTED = '[role="tab"][aria-selected="true"]'


def test_saving_a_budget_keeps_the_edit_tab(
    browser_ready: None, costline_home: Path, tmp_path: Path
) -> None:
    sample_data(costline_home)
    with console_server(costline_home, tmp_path / "streamlit.log") as url, signed_in(url) as page:
        page.goto(url + "/budgets")
        wait_idle(page)
        page.get_by_role("tab", name="Edit budgets").click()
        wait_idle(page)
        form = page.locator('[data-testid="stForm"]').first
        form.get_by_label("Id", exact=True).fill("bad id with spaces")
        form.get_by_label("USD limit", exact=True).fill("-5")
        page.get_by_role("button", name="Save budget").click()
        wait_idle(page)
        assert page.locator(SELECTED).inner_text().strip() == "Edit budgets"
        assert page.locator('[data-testid="stAlertContentError"]').first.is_visible()
        form.get_by_label("Id", exact=True).fill("team-month")
        form.get_by_label("Name", exact=True).fill("Team monthly")
        form.get_by_label("USD limit", exact=True).fill("50")
        page.get_by_role("button", name="Save budget").click()
        wait_idle(page)
        page.get_by_text("Budget saved.").wait_for(timeout=30_000)
        assert page.locator(SELECTED).inner_text().strip() == "Edit budgets"
        page.reload()
        wait_idle(page)
        assert page.locator(SELECTED).inner_text().strip() == "Edit budgets"
