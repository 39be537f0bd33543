"""The sidebar's choice in the URL: time range, custom dates, filters and currency live in
``st.query_params`` (``?range=90d&org=acme&org=globex&currency=EUR``), so a reload keeps
them and a link can be shared. The page is the URL's path (st.navigation).

``restore`` seeds the sidebar's widget keys from the URL once per session (before the
widgets are drawn); ``publish`` writes the current values back after every run.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date

import streamlit as st

from console.selection import FILTER_DIMS, PRESETS

RESTORED = "links_restored"


def _dates(first: str, last: str) -> tuple[date, date] | None:
    try:
        return date.fromisoformat(first), date.fromisoformat(last)
    except ValueError:
        return None


def restore(rates: Mapping[str, str]) -> None:
    """Once per session: widget values from the URL (unknown values are ignored)."""
    state = st.session_state
    if state.get(RESTORED):
        return
    state[RESTORED] = True
    q = st.query_params
    preset = q.get("range")
    if preset in PRESETS:
        state["f_range"] = preset
    if preset == "custom" and q.get("from") and q.get("to"):
        picked = _dates(q["from"], q["to"])
        if picked:
            state["f_dates"] = picked
    for dim in FILTER_DIMS:
        values = [v for v in q.get_all(dim) if v]
        if values:
            state[f"f_{dim}"] = values
    if q.get("currency") in rates:
        state["f_currency"] = q["currency"]


def wanted() -> dict[str, str | list[str]]:
    """The URL parameters of the current sidebar values (defaults left out)."""
    state = st.session_state
    out: dict[str, str | list[str]] = {}
    preset = state.get("f_range", "30d")
    if preset != "30d":
        out["range"] = preset
    dates = state.get("f_dates")
    if preset == "custom" and isinstance(dates, tuple | list) and len(dates) == 2:
        out["from"], out["to"] = dates[0].isoformat(), dates[1].isoformat()
    for dim in FILTER_DIMS:
        values = list(state.get(f"f_{dim}") or [])
        if values:
            out[dim] = values
    currency = state.get("f_currency")
    if currency and currency != "USD":
        out["currency"] = currency
    return out


def publish() -> None:
    """Write the sidebar's values to the URL; parameters the sidebar does not own stay."""
    q = st.query_params
    new = wanted()
    owned = {"range", "from", "to", "currency", *FILTER_DIMS}
    for key in owned - set(new):
        if key in q:
            del q[key]
    for key, value in new.items():
        current = q.get_all(key)
        if current != (value if isinstance(value, list) else [value]):
            q[key] = value
