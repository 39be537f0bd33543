"""Alerts: the inbox of everything the worker and the routers raised - filter it, open the
page that explains an alert, acknowledge it, mute its series for a while."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from console import auth, chrome, forms
from console.commands import alerts as commands
from console.frames import alerts as frames
from console.frames.display import readable
from console.queries import alerts as queries
from console.sidebar import current_selection
from core.control import ALERT_KINDS, ALERT_STATES, SEVERITIES, Actor, Alert, AlertMute

PAGE_DIR = Path(__file__).parent
MUTE_FOR = {"1 hour": 1.0, "1 day": 24.0, "1 week": 168.0, "30 days": 720.0}


def main() -> None:
    actor = auth.current_actor()
    assert actor is not None
    engineer = auth.may(actor, "engineer")
    st.title("Alerts")
    st.caption(
        "Budget thresholds, projected exhaustion, anomalies, error rate, cache hit rate and "
        "latency, raised by the alert worker (`costline worker`) whether or not anyone is here."
    )
    forms.flash()
    kinds, severities, state = filters()
    alerts = queries.inbox(kinds, severities, state)
    mutes = queries.mutes()
    tz = current_selection().scope.tz  # times in the configured zone, no offset
    if not alerts:
        st.info("No alerts match these filters.")
    else:
        chrome.table(readable(frames.inbox_frame(alerts, mutes), tz), width="stretch")
        act_on(actor, engineer, alerts)
    if mutes:
        st.subheader("Muted series")
        chrome.table(readable(frames.mutes_frame(mutes), tz), width="stretch")
        if engineer:
            unmute_form(actor, mutes)


def filters() -> tuple[list[str], list[str], str | None]:
    cols = st.columns([2, 2, 1])
    kinds = cols[0].multiselect("Kind", ALERT_KINDS, key="al_kinds")
    severities = cols[1].multiselect("Severity", SEVERITIES, key="al_severities")
    state = cols[2].selectbox("State", ["all", *ALERT_STATES], index=1, key="al_state")
    return kinds, severities, None if state == "all" else state


def act_on(actor: Actor, engineer: bool, alerts: list[Alert]) -> None:
    by_id = {a.id: a for a in alerts}
    chosen = by_id[
        st.selectbox(
            "Alert", list(by_id), format_func=lambda i: frames.label(by_id[i]), key="al_pick"
        )
    ]
    st.write(chosen.message)
    cols = st.columns([1.2, 1, 1.2, 1])
    page = frames.PAGES.get(chosen.link or "")
    with cols[0]:
        if page and (PAGE_DIR / Path(page[0]).name).exists():
            st.page_link(page[0], label=f"Explain on {page[1]}", icon=":material/arrow_forward:")
    if not engineer:
        cols[1].caption("Engineers acknowledge and mute alerts.")
        return
    if chosen.acked_at is None and cols[1].button("Acknowledge", key=f"al_ack_{chosen.id}"):
        forms.write_now(f"Alert #{chosen.id} acknowledged.", commands.ack, actor, chosen.id)
    span = cols[2].selectbox("Mute this series for", list(MUTE_FOR), key="al_mute_for")
    if cols[3].button("Mute", key=f"al_mute_{chosen.id}"):
        forms.write_now(
            f"{chosen.kind.replace('_', ' ')} alerts on {chosen.subject or 'all'} muted "
            f"for {span}.",
            commands.mute,
            actor,
            chosen.kind,
            chosen.subject,
            MUTE_FOR[span],
        )


def unmute_form(actor: Actor, mutes: list[AlertMute]) -> None:
    keys = [f"{m.kind}|{m.subject}" for m in mutes]
    cols = st.columns([3, 1])
    key = cols[0].selectbox("Series", keys, key="al_unmute_pick")
    if cols[1].button("Unmute", key="al_unmute"):
        kind, subject = key.split("|", 1)
        forms.write_now(f"{subject or 'all'} unmuted.", commands.unmute, actor, kind, subject)


main()
