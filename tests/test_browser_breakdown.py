"""Real browser: the Overview's breakdown tooltip shows each model's exact spend, rounded once,
half a cent up, for the whole range and after brushing one period (the brush stays drawn and
the legend still highlights). The browser used to sum the bars' float dollars itself and
format them with ',.2f': $1.00 + $0.005 read 1.00 where "Spend in range" read $1.01."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from core import clock
from core.periods import local_midnight
from core.usage import UsageEvent, UsageLog
from tests.test_browser_smoke import IDLE, browser_ready, console_server, signed_in

__all__ = ["browser_ready"]

# per model: (two days ago, yesterday) in picodollars
COSTS = {
    "gpt-4o-mini": (1_000_000_000_000, 5_000_000_000),  # $1.00 + $0.005 = $1.005
    "gpt-4o": (2_000_000_000_000, 675_000_000_000),  # $2.00 + $0.675 = $2.675
}
CHART = '[data-testid="stVegaLiteChart"]'
BAR = CHART + ' svg path[aria-roledescription="bar"]'
BREAKDOWN = "in the selected periods"  # in the breakdown bars' labels (not the spend bars')


def fill(home: Path) -> None:
    log = UsageLog(home)
    noon = local_midnight(clock.now(), "UTC") + timedelta(hours=12)
    for model, costs in COSTS.items():
        for days, cost in zip((2, 1), costs, strict=True):
            log.append(
                UsageEvent(
                    request_id=f"{model}-{days}",
                    ts=noon - timedelta(days=days),
                    org="a",
                    user="ann",
                    provider="openai",
                    model=model,
                    cost_picousd=cost,
                )
            )
    log.close()


def bar(page: Any, *parts: str) -> Any:
    """The bar whose ARIA description (the server writes it: "2026-11-03 · gpt-4o · $6.51 ·
    1 request", "gpt-4o · $2.68 in the selected periods · 2 requests") holds each part."""
    found = page.locator(BAR)
    for part in parts:
        found = found.and_(page.locator(f'[aria-label*="{part}"]'))
    return found


def tooltip(page: Any, target: Any) -> str:
    """Hover the bar; the tooltip's text, one space between words."""
    box = target.bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    tip = page.locator("#vg-tooltip-element.visible")
    tip.wait_for(timeout=10_000)
    return " ".join(tip.inner_text().split())


def test_breakdown_tooltip_is_exact_before_and_after_a_brush(
    browser_ready: None, costline_home: Path, tmp_path: Path
) -> None:
    fill(costline_home)
    with console_server(costline_home, tmp_path / "streamlit.log") as url, signed_in(url) as page:
        mini = bar(page, BREAKDOWN, "gpt-4o-mini · ")
        mini.wait_for(timeout=60_000)
        assert "spend $1.01" in tooltip(page, mini)  # $1.005 exactly, half a cent up
        assert "spend $2.68" in tooltip(page, bar(page, BREAKDOWN, "gpt-4o · "))
        # brush yesterday's bars only: drag across the start of yesterday's stack
        yesterday = local_midnight(clock.now(), "UTC") - timedelta(days=1)
        day = bar(page, f"{yesterday:%Y-%m-%d} · gpt-4o · ")
        box = day.bounding_box()
        assert box is not None
        y = box["y"] + box["height"] / 2
        page.mouse.move(box["x"] - 3, y)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] + 3, y, steps=6)
        page.mouse.up()
        brushed = bar(page, BREAKDOWN, "gpt-4o · ", "· 1 request")
        brushed.wait_for(timeout=30_000)  # the fragment's rerun sent yesterday's breakdown
        page.wait_for_selector(IDLE, timeout=30_000)
        assert "spend $0.68" in tooltip(page, brushed)  # $0.675 alone
        assert "spend $0.01" in tooltip(page, bar(page, BREAKDOWN, "gpt-4o-mini · "))
        # the brush is still drawn after the rerun (a rect over yesterday), and a click on a
        # legend entry still highlights its model (the other greys out)
        brush = page.locator(CHART).first.locator("g.periods_brush path").first
        width = brush.evaluate("p => p.getBBox().width")
        assert width > box["width"], width
        page.locator(CHART).first.locator(
            "g.role-legend-label text", has_text="gpt-4o-mini"
        ).click()
        page.wait_for_function(
            "s => document.querySelector(s).getAttribute('fill') === '#d0d4dc'",
            arg=BAR + f'[aria-label*="{BREAKDOWN}"][aria-label^="gpt-4o · "]',
            timeout=10_000,
        )


def test_spend_bars_stack_to_the_period_total(
    browser_ready: None, costline_home: Path, tmp_path: Path
) -> None:
    """Each period's bars are stacked: two days ago gpt-4o ($2) and gpt-4o-mini ($1) touch,
    one twice as tall as the other (the bars were drawn as 5-px lines at each value's own
    height, never stacked, once the chart's y lost its aggregate)."""
    fill(costline_home)
    with console_server(costline_home, tmp_path / "streamlit.log") as url, signed_in(url) as page:
        day = local_midnight(clock.now(), "UTC") - timedelta(days=2)
        at = f"{day:%Y-%m-%d} · "
        big, small = bar(page, at + "gpt-4o · "), bar(page, at + "gpt-4o-mini · ")
        big.wait_for(timeout=60_000)
        box = "p => { const b = p.getBBox(); return {y: b.y, height: b.height}; }"
        boxes = [b.evaluate(box) for b in (big, small)]
        (high, low), (two, one) = sorted(boxes, key=lambda b: b["y"]), boxes
        assert one["height"] > 20 and abs(two["height"] - 2 * one["height"]) <= 1, boxes
        assert abs(high["y"] + high["height"] - low["y"]) <= 1, boxes  # touching: a stack
