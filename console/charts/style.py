"""The console's chart look, shared by every chart: sizes, colours, fonts and ``style``."""

from __future__ import annotations

from typing import Final, TypeVar

import altair as alt

C = TypeVar("C", alt.Chart, alt.LayerChart, alt.VConcatChart)

HEIGHT = 300


SMALL_HEIGHT = 220


SCHEME: Final = "tableau10"


ACCENT = "#2f6fde"


MUTED = "#d0d4dc"


FONT = "Source Sans Pro, sans-serif"


BAR_STEP = 22  # pixels per bar in horizontal bar charts: every label stays readable


LABELS = alt.Axis(labelOverlap=False, labelLimit=180)


# the year is always on the axis: imported history is often from another year
DATE_FORMAT = {
    "minute": "%H:%M",
    "hour": "%d %b %H:%M",
    "day": "%d %b %Y",
    "week": "%d %b %Y",
    "month": "%b %Y",
}


def style(chart: C) -> C:
    """The console's look: fonts, no grid, no frame, legend below."""
    styled: C = (
        chart.configure_axis(labelFont=FONT, titleFont=FONT, grid=False)
        .configure_view(strokeWidth=0)
        .configure_legend(labelFont=FONT, titleFont=FONT, orient="bottom")
    )
    return styled
