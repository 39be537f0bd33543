"""The console's chart look, shared by every chart: sizes, colours, fonts and ``style``."""

from __future__ import annotations

from typing import Any, Final, TypeVar

import altair as alt

C = TypeVar("C", alt.Chart, alt.LayerChart, alt.VConcatChart)

HEIGHT = 300


SMALL_HEIGHT = 220


SCHEME: Final = "tableau10"


ACCENT = "#2f6fde"


MUTED = "#d0d4dc"


FONT = "Source Sans Pro, sans-serif"


BAR_STEP = 22  # pixels per bar in horizontal bar charts: every label stays readable


LABELS_SPEC: dict[str, Any] = {"labelOverlap": False, "labelLimit": 180}
LABELS = alt.Axis(**LABELS_SPEC)


# the year is always on the axis: imported history is often from another year
DATE_FORMAT = {
    "minute": "%H:%M",
    "hour": "%d %b %H:%M",
    "day": "%d %b %Y",
    "week": "%d %b %Y",
    "month": "%b %Y",
}


def spec_config() -> dict[str, Any]:
    """The console's look as a Vega-Lite ``config``: fonts, no grid, no frame, legend below."""
    return {
        "axis": {"labelFont": FONT, "titleFont": FONT, "grid": False},
        "view": {"strokeWidth": 0},
        "legend": {"labelFont": FONT, "titleFont": FONT, "orient": "bottom"},
    }


def style(chart: C) -> C:
    """The same look on an Altair chart (the Forecast page's, the Requests page's)."""
    styled: C = (
        chart.configure_axis(labelFont=FONT, titleFont=FONT, grid=False)
        .configure_view(strokeWidth=0)
        .configure_legend(labelFont=FONT, titleFont=FONT, orient="bottom")
    )
    return styled


PALETTE: Final = [  # tableau20, in an order where neighbours differ
    "#4e79a7",
    "#f28e2b",
    "#e15759",
    "#76b7b2",
    "#59a14f",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#a0cbe8",
    "#ffbe7d",
    "#ff9d9a",
    "#86bcb6",
    "#8cd17d",
    "#f1ce63",
    "#d4a6c8",
    "#fabfd2",
    "#d7b5a6",
    "#499894",
    "#79706e",
]
OTHER_COLOUR = "#bab0ac"


def colours(keys: list[str]) -> tuple[list[str], list[str]]:
    """A colour per key that depends on the key's name, not on the data (a model keeps its
    colour as spend moves); distinct keys never share one (a taken slot moves to the next
    free one, in name order); "other" is grey."""
    import hashlib

    domain = sorted({str(k) for k in keys})
    taken: dict[int, str] = {}
    out: dict[str, str] = {}
    for key in domain:
        if key == "other":
            out[key] = OTHER_COLOUR
            continue
        slot = int(hashlib.sha1(key.encode()).hexdigest(), 16) % len(PALETTE)
        for step in range(len(PALETTE)):
            probe = (slot + step) % len(PALETTE)
            if probe not in taken:
                taken[probe] = key
                out[key] = PALETTE[probe]
                break
        else:
            out[key] = OTHER_COLOUR
    return domain, [out[k] for k in domain]
