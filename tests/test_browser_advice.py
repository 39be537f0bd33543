"""Real browser: "Apply on Routing & Sampling" from a response-cache advice opens the tab the
proposal lives on ("Cache & rate limits", not the first tab), with the task filled in."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from core import clock
from core.usage import UsageLog
from tests.test_browser_smoke import browser_ready, console_server, signed_in, wait_idle
from tests.test_console_advice_apply import calls

__all__ = ["browser_ready"]

SELECTED = '[role="tab"][aria-selected="true"]'


def test_apply_response_cache_advice_opens_its_tab(
    browser_ready: None, costline_home: Path, tmp_path: Path
) -> None:
    log = UsageLog(costline_home)
    start = clock.now() - timedelta(days=10)
    for e in calls("support", "gpt-4o", 200, start, lambda i: "user: where is my order?"):
        log.append(e)
    log.close()
    with console_server(costline_home, tmp_path / "streamlit.log") as url, signed_in(url) as page:
        page.goto(url + "/forecast")
        wait_idle(page, timeout_ms=180_000)
        page.get_by_text("Cache repeated 'support' requests").wait_for(timeout=60_000)
        page.get_by_role("button", name="Apply on Routing & Sampling").first.click()
        page.wait_for_selector("h1:has-text('Routing & Sampling')", timeout=60_000)
        wait_idle(page)
        assert page.locator(SELECTED).first.inner_text().strip() == "Cache & rate limits"
        task = page.locator('[data-testid="stForm"]').get_by_label("Task", exact=True)
        assert "support" in [task.nth(i).input_value() for i in range(task.count())]
        assert page.get_by_text("Filled in from the savings advice").is_visible()
