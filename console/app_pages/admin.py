"""Admin: users and roles, display settings, and the audit log of every change."""

from __future__ import annotations

import streamlit as st

from console import auth, forms
from console.commands import admin as commands
from console.frames.admin import audit_frame, users_frame
from console.inputs.admin import parse_rates
from console.selection import rates_with_defaults
from core.control import ROLES, Actor

AUDIT_PAGE = 25


def main() -> None:
    actor = auth.current_actor()
    assert actor is not None
    st.title("Admin")
    forms.flash()
    users_tab, settings_tab, audit_tab = st.tabs(["Users", "Settings", "Audit log"])
    with users_tab:
        users_table()
        create_user_form(actor)
        manage_user_form(actor)
    with settings_tab:
        settings_form(actor)
    with audit_tab:
        audit_log()


def users_table() -> None:
    st.dataframe(users_frame(auth.plane().users()), hide_index=True, width="stretch")


def create_user_form(actor: Actor) -> None:
    with st.form("adm_create", clear_on_submit=True):
        st.subheader("Add a user")
        cols = st.columns(3)
        username = cols[0].text_input("Username", key="adm_new_user")
        password = cols[1].text_input(
            "Password (8+ characters)", type="password", key="adm_new_password"
        )
        role = cols[2].selectbox("Role", ROLES, key="adm_new_role")
        if st.form_submit_button("Create user"):
            forms.write_now(
                f"Created {username}.", commands.create_user, actor, username, password, role
            )


def manage_user_form(actor: Actor) -> None:
    st.subheader("Change a user")
    users = {u.username: u for u in auth.plane().users()}
    user = users[st.selectbox("User", list(users), key="adm_user")]
    cols = st.columns(3)
    with cols[0].form("adm_role"):
        role = st.selectbox(
            "Role", ROLES, index=ROLES.index(user.role), key=f"adm_role_{user.username}"
        )
        if st.form_submit_button("Set role"):
            forms.write_now(
                f"{user.username} is now {role}.", commands.set_role, actor, user.username, role
            )
    with cols[1].form("adm_password", clear_on_submit=True):
        password = st.text_input("New password", type="password", key="adm_reset_password")
        if st.form_submit_button("Reset password"):
            forms.write_now(
                f"Password of {user.username} reset.",
                commands.reset_password,
                actor,
                user.username,
                password,
            )
    with cols[2].form("adm_disable"):
        st.write("Disabled" if user.disabled else "Active")
        label = "Enable user" if user.disabled else "Disable user"
        if st.form_submit_button(label):
            forms.write_now(
                f"{user.username}: {label.split()[0].lower()}d.",
                commands.set_disabled,
                actor,
                user.username,
                not user.disabled,
            )


def settings_form(actor: Actor) -> None:
    plane = auth.plane()
    rates = rates_with_defaults(plane.get_setting("currency_rates"))
    with st.form("adm_settings"):
        tz = st.text_input("Time zone (IANA)", str(plane.get_setting("timezone")), key="adm_tz")
        extra = ", ".join(f"{c}={r}" for c, r in rates.items() if c != "USD")
        rates_text = st.text_input("Display rates per 1 USD", extra, key="adm_rates")
        currency = st.text_input(
            "Default currency", str(plane.get_setting("currency")), key="adm_currency"
        )
        if st.form_submit_button("Save settings"):
            forms.write_now(
                "Settings saved.",
                lambda: commands.save_settings(
                    actor, tz.strip(), currency.strip().upper(), parse_rates(rates_text)
                ),
            )


def audit_log() -> None:
    page = int(st.number_input("Page", min_value=1, value=1, key="adm_audit_page")) - 1
    entries = auth.plane().audit(limit=AUDIT_PAGE, offset=page * AUDIT_PAGE)
    if not entries:
        st.info("No entries on this page.")
        return
    st.dataframe(audit_frame(entries), hide_index=True, width="stretch")
    st.caption(f"Entries {page * AUDIT_PAGE + 1}–{page * AUDIT_PAGE + len(entries)}, newest first")


main()
