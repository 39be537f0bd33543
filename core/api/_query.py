"""Query parameters shared by the usage and spend endpoints: time range, filters, group_by.

Times: ``start``/``end`` take a date (local midnight in the configured time zone) or an ISO
datetime (no offset: the configured zone); ``end`` is exclusive. Without them, ``range``
picks a preset as the console's sidebar does (today, 7d, 30d, 90d, mtd; default 30d).
"""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

from core.api._http import ApiError, Call, Param
from core.periods import PRESETS, local_midnight, range_bounds
from core.usage import GRAINS, ROLLUP_DIMS, Filters

FILTER_DIMS: tuple[str, ...] = tuple(
    d for d in ("org", "project", "user", "key", "model", "provider", "task") if d in ROLLUP_DIMS
)
STR = {"type": "string"}
RANGE_PARAMS = (
    Param("start", STR, "first instant: YYYY-MM-DD (local midnight) or ISO datetime"),
    Param("end", STR, "end, exclusive: YYYY-MM-DD (local midnight) or ISO datetime"),
    Param(
        "range",
        {"type": "string", "enum": [p for p in PRESETS if p != "custom"]},
        "preset when start/end are not given (default 30d)",
    ),
)
FILTER_PARAMS = tuple(
    Param(d, STR, f"only these {d} values (comma-separated or repeated)") for d in FILTER_DIMS
)


def parse_time(text: str, tz: str, name: str, status: int = 400) -> datetime:
    """``status``: 400 for a query parameter, 422 for a field of a JSON body."""
    try:
        if len(text) == 10:
            return local_midnight(date.fromisoformat(text), tz)
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(
            status, f"{name}: {text!r} is not a date (YYYY-MM-DD) or ISO datetime", name
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=ZoneInfo(tz))


def time_range(call: Call, tz: str, default: str = "30d") -> tuple[datetime, datetime]:
    preset = call.arg("range") or default
    if preset not in PRESETS or preset == "custom":
        choices = ", ".join(p for p in PRESETS if p != "custom")
        raise ApiError(400, f"range: must be one of {choices} (got {preset!r})", "range")
    start, end = range_bounds(preset, tz)
    text_start, text_end = call.arg("start"), call.arg("end")
    if text_start:
        start = parse_time(text_start, tz, "start")
    if text_end:
        end = parse_time(text_end, tz, "end")
    if end <= start:
        raise ApiError(400, "end: must be after start", "end")
    return start, end


def nonempty(values: list[str], name: str) -> list[str]:
    """A filter given with no value (``?org=``, ``?org=,``) is a 400: it matched no row, so
    the answer read as zero spend."""
    if not values:
        raise ApiError(
            400, f"{name}: no value given (leave {name} out to include every {name})", name
        )
    return values


def filters(call: Call, tz: str, *, status: list[str] | None = None) -> Filters:
    start, end = time_range(call, tz)
    values: dict[str, object] = {"start": start, "end": end}
    for d in FILTER_DIMS:
        chosen = call.args(d)
        if chosen is not None:
            values[d] = nonempty(chosen, d)
    if status is not None:
        values["status"] = status
    try:
        return Filters(**values)  # type: ignore[arg-type]
    except TypeError as exc:  # a dimension this version's Filters lacks (e.g. key)
        raise ApiError(400, f"filter not supported: {exc}") from None


def group_by(call: Call) -> tuple[list[str], str | None]:
    """``group_by=day,model``: at most one of hour/day/week/month plus filter dimensions."""
    dims: list[str] = []
    grain: str | None = None
    for item in call.args("group_by") or []:
        if item in GRAINS:
            if grain is not None:
                raise ApiError(
                    400, "group_by: at most one of minute, hour, day, week, month", "group_by"
                )
            grain = item
        elif item in FILTER_DIMS:
            if item in dims:
                raise ApiError(400, f"group_by: {item!r} given twice", "group_by")
            dims.append(item)
        else:
            choices = ", ".join((*GRAINS, *FILTER_DIMS))
            raise ApiError(400, f"group_by: unknown {item!r}; choose from {choices}", "group_by")
    return dims, grain
