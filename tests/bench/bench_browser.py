"""Real-browser console figures (Debian Chromium via Playwright, `streamlit run` on loopback):

- console_first_load_s: the first page load after the server started (the sign-in page,
  from navigation to the script finished and the network idle). Target <= 3 s.
- console_range_90d_s: signed in on the Overview with the demo data, picking "Last 90 days"
  in the sidebar until the page has rerun and settled. Target <= 2 s.
- *_server_cpu_s: CPU seconds the streamlit process used during each figure.

Run only these keys: ``python -m tests.bench --only browser``. Skipped (no keys) when
/usr/bin/chromium is absent.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
PASSWORD = "bench-admin-pass-1"
RUNNING = '[data-testid="stApp"][data-test-script-state="running"]'
IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'


def _cpu(pid: int) -> float:
    """utime + stime of a process, in seconds (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _start(home: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    from tests.test_browser_smoke import free_port

    port = free_port()
    env = {
        **os.environ,
        "STREAMLIT_SERVER_PORT": str(port),
        "STREAMLIT_SERVER_HEADLESS": "true",
        "STREAMLIT_SERVER_ADDRESS": "127.0.0.1",
        "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
        "COSTLINE_HOME": str(home),
        "COSTLINE_ADMIN_PASSWORD": PASSWORD,
    }
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "console/app.py"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                if r.read() == b"ok":
                    return proc, url
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise RuntimeError("console did not start:\n" + log.read_text()[-2000:])
        time.sleep(0.2)


def _idle_with(page: Any, text: str) -> None:
    """Wait until the page shows ``text`` and the script run has finished."""
    page.wait_for_function(
        "t => document.body.innerText.includes(t) && document.querySelector("
        + repr(IDLE)
        + ") !== null",
        arg=text,
        timeout=120_000,
        polling=50,
    )


def measure(home: Path) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    out: dict[str, float] = {}
    proc, url = _start(home, home / "streamlit.log")
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            try:
                page = browser.new_page(viewport={"width": 1440, "height": 900})
                cpu, t0 = _cpu(proc.pid), time.perf_counter()
                page.goto(url)
                _idle_with(page, "Username")
                out["console_first_load_s"] = round(time.perf_counter() - t0, 3)
                out["console_first_load_server_cpu_s"] = round(_cpu(proc.pid) - cpu, 2)
                page.get_by_label("Username", exact=True).fill("admin")
                page.get_by_label("Password", exact=True).fill(PASSWORD)
                page.get_by_role("button", name="Sign in").click()
                _idle_with(page, "Spend in range")
                page.wait_for_load_state("networkidle")
                box = page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]').first
                box.click()
                option = page.get_by_role("option", name="Last 90 days", exact=True)
                cpu, t0 = _cpu(proc.pid), time.perf_counter()
                option.click()
                _idle_with(page, "Last 90 days:")  # the Overview's caption of the range
                out["console_range_90d_s"] = round(time.perf_counter() - t0, 3)
                out["console_range_90d_server_cpu_s"] = round(_cpu(proc.pid) - cpu, 2)
                assert "range=90d" in page.url, page.url
            finally:
                browser.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return out


def run(quick: bool) -> dict[str, float]:
    if not Path(CHROMIUM).exists():
        return {}
    from core.demo import load_demo

    home = Path(os.environ.get("COSTLINE_HOME", "/tmp")) / "bench-browser"
    home.mkdir(parents=True, exist_ok=True)
    os.environ["COSTLINE_HOME"] = str(home)  # the demo's control plane goes there too
    load_demo(home, days=30 if quick else 90)
    return measure(home)
