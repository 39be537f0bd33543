"""The shared sidebar, built once in app.py: time range, filters, currency, who is signed in.

Its widgets have fixed ``f_*`` keys, so their values persist across pages; pages read the
result, a ``selection.Selection``, with ``current_selection()``.
"""

from __future__ import annotations

from datetime import date, timedelta

import streamlit as st

from console import auth, links
from console.queries import usage
from console.selection import (
    FILTER_DIMS,
    PRESETS,
    Money,
    Scope,
    Selection,
    range_bounds,
    rates_with_defaults,
    today_in,
)
from core.control import Actor

SELECTION_KEY = "selection"
FILTERS_OPEN = "f_filters_open"  # the filters expander's state
LABELS = {
    "org": "Org",
    "project": "Project",
    "user": "User",
    "model": "Model",
    "provider": "Provider",
    "task": "Task",
    "key": "API key",
    "tag": "Tag",
}


def current_selection() -> Selection:
    selection: Selection = st.session_state[SELECTION_KEY]
    return selection


def build(actor: Actor) -> Selection:
    plane = auth.plane()
    tz = str(plane.get_setting("timezone") or "UTC")
    rates = rates_with_defaults(plane.get_setting("currency_rates"))
    links.restore(rates)
    with st.sidebar:
        preset, custom = _time_range(tz)
        chosen = _filters()
        money = _currency(rates, str(plane.get_setting("currency") or "USD"))
        _who(actor)
    start, end = range_bounds(preset, tz, custom=custom)
    selection = Selection(Scope(start, end, tz, **chosen), money, preset)
    st.session_state[SELECTION_KEY] = selection
    links.publish()
    return selection


def _time_range(tz: str) -> tuple[str, tuple[date, date] | None]:
    st.session_state.setdefault("f_range", "30d")
    preset = st.selectbox(
        "Time range", list(PRESETS), format_func=PRESETS.__getitem__, key="f_range"
    )
    if preset != "custom":
        return preset, None
    today = today_in(tz)
    picked = st.date_input(
        "From – to", value=(today - timedelta(days=29), today), max_value=today, key="f_dates"
    )
    dates = [d for d in (picked if isinstance(picked, tuple | list) else (picked,)) if d]
    if not dates:
        return preset, None  # the user cleared the dates: fall back to the last 30 days
    return preset, (dates[0], dates[-1])


def _filters() -> dict[str, tuple[str, ...]]:
    """The dimension filters, drawn only while their expander is open (it reruns the page
    when opened or closed): folded, a page run neither scans the log for their options nor
    sends eight multiselects the browser would lay out unseen (~0.2 s of Chromium's CPU on a
    cold Overview). The chosen values stay in the session meanwhile."""
    state = st.session_state
    for dim in FILTER_DIMS:  # a widget not drawn in a run would lose its value
        if f"f_{dim}" in state:
            state[f"f_{dim}"] = state[f"f_{dim}"]
    chosen = {dim: tuple(state.get(f"f_{dim}") or ()) for dim in FILTER_DIMS}
    active = sum(1 for values in chosen.values() if values)
    label = f"Filters ({active} on)" if active else "Filters"
    box = st.expander(label, key=FILTERS_OPEN, on_change="rerun")
    if not box.open:
        return chosen
    options = usage.filter_options(usage.home(), usage.version())
    with box:
        for dim in FILTER_DIMS:
            kept = [v for v in chosen[dim] if v not in options[dim]]
            values = st.multiselect(
                LABELS[dim], options[dim] + kept, key=f"f_{dim}", placeholder="All"
            )
            chosen[dim] = tuple(values)
    return chosen


def _currency(rates: dict[str, str], default: str) -> Money:
    if st.session_state.get("f_currency") not in rates:
        st.session_state["f_currency"] = default if default in rates else "USD"
    code = st.selectbox(
        "Currency",
        list(rates),
        key="f_currency",
        help="Display rates per 1 USD from the control-plane settings",
    )
    return Money(code, rates[code])


def _who(actor: Actor) -> None:
    st.divider()
    st.caption(f"Signed in as **{actor.username}** ({actor.role})")
    if st.button("Sign out", key="sign_out"):
        auth.sign_out()
        st.rerun()
