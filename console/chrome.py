"""The page chrome app.py draws around every page: the empty-state offer, the demo-data
banner and, for admins, the quarantine banner."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import streamlit as st

from console import auth
from console.commands.usage import load_demo, remove_demo
from console.queries import usage
from core.control import Actor
from core.demo import has_demo
from core.errors import CostlineError
from core.usage import quarantine_summary


@st.cache_data(ttl=600, show_spinner=False)
def _has_demo(home: str, version: str) -> bool:
    return has_demo(Path(home))


def demo_state(actor: Actor) -> None:
    """Offer demo data on an empty log; say when demo data is present, with a remove button."""
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
    if auth.may(actor, "engineer") and cols[1].button("Remove demo data", key="demo_remove"):
        _run(remove_demo, actor, "Removing demo data…")


def _run(action: Callable[[Actor], object], actor: Actor, busy: str) -> None:
    try:
        with st.spinner(busy):
            action(actor)
    except CostlineError as exc:
        st.error(str(exc))
        return
    st.rerun()
