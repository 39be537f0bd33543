"""Admin: users and roles, display settings, alert notifications and retention, API tokens,
and the audit log of every change."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import streamlit as st

from console import auth, chrome, forms
from console.commands import admin as commands
from console.frames import admin as frames
from console.frames.admin import audit_frame, users_frame
from console.frames.display import readable
from console.inputs import admin as inputs
from console.inputs.admin import parse_rates
from console.selection import rates_with_defaults
from console.sidebar import current_selection
from core.control import ROLES, Actor
from core.errors import CostlineError
from core.periods import local_midnight
from core.worker import DEFAULT_THRESHOLDS

AUDIT_PAGE = 25


def main() -> None:
    actor = auth.current_actor()
    assert actor is not None
    st.title("Admin")
    forms.flash()
    users_tab, settings_tab, alerts_tab, tokens_tab, audit_tab = st.tabs(
        ["Users", "Settings", "Notifications", "API tokens", "Audit log"],
        **chrome.kept_tabs("adm_tab"),
    )
    with users_tab:
        users_table()
        create_user_form(actor)
        manage_user_form(actor)
    with settings_tab:
        settings_form(actor)
    with alerts_tab:
        notifications_form(actor)
    with tokens_tab:
        tokens_section(actor)
    with audit_tab:
        audit_log()


def users_table() -> None:
    tz = current_selection().scope.tz
    chrome.table(readable(users_frame(auth.plane().users()), tz), width="stretch")


def create_user_form(actor: Actor) -> None:
    """A failed create keeps what was typed (the password is cleared); a success clears it."""
    with st.form("adm_create"):
        st.subheader("Add a user")
        forms.form_error("adm_create", ())
        cols = st.columns(3)
        cols[0].text_input("Username", key="adm_new_user")
        cols[1].text_input("Password (8+ characters)", type="password", key="adm_new_password")
        cols[2].selectbox("Role", ROLES, key="adm_new_role")
        st.form_submit_button("Create user", on_click=_create_user, args=(actor,))


def _create_user(actor: Actor) -> None:
    state = st.session_state
    username = str(state.get("adm_new_user") or "")
    password = str(state.get("adm_new_password") or "")
    role = state.get("adm_new_role") or ROLES[0]
    forms.submit(
        "adm_create",
        f"Created {username}.",
        lambda: commands.create_user(actor, username, password, role),
    )
    state["adm_new_password"] = ""
    if "adm_create" not in state.get(forms.ERRORS_KEY, {}):
        state["adm_new_user"] = ""


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


def notifications_form(actor: Actor) -> None:
    """Where alerts go, how often the worker scans, the thresholds, and retention."""
    plane = auth.plane()
    notes = plane.get_setting("notifications") or {}
    smtp = notes.get("smtp") or {}
    limits = {**DEFAULT_THRESHOLDS, **(plane.get_setting("alert_thresholds") or {})}
    retention = plane.get_setting("retention_days")
    with st.form("adm_notify"):
        st.subheader("Where alerts go")
        st.text_area(
            "Webhook URLs (Slack-compatible), one per line",
            "\n".join(notes.get("webhook_urls") or []),
            key="adm_hooks",
        )
        forms.field_error("adm_notify", "notifications.webhook_urls")
        st.text_input(
            "E-mail recipients, comma-separated",
            ", ".join(notes.get("email_to") or []),
            key="adm_emails",
        )
        forms.field_error("adm_notify", "notifications.email_to")
        cols = st.columns([2, 1, 2, 2, 1, 1])
        cols[0].text_input("SMTP host", smtp.get("host", ""), key="adm_smtp_host")
        port = smtp.get("port")
        cols[1].number_input(
            "Port",
            1,
            65535,
            None if port is None else int(port),
            key="adm_smtp_port",
            placeholder="by security",
            help="Empty: 465 with SSL, 587 with STARTTLS, else 25.",
        )
        cols[2].text_input("From", smtp.get("sender", ""), key="adm_smtp_from")
        cols[3].text_input("SMTP user", smtp.get("username", ""), key="adm_smtp_user")
        cols[4].checkbox("STARTTLS", bool(smtp.get("starttls")), key="adm_smtp_tls")
        cols[5].checkbox(
            "SSL",
            bool(smtp.get("ssl")),
            key="adm_smtp_ssl",
            help="Implicit TLS from the first byte (SMTPS, usually port 465); wins over STARTTLS.",
        )
        st.caption(
            "The SMTP password is read from COSTLINE_SMTP_PASSWORD, never stored here; an SMTP"
            " user needs STARTTLS (or SSL), so the password never crosses in clear."
        )
        forms.field_error("adm_notify", "notifications.smtp", "notifications")
        st.subheader("When")
        cols = st.columns(3)
        cols[0].number_input(
            "Scan every (seconds)",
            5,
            86_400,
            int(plane.get_setting("alert_scan_interval_s") or 300),
            key="adm_interval",
        )
        cols[1].number_input(
            "Error rate above (%)", 0.0, 100.0, float(limits["error_rate_pct"]), key="adm_err"
        )
        cols[2].number_input(
            "Cache hit rate below (%)",
            0.0,
            100.0,
            float(limits["cache_hit_min_pct"]),
            key="adm_cache",
        )
        cols = st.columns(4)
        cols[0].number_input(
            "p95 latency above (ms)",
            1.0,
            3_600_000.0,
            float(limits["latency_p95_ms"]),
            key="adm_p95",
        )
        cols[1].number_input(
            "Only with at least (calls)", 1, 10_000_000, int(limits["min_requests"]), key="adm_min"
        )
        cols[2].number_input(
            "Over the last (minutes)",
            5,
            1440,
            int(limits["window_minutes"]),
            key="adm_window",
            help="The window the error rate, cache hit rate and p95 latency are measured over.",
        )
        cols[3].checkbox("Anomaly alerts", bool(limits["anomalies"]), key="adm_anom")
        forms.field_error("adm_notify", "alert_thresholds", "alert_scan_interval_s")
        st.subheader("Retention")
        st.text_input(
            "Keep raw events (days; empty: forever - hourly rollups are always kept)",
            "" if retention is None else str(retention),
            key="adm_retention",
        )
        forms.field_error("adm_notify", "retention_days")
        st.form_submit_button(
            "Save notification settings",
            on_click=forms.submit,
            args=("adm_notify", "Notification settings saved.", lambda: save_notify(actor, limits)),
        )
    forms.form_error(
        "adm_notify",
        ("notifications", "alert_thresholds", "alert_scan_interval_s", "retention_days"),
    )


def save_notify(actor: Actor, limits: dict[str, Any]) -> None:
    """The submit callback: the form's values are in session state by their keys."""
    v = st.session_state
    commands.save_notifications(
        actor,
        inputs.notifications(
            v["adm_hooks"],
            v["adm_emails"],
            v["adm_smtp_host"],
            v["adm_smtp_port"],
            v["adm_smtp_from"],
            v["adm_smtp_user"],
            bool(v["adm_smtp_tls"]),
            bool(v["adm_smtp_ssl"]),
        ),
        {
            **limits,
            "error_rate_pct": float(v["adm_err"]),
            "cache_hit_min_pct": float(v["adm_cache"]),
            "latency_p95_ms": float(v["adm_p95"]),
            "min_requests": int(v["adm_min"]),
            "window_minutes": int(v["adm_window"]),
            "anomalies": bool(v["adm_anom"]),
        },
        int(v["adm_interval"]),
        inputs.parse_retention(v["adm_retention"]),
    )


