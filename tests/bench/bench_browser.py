"""Real-browser console figures (Debian Chromium via Playwright, `streamlit run` on loopback):

- console_first_load_s: the first page load after the server started (the sign-in page,
  from navigation to the script finished and the network idle). Target <= 3 s.
- console_range_90d_s: signed in on the Overview with the demo data, picking "Last 90 days"
  in the sidebar until the page has rerun and settled. Target <= 2 s.
- *_server_cpu_s: CPU seconds the streamlit process used during each figure.
- overview_browser_render_s: the Overview over the demo data plus 1M generated events
  (bench_console's generator), range "Last 90 days", signed in (the session cookie): from
  ``page.goto`` until the script run finished and every chart of the page (the spend chart
  first) has its canvas or svg; median of 5. Each run is cold: every segment's mtime is
  touched first, so the log's version, the key of every cached query, changes (the server
  itself stays warm: one render before the timed ones). ``_server_cpu_s``: the streamlit
  process's CPU during it; ``_chromium_cpu_s``: Chromium's and Playwright's (the median run).
- overview_queries_s: the same run's queries alone, in this process: every cached query a
  cold Overview run calls (chrome banners, page; the sidebar's filters are folded, so their
  options are not read), the same functions with the same
  arguments, ``st.cache_data`` cleared and the version changed the same way, right before
  each render; median of 5.
  ``overview_queries_cpu_s``: this process's CPU for them (DuckDB's threads included).
- overview_render_vs_queries_x: the render over its queries: the median of each render over
  the queries timed just before it (the load of a shared machine drifts). Target <= 2.
  ``overview_server_vs_queries_cpu_x``: the server's CPU for the render over the queries' CPU
  (the console's own Python work, steadier than wall times under load).

Run only these keys: ``python -m tests.bench --only browser``. Skipped (no keys) when
/usr/bin/chromium is absent. Quick mode: 20k generated events, one run each.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
PASSWORD = "bench-admin-pass-1"
RUNNING = '[data-testid="stApp"][data-test-script-state="running"]'
IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'
CHARTS = 3  # the Overview's Vega charts: spend over time, top spenders, unit cost
# Drawn: the run finished, the ten KPIs are there and every chart (at least CHARTS) has its
# canvas or svg. Checked on every animation frame with selectors only (reading innerText
# would lay the page out on every frame and slow down what is measured); no fixed sleep.
DRAWN = """([idle, n]) => {
  if (document.querySelector(idle) === null) return false;
  if (document.querySelectorAll('[data-testid="stMetric"]').length < 10) return false;
  const charts = document.querySelectorAll('[data-testid="stVegaLiteChart"]');
  if (charts.length < n) return false;
  return [...charts].every(c => c.querySelector("canvas, svg") !== null);
}"""
ERRORS = '[data-testid="stException"], [data-testid="stAlertContentError"]'


def _cpu(pid: int) -> float:
    """utime + stime of a process, in seconds (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _tree_cpu(root: int, skip: int) -> float:
    """CPU seconds of ``root``'s descendants (Playwright's driver and Chromium), leaving out
    ``skip`` (the streamlit server) and its own descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parent = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            children.setdefault(parent, []).append(int(entry))
    total, todo = 0.0, list(children.get(root, []))
    while todo:
        pid = todo.pop()
        if pid == skip:
            continue
        with contextlib.suppress(OSError):  # the process ended meanwhile
            total += _cpu(pid)
        todo += children.get(pid, [])
    return total


def _start(home: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    from tests.test_browser_smoke import start_console

    return start_console(home, log, timeout=90, password=PASSWORD)


def stop_console(proc: subprocess.Popen[bytes]) -> None:
    from tests.test_browser_smoke import stop_console as stop

    stop(proc)


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

    from tests.test_browser_smoke import launch, sign_in

    out: dict[str, float] = {}
    proc, url = _start(home, home / "streamlit.log")
    try:
        with sync_playwright() as pw:
            browser = launch(pw, CHROMIUM)
            try:
                page = browser.new_page(viewport={"width": 1440, "height": 900})
                cpu, t0 = _cpu(proc.pid), time.perf_counter()
                page.goto(url)
                _idle_with(page, "Username")
                out["console_first_load_s"] = round(time.perf_counter() - t0, 3)
                out["console_first_load_server_cpu_s"] = round(_cpu(proc.pid) - cpu, 2)
                sign_in(page, PASSWORD)
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
        stop_console(proc)
    return out


def touch(home: Path) -> None:
    """A new version of the log without new data: every segment's mtime moves on, so every
    query keyed on ``Reader.data_version()`` (and DuckDB's Parquet metadata) misses."""
    from core.usage import segments_dir

    stamp = time.time_ns()
    for path in sorted(segments_dir(home).iterdir()):
        if path.is_file():
            stamp += 1_000
            os.utime(path, ns=(stamp, stamp))


def overview_queries(home: Path) -> tuple[float, float, str]:
    """(seconds, CPU seconds of this process, "Spend in range" as shown) of every cached
    query a cold Overview run calls, in the order it calls them, with the arguments it passes
    (range "Last 90 days", no filters, the default grain and dimension, top spenders by
    user, signed in as admin)."""
    import logging

    import streamlit as st

    from console import chrome
    from console.queries import overview, usage
    from console.queries.forecast import now_slot, spend_day_findings
    from console.selection import FILTER_DIMS, Money, Scope, range_bounds, rates_with_defaults
    from core import clock
    from core.control import ControlPlane

    with ControlPlane() as plane:  # what sidebar.build reads
        tz = str(plane.get_setting("timezone") or "UTC")
        rates = rates_with_defaults(plane.get_setting("currency_rates"))
        code = str(plane.get_setting("currency") or "USD")
    money = Money(code, rates[code]) if code in rates else Money()
    logging.getLogger("streamlit.runtime.caching").setLevel(logging.ERROR)  # "no runtime"
    st.cache_data.clear()
    cpu, t0 = time.process_time(), time.perf_counter()
    h, v = str(home), usage.reader_at(str(home)).data_version()
    start, end = range_bounds("90d", tz)
    scope = Scope(start, end, tz, **{d: () for d in FILTER_DIMS})
    usage.event_count(h, v)  # chrome.demo_state (the sidebar's filters are folded: no options)
    chrome._has_demo(h, v)
    chrome._quarantine_banner(h, v)  # admins only; the bench signs in as admin
    overview.coverage(h, v, scope)  # the page
    now = clock.now().replace(second=0, microsecond=0) + timedelta(minutes=1)
    spend = overview.spend(h, v, scope, "model", "day")  # its totals count the unpriced calls
    overview.window_spend(h, v, scope, now)
    spend_day_findings(h, v, tz, scope.start, now_slot())
    overview.top_spenders(h, v, scope, "user")
    return time.perf_counter() - t0, time.process_time() - cpu, money.fmt(spend.totals.cost)


def overview_home(base: Path, rows: int) -> Path:
    """The demo's 90 days plus ``rows`` generated events over the same 90 days."""
    from core.demo import load_demo
    from tests.bench.bench_console import build

    home = base / "bench-browser-overview"
    home.mkdir(parents=True, exist_ok=True)
    os.environ["COSTLINE_HOME"] = str(home)  # the demo's control plane goes there too
    load_demo(home, days=90)
    build(home, rows)
    return home


def measure_overview(home: Path, runs: int) -> dict[str, float]:
    """overview_browser_render_s, overview_queries_s and their ratio (see the docstring)."""
    from playwright.sync_api import sync_playwright

    from tests.test_browser_smoke import launch, sign_in

    os.environ["COSTLINE_HOME"] = str(home)
    overview_queries(home)  # imports and first-use costs in this process, not a figure
    queries: list[tuple[float, float, str]] = []
    renders: list[tuple[float, float, float, str]] = []
    proc, url = _start(home, home / "streamlit.log")
    try:
        with sync_playwright() as pw:
            browser = launch(pw, CHROMIUM)
            try:
                page = browser.new_page(viewport={"width": 1440, "height": 900})
                page.goto(url)
                _idle_with(page, "Username")
                sign_in(page, PASSWORD)
                _idle_with(page, "Spend in range")
                page.wait_for_load_state("networkidle")
                target = url + "/?range=90d"
                for i in range(runs + 1):  # the first: the server's imports, not a figure
                    touch(home)
                    queries.append(overview_queries(home))
                    touch(home)
                    cpu, browser_cpu = _cpu(proc.pid), _tree_cpu(os.getpid(), proc.pid)
                    t0 = time.perf_counter()
                    page.goto(target)
                    page.wait_for_function(
                        DRAWN, arg=[IDLE, CHARTS], timeout=300_000, polling="raf"
                    )
                    wall = time.perf_counter() - t0
                    used = _cpu(proc.pid) - cpu
                    used_browser = _tree_cpu(os.getpid(), proc.pid) - browser_cpu
                    errors = page.locator(ERRORS)
                    assert errors.count() == 0, errors.first.inner_text()[:2000]
                    assert "Last 90 days:" in page.locator("body").inner_text()
                    shown = (
                        page.locator('[data-testid="stMetric"]', has_text="Spend in range")
                        .locator('[data-testid="stMetricValue"]')
                        .inner_text()
                        .strip()
                    )
                    if i:
                        renders.append((wall, used, used_browser, shown))
            finally:
                browser.close()
    finally:
        stop_console(proc)
    pairs = list(zip(queries[1:], renders, strict=True))
    ratio = statistics.median(r[0] / q[0] for q, r in pairs)
    cpu_ratio = statistics.median(r[1] / q[1] for q, r in pairs)
    wall, used, used_browser, shown = sorted(renders)[len(renders) // 2]
    spent, spent_cpu, expected = sorted(queries[1:])[len(queries[1:]) // 2]
    assert shown == expected, (shown, expected)  # the page shows what its queries return
    return {
        "overview_browser_render_s": round(wall, 3),
        "overview_browser_render_server_cpu_s": round(used, 2),
        "overview_browser_render_chromium_cpu_s": round(used_browser, 2),
        "overview_queries_s": round(spent, 3),
        "overview_queries_cpu_s": round(spent_cpu, 2),
        "overview_render_vs_queries_x": round(ratio, 2),
        "overview_server_vs_queries_cpu_x": round(cpu_ratio, 2),
    }


def run(quick: bool) -> dict[str, float]:
    if not Path(CHROMIUM).exists():
        return {}
    from core.demo import load_demo

    base = Path(os.environ.get("COSTLINE_HOME", "/tmp"))
    home = base / "bench-browser"
    home.mkdir(parents=True, exist_ok=True)
    os.environ["COSTLINE_HOME"] = str(home)  # the demo's control plane goes there too
    load_demo(home, days=30 if quick else 90)
    out = measure(home)
    rows = 20_000 if quick else 1_000_000
    out.update(measure_overview(overview_home(base, rows), runs=1 if quick else 5))
    out["overview_browser_rows"] = rows
    return out
