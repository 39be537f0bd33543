"""Real browser (Debian Chromium via Playwright): a reload (F5) keeps the user signed in
(signed session cookie with an expiry), the page and the sidebar's range and filters (URL
query parameters); signing out deletes the cookie, so a reload shows the sign-in form."""

from __future__ import annotations

from pathlib import Path

from tests.console_support import sample_data
from tests.test_browser_smoke import browser_ready, console_server, signed_in, wait_idle

__all__ = ["browser_ready"]


def test_reload_keeps_session_page_and_filters(
    browser_ready: None, costline_home: Path, tmp_path: Path
) -> None:
    sample_data(costline_home)
    with console_server(costline_home, tmp_path / "streamlit.log") as url, signed_in(url) as page:
        page.wait_for_function("document.cookie.includes('costline_session=')", timeout=30_000)
        cookie = next(c for c in page.context.cookies() if c["name"] == "costline_session")
        browser_now = page.evaluate("Date.now() / 1000")  # the clock its expiry is set by
        assert cookie["expires"] > browser_now + 3600  # persistent, with an expiry
        assert cookie["sameSite"] == "Strict"
        page.goto(url + "/budgets?range=90d&org=org1")
        wait_idle(page)
        page.reload()  # F5
        wait_idle(page)
        assert page.get_by_label("Username", exact=True).count() == 0
        page.wait_for_selector("h1:has-text('Budgets')", timeout=30_000)
        assert "range=90d" in page.url and "org=org1" in page.url
        sidebar = page.locator('[data-testid="stSidebar"]')
        boxes = sidebar.locator('[data-testid="stSelectbox"]')
        shown = boxes.first.locator("input").input_value() + boxes.first.inner_text()
        assert "Last 90 days" in shown
        sidebar.get_by_text("Filters (1 on)").click()  # drawn only while open
        wait_idle(page)
        assert "org1" in (
            sidebar.locator('[data-testid="stMultiSelect"]').first.text_content() or ""
        )
        # a forged cookie is refused
        page.context.add_cookies([{**cookie, "value": cookie["value"][:-4] + "0000"}])
        page.reload()
        wait_idle(page)
        assert page.get_by_label("Username", exact=True).count() == 1
        page.context.add_cookies([cookie])
        page.goto(url + "/budgets")
        wait_idle(page)
        page.wait_for_selector("h1:has-text('Budgets')", timeout=30_000)
        page.get_by_role("button", name="Sign out").click()
        wait_idle(page)
        page.wait_for_function("!document.cookie.includes('costline_session=')", timeout=30_000)
        page.reload()
        wait_idle(page)
        assert page.get_by_label("Username", exact=True).count() == 1