def tokens_section(actor: Actor) -> None:
    """API tokens act as a console user with that user's current role."""
    plane = auth.plane()
    secret = st.session_state.pop("adm_new_token", None)
    if secret:
        st.success("Copy the new token now - it is not shown again:")
        st.code(secret, language=None)
    tokens = plane.api_tokens()
    if tokens:
        tz = current_selection().scope.tz
        chrome.table(readable(frames.tokens_frame(tokens), tz), width="stretch")
    else:
        st.info("No API tokens yet.")
    users = [u.username for u in plane.users() if not u.disabled]
    cols = st.columns([2, 2, 1])
    user = cols[0].selectbox("For user", users, key="adm_token_user")
    name = cols[1].text_input("Label", "api", key="adm_token_name")
    if cols[2].button("Create token", key="adm_token_create"):
        try:
            st.session_state["adm_new_token"] = commands.create_token(actor, user, name)
        except CostlineError as exc:
            st.error(str(exc))
        else:
            st.rerun()
    active = [t.id for t in tokens if t.revoked_at is None]
    if active:
        cols = st.columns([4, 1])
        chosen = cols[0].selectbox("Token", active, key="adm_token_pick")
        if forms.ask("adm_token", "revoke", str(chosen), "Revoke", where=cols[1]):
            forms.confirm(
                "adm_token",
                "revoke",
                str(chosen),
                f"Revoke token {chosen}? Clients using it are refused at once.",
                f"Token {chosen} revoked.",
                lambda: commands.revoke_token(actor, chosen),
            )


def audit_log() -> None:
    plane = auth.plane()
    actors, kinds = plane.audit_facets()
    cols = st.columns([2, 2, 3, 1])
    who = cols[0].selectbox("Who", actors, index=None, key="adm_audit_who", placeholder="Anyone")
    what = cols[1].selectbox(
        "What",
        kinds,
        index=None,
        key="adm_audit_what",
        placeholder="Everything",
        format_func=lambda k: k.replace("_", " "),
    )
    when = cols[2].date_input("When", value=(), key="adm_audit_when")
    page = int(cols[3].number_input("Page", min_value=1, value=1, key="adm_audit_page")) - 1
    days = [d for d in (when if isinstance(when, tuple | list) else (when,)) if d]
    tz = current_selection().scope.tz
    since = local_midnight(days[0], tz) if days else None
    until = local_midnight(days[-1] + timedelta(days=1), tz) if days else None
    entries = plane.audit(
        limit=AUDIT_PAGE,
        offset=page * AUDIT_PAGE,
        entity=what,
        actor=who,
        since=since,
        until=until,
    )
    if not entries:
        st.info("No entries match these filters on this page.")
        return
    st.dataframe(readable(audit_frame(entries), tz), hide_index=True, width="stretch")
    st.caption(f"Entries {page * AUDIT_PAGE + 1}–{page * AUDIT_PAGE + len(entries)}, newest first")


main()
