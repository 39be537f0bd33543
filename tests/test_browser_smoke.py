"""Real-browser smoke test: `streamlit run console/app.py` on a free loopback port, Debian's
Chromium driven by Playwright signs in, opens every page the navigation lists (so pages added
later are covered), checks that no exception and no error box (``st.error``) is shown, and
saves a screenshot per page. Every wait is on a condition (the page's URL, the script run
finished, the chart drawn), never a fixed sleep.

Skipped only when no `chromium` is on PATH and COSTLINE_REQUIRE_SERVICES is not 1 (then it
fails). Also a script for the README picture (the demo data loaded):

    .venv/bin/python -m tests.test_browser_smoke docs/img/overview.png
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.servers.ports import free_port

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")  # on PATH, or None
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
PASSWORD = "browser-admin-pass-1"
IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'
NAV = '[data-testid="stSidebarNavLink"]'
ERRORS = '[data-testid="stException"], [data-testid="stAlertContentError"]'
CHART = '[data-testid="stVegaLiteChart"] canvas, [data-testid="stVegaLiteChart"] svg'
pytestmark = pytest.mark.slow


def start_console(
    home: Path, log_path: Path, timeout: float = 60, password: str = PASSWORD
) -> tuple[subprocess.Popen[bytes], str]:
    """Start the console as a subprocess, configured only through the environment; return
    it and its URL once it answers (the bench reads the process's CPU)."""
    port = free_port()
    env = {
        **os.environ,
        "STREAMLIT_SERVER_PORT": str(port),
        "STREAMLIT_SERVER_HEADLESS": "true",
        "STREAMLIT_SERVER_ADDRESS": "127.0.0.1",
        "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
        "COSTLINE_HOME": str(home),
        "COSTLINE_ADMIN_PASSWORD": password,
    }
    with open(log_path, "wb") as log:
        cmd = [sys.executable, "-m", "streamlit", "run", "console/app.py"]
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                if r.read() == b"ok":
                    return proc, url
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_console(proc)
            raise RuntimeError("console did not start:\n" + log_path.read_text()[-3000:])
        time.sleep(0.3)


def stop_console(proc: subprocess.Popen[bytes], timeout: float = 15) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def console_server(home: Path, log_path: Path) -> Iterator[str]:
    """The console as a subprocess, configured only through the environment."""
    proc, url = start_console(home, log_path)
    try:
        yield url
    finally:
        stop_console(proc)


def wait_idle(page: Any, timeout_ms: int = 60_000) -> None:
    """Wait until the script run finished and the network is quiet."""
    page.wait_for_selector(IDLE, timeout=timeout_ms)
    page.wait_for_load_state("networkidle")
    page.wait_for_selector(IDLE, timeout=timeout_ms)


def launch(pw: Any, chromium: str | None) -> Any:
    """Debian's Chromium, headless, through Playwright (never a downloaded browser)."""
    return pw.chromium.launch(executable_path=chromium, args=ARGS, headless=True)


def sign_in(page: Any, password: str) -> None:
    """Fill the sign-in form as ``admin`` and submit it."""
    page.get_by_label("Username", exact=True).fill("admin")
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Sign in").click()


@contextmanager
def signed_in(url: str, height: int = 1000) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = launch(pw, CHROMIUM)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": height})
            page.goto(url)
            page.get_by_label("Username", exact=True).wait_for(timeout=60_000)
            sign_in(page, PASSWORD)
            page.wait_for_selector(NAV, timeout=60_000)
            wait_idle(page)
            yield page
        finally:
            browser.close()


def nav_titles(page: Any) -> list[str]:
    """The page titles in the sidebar navigation (the icon's ligature name is dropped)."""
    links = page.locator(NAV)
    return [
        links.nth(i).inner_text().strip().splitlines()[-1].strip() for i in range(links.count())
    ]


def open_page(page: Any, title: str) -> None:
    """Click the page's link; wait until the browser is at its URL and the run finished."""
    link = page.locator(NAV, has_text=title).first
    href = link.evaluate("a => a.href")
    link.click()
    page.wait_for_url(href, timeout=60_000)
    wait_idle(page)


def fill_home(home: Path) -> None:
    from core.demo import load_demo

    load_demo(home)


@pytest.fixture
def browser_ready() -> None:
    if CHROMIUM is None:
        if os.environ.get("COSTLINE_REQUIRE_SERVICES") == "1":
            pytest.fail("no chromium on PATH and COSTLINE_REQUIRE_SERVICES=1")
        pytest.skip("no chromium on PATH")


def test_every_page_renders_without_an_exception(
    browser_ready: None, costline_home: Path, tmp_path: Path
) -> None:
    fill_home(costline_home)  # the demo data `make run` shows
    shots = tmp_path / "screenshots"
    shots.mkdir()
    with console_server(costline_home, tmp_path / "streamlit.log") as url, signed_in(url) as page:
        titles = nav_titles(page)
        assert {"Overview", "Requests", "Import/Export", "Admin"} <= set(titles), titles
        for title in titles:
            open_page(page, title)
            errors = page.locator(ERRORS)
            assert errors.count() == 0, f"{title}: {errors.first.inner_text()[:2000]}"
            assert page.locator("h1").first.is_visible(), title
            path = shots / (re.sub(r"\W+", "_", title).strip("_").lower() + ".png")
            page.screenshot(path=str(path), full_page=True)
            assert path.stat().st_size > 10_000
        open_page(page, "Overview")
        assert page.locator('[data-testid="stMetric"]').count() >= 10
        page.wait_for_selector(CHART, timeout=30_000)  # a chart was drawn


def screenshot_overview(out: Path) -> None:
    """docs/img/overview.png: the Overview with demo data, signed in as admin."""
    with tempfile.TemporaryDirectory(prefix="costline-shot-") as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        os.environ["COSTLINE_HOME"] = str(home)
        fill_home(home)
        with console_server(home, Path(tmp) / "streamlit.log") as url, signed_in(url, 2000) as page:
            open_page(page, "Overview")
            page.wait_for_selector(CHART, timeout=30_000)  # the charts are drawn
            out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(out), full_page=True)


if __name__ == "__main__":
    screenshot_overview(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/img/overview.png"))
