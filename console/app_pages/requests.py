"""Requests: the call log, paged on the server, with a detail view and the errors by type."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import streamlit as st

from console import chrome
from console.charts.spend import errors_bars
from console.frames.display import readable
from console.frames.requests import log_frame
from console.queries import overview, usage
from console.queries import requests as queries
from console.selection import Selection
from console.sidebar import current_selection
from core.export import is_cost
from core.types import pico_to_usd
from core.usage import STATUSES

PAGE_SIZES = [25, 50, 100, 200]


def main() -> None:
    selection = current_selection()
    st.title("Requests")
    st.caption(selection.describe())
    pruned_note(selection)
    chrome.unpriced_notice(overview.unpriced_calls(usage.home(), usage.version(), selection.scope))
    log_tab, errors_tab = st.tabs(["Log", "Errors"], **chrome.kept_tabs("rq_tab"))
    with log_tab:
        request_log(selection)
    with errors_tab:
        errors(selection)


def pruned_note(selection: Selection) -> None:
    """Retention removed raw events inside the range: they are not listed (totals elsewhere
    still count them)."""
    note = overview.coverage(usage.home(), usage.version(), selection.scope).note()
    if note:
        st.warning(note.capitalize() + ".", icon=":material/history:")


def request_log(selection: Selection) -> None:
    status, order_by, descending, size = log_controls()
    home, version = usage.home(), usage.version()
    total = queries.request_count(home, version, selection.scope, status)
    pages = max(1, math.ceil(total / size))
    if st.session_state.get("rq_page", 1) > pages:  # the filters shrank the log
        st.session_state["rq_page"] = 1
    page = st.columns(4)[0].number_input(f"Page (of {pages:,})", 1, pages, 1, key="rq_page") - 1
    rows = queries.request_page(
        home, version, selection.scope, status, order_by, descending, int(page), size
    )
    st.caption(f"{total:,} calls · showing {len(rows):,} from #{page * size + 1:,}")
    if rows.empty:
        st.info("No calls match these filters.")
        detail([], None, selection.scope.tz)  # any request can still be looked up by id
        return
    st.caption("Click a row to open its detail below.")
    picked = st.dataframe(
        readable(log_frame(rows, selection.money), selection.scope.tz),
        hide_index=True,
        width="stretch",
        column_config=_log_columns(selection),
        key="rq_log",
        on_select=_clicked,
        selection_mode="single-row",
    )
    clicked = [int(i) for i in picked.selection.rows if 0 <= int(i) < len(rows)]
    ids = list(rows["request_id"])
    detail(ids, ids[clicked[0]] if clicked else None, selection.scope.tz)


def _clicked() -> None:
    """A row click replaces a typed id (the newest choice wins)."""
    st.session_state["rq_lookup"] = ""


def log_controls() -> tuple[tuple[str, ...], str, bool, int]:
    cols = st.columns([3, 2, 1, 1])
    status = cols[0].multiselect("Status", STATUSES, key="rq_status", placeholder="All")
    order_by = cols[1].selectbox(
        "Sort by", list(queries.SORTABLE), key="rq_sort", format_func=queries.SORTABLE.__getitem__
    )
    direction = cols[2].selectbox("Order", ["desc", "asc"], key="rq_dir")
    size = cols[3].selectbox("Rows", PAGE_SIZES, index=1, key="rq_size")
    return tuple(status), order_by, direction == "desc", int(size)


def detail(on_page: list[str], clicked: str | None = None, tz: str = "UTC") -> None:
    """The detail of the row clicked in the log, else of the id typed, else of the one picked."""
    st.subheader("Request detail")
    typed = st.text_input("Request id", key="rq_lookup", placeholder="req_… (any request)")
    picked = st.selectbox("Or pick one on this page", on_page, key="rq_pick") if on_page else None
    chosen = typed.strip() or clicked or picked
    if not chosen:
        return
    record = queries.request_detail(chosen)
    if record is None:
        st.warning(f"No request {chosen!r}.")
        return
    st.json(dollars(record, tz), expanded=True)


def dollars(record: dict[str, Any], tz: str = "UTC") -> dict[str, object]:
    """The detail with every ``*_picousd`` amount as exact dollars (``cost_usd``: "$0.0042"
    style text with all its digits), JSON-friendly; a call logged unpriced has null costs
    (unknown, as the log table and the export show it), never 0. Times in ``tz`` with their
    offset, as the log above shows them."""
    zone = ZoneInfo(tz)
    record = {
        k: v.astimezone(zone) if isinstance(v, datetime) and v.tzinfo else v
        for k, v in record.items()
    }
    out: dict[str, object] = {}
    unknown = bool(record.get("unpriced"))
    for k, v in record.items():
        if k.endswith("_picousd"):
            pico = None if v is None or (isinstance(v, float) and math.isnan(v)) else int(v)
            pico = None if unknown and is_cost(k) else pico
            usd = None if pico is None else pico_to_usd(pico)
            out[k.removesuffix("_picousd") + "_usd"] = None if usd is None else f"{usd:f}"
        else:
            out[k] = _plain(v)
    return out


def errors(selection: Selection) -> None:
    table = queries.errors_by_type(usage.home(), usage.version(), selection.scope)
    if table.empty:
        st.success("No failed calls in this range.")
        return
    st.metric("Failed calls", f"{int(table['errors'].sum()):,}")
    st.altair_chart(errors_bars(table), width="stretch")
    st.dataframe(readable(table, selection.scope.tz), hide_index=True, width="stretch")


def _log_columns(selection: Selection) -> dict[str, Any]:
    return {
        "time": st.column_config.TextColumn(f"time ({selection.scope.tz})"),
        # text: '<$0.000001' for a billed call too small for six decimals, '$0' for a free one
        "cost": st.column_config.TextColumn(
            f"cost ({selection.money.currency})",
            help="To the millionth, half up; the detail below has the exact amount",
        ),
        "tokens": st.column_config.NumberColumn("tokens", format="localized"),
    }


def _plain(value: object) -> object:
    """JSON-friendly value for the detail view (money stays exact integers)."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


main()
