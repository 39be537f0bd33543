"""The page chrome app.py draws around every page: the empty-state offer, the demo-data
banner and, for admins, the quarantine banner."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import streamlit as st

from console import auth, forms
from console.commands.usage import load_demo, remove_demo
from console.queries import usage
from core.control import Actor
from core.demo import has_demo
from core.errors import CostlineError
from core.usage import quarantine_summary

REMOVED = "Demo data removed: the log and the control plane hold only your own data."


@st.cache_data(ttl=600, show_spinner=False)
def _has_demo(home: str, version: str) -> bool:
    return has_demo(Path(home))


def demo_state(actor: Actor) -> None:
    """Offer demo data on an empty log; say when demo data is present, with a remove button
    (confirmed); say what happened after either."""
    if st.session_state.get(forms.FLASH_KEY) == REMOVED:
        st.success(st.session_state.pop(forms.FLASH_KEY), icon=":material/check_circle:")
    home, version = usage.home(), usage.version()
    if usage.event_count(home, version) == 0:
        _offer_demo(actor)
    elif _has_demo(home, version):
        _demo_banner(actor)


@st.cache_data(ttl=30, show_spinner=False)
def _quarantine_banner(home: str, version: str) -> str | None:
    return quarantine_summary(Path(home)).banner()


def quarantine_state(actor: Actor) -> None:
    """Tell admins when usage data is quarantined (totals may be low)."""
    if not auth.may(actor, "admin"):
        return
    text = _quarantine_banner(usage.home(), usage.version())
    if text:
        st.warning(text, icon=":material/report:")


def _offer_demo(actor: Actor) -> None:
    with st.container(border=True):
        st.markdown(
            "**No usage recorded yet.** Route calls through `core.Router`, import a"
            " CSV on the Import/Export page, or explore with 90 days of demo data."
        )
        if not auth.may(actor, "engineer"):
            st.caption("An engineer or admin can load demo data.")
        elif st.button("Load demo data", type="primary", key="demo_load"):
            _run(load_demo, actor, "Loading 90 days of demo data…")


def _demo_banner(actor: Actor) -> None:
    cols = st.columns([5, 1])
    cols[0].info("Demo data is loaded: these figures are synthetic.", icon=":material/science:")
    if auth.may(actor, "engineer") and forms.ask(
        "demo", "remove", "data", "Remove demo data", where=cols[1], key_override="demo_remove"
    ):
        forms.confirm(
            "demo",
            "remove",
            "data",
            "Remove the demo data? Its calls, budgets, policies, strategies and rate limits"
            " are deleted; your own data stays.",
            REMOVED,
            lambda: remove_demo(actor),
        )


def _run(action: Callable[[Actor], object], actor: Actor, busy: str) -> None:
    try:
        with st.spinner(busy):
            action(actor)
    except CostlineError as exc:
        st.error(str(exc))
        return
    st.rerun()


def unpriced_notice(count: int) -> None:
    """'N unpriced calls not in totals': shown wherever totals are, so none drops out silently."""
    if count <= 0:
        return
    calls = "call" if count == 1 else "calls"
    st.warning(
        f"**{count:,} unpriced {calls} not in totals**: their models have no price, so"
        " their cost is unknown (never counted as $0). An admin can price them on the"
        " Pricing page (Unpriced tab); the accounting export lists them separately.",
        icon=":material/money_off:",
    )


def kept_tabs(key: str) -> dict[str, Any]:
    """``st.tabs`` options that keep the open tab across reruns (a save, a failed save, a
    flash message above) and in the URL (``?{key}=Edit+budgets``), so a reload keeps it too
    and ``st.session_state[key]`` names it."""
    return {"key": key, "bind": "query-params"}


def table(frame: Any, **kwargs: Any) -> Any:
    """``st.dataframe`` with whole numbers shown with thousands separators ('1,234'); money
    columns come as text to the cent from the frames (``frames.budgets.cents``)."""
    import pandas as pd

    config = {
        str(c): st.column_config.NumberColumn(format="localized")
        for c in frame.columns
        if pd.api.types.is_integer_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])
    }
    config.update(kwargs.pop("column_config", None) or {})
    kwargs.setdefault("hide_index", True)
    return st.dataframe(frame, column_config=config, **kwargs)
