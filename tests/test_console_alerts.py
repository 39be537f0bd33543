"""The Alerts page (inbox: filter, acknowledge, mute) and the Admin page's notification
settings and API tokens, through Streamlit's AppTest as each role."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from core.control import ControlPlane
from tests.console_support import ADMIN_PASSWORD, app, make_users


@pytest.fixture
def home(costline_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("COSTLINE_ADMIN_PASSWORD", ADMIN_PASSWORD)
    make_users(costline_home)
    with ControlPlane() as plane:
        plane.record_alert("ops", "2026-01", 100, message="Budget 'Ops' reached 100%")
        plane.record_alert("org=acme", "2026-01-02", 0, message="Spend of org=acme", kind="anomaly")
        plane.record_alert("provider=openai", "t", 5, message="errors", kind="error_rate")
    return costline_home


def inbox(at) -> list[tuple[str, str, str]]:  # type: ignore[no-untyped-def]
    df = at.dataframe[0].value
    return list(zip(df["kind"], df["subject"], df["state"], strict=True))


def test_viewer_reads_the_inbox_and_filters_it(home: Path) -> None:
    at = app("viewer").run()
    at.switch_page("app_pages/alerts.py").run()
    assert not at.exception
    assert inbox(at) == [
        ("error rate", "provider=openai", "open"),
        ("anomaly", "org=acme", "open"),
        ("budget", "ops", "open"),
    ]
    assert not [b for b in at.button if b.label in ("Acknowledge", "Mute")]
    at.multiselect(key="al_severities").set_value(["critical"]).run()
    assert inbox(at) == [("error rate", "provider=openai", "open"), ("budget", "ops", "open")]
    at.multiselect(key="al_kinds").set_value(["budget"]).run()
    assert inbox(at) == [("budget", "ops", "open")]
    links = {p.proto.label for p in at.get("page_link")}
    assert links == {"Explain on Budgets"}


def test_engineer_acknowledges_and_mutes_and_it_is_audited(home: Path) -> None:
    at = app("engineer").run()
    at.switch_page("app_pages/alerts.py").run()
    with ControlPlane() as plane:
        budget_alert = next(a for a in plane.alerts() if a.kind == "budget")
        anomaly = next(a for a in plane.alerts() if a.kind == "anomaly")
    at.selectbox(key="al_pick").set_value(budget_alert.id).run()
    at.button(key=f"al_ack_{budget_alert.id}").click().run()
    assert not at.exception
    assert [s.value for s in at.success] == [f"Alert #{budget_alert.id} acknowledged."]
    at.selectbox(key="al_state").set_value("all").run()
    at.selectbox(key="al_pick").set_value(anomaly.id).run()
    at.selectbox(key="al_mute_for").set_value("1 day")
    at.button(key=f"al_mute_{anomaly.id}").click().run()
    assert not at.exception
    states = {kind: state for kind, _, state in inbox(at)}
    assert states == {"error rate": "open", "anomaly": "muted", "budget": "acked"}
    assert at.dataframe[1].value["subject"].tolist() == ["org=acme"]  # muted series
    with ControlPlane() as plane:
        (mute,) = plane.mutes()
        assert (mute.kind, mute.subject, mute.created_by) == ("anomaly", "org=acme", "engineer")
        assert [e.action for e in plane.audit(entity="alert", limit=2)] == [
            "alert.mute",
            "alert.ack",
        ]
        assert plane.audit(entity="alert", limit=1)[0].actor == "engineer"
    at.button(key="al_unmute").click().run()
    with ControlPlane() as plane:
        assert plane.mutes() == []


def test_admin_sets_notifications_and_retention(home: Path) -> None:
    at = app("admin").run()
    at.switch_page("app_pages/admin.py").run()
    at.text_area(key="adm_hooks").input("https://hooks.example.com/T1/B2")
    at.text_input(key="adm_emails").input("fin@example.com, ops@example.com")
    at.button(key="FormSubmitter:adm_notify-Save notification settings").click().run()
    assert not at.exception
    assert any("e-mail recipients need an SMTP server" in e.value for e in at.error)
    at.text_input(key="adm_smtp_host").input("127.0.0.1")
    at.number_input(key="adm_smtp_port").set_value(2525)
    at.number_input(key="adm_err").set_value(2.5)
    at.text_input(key="adm_retention").input("120")
    at.button(key="FormSubmitter:adm_notify-Save notification settings").click().run()
    assert not at.exception
    assert [s.value for s in at.success] == ["Notification settings saved."]
    with ControlPlane() as plane:
        notes = plane.get_setting("notifications")
        assert notes["webhook_urls"] == ["https://hooks.example.com/T1/B2"]
        assert notes["email_to"] == ["fin@example.com", "ops@example.com"]
        assert notes["smtp"]["port"] == 2525
        assert plane.get_setting("alert_thresholds")["error_rate_pct"] == 2.5
        assert plane.get_setting("retention_days") == 120
        assert plane.audit(entity="setting", limit=1)[0].actor == "admin"


def test_admin_smtp_port_left_empty_follows_the_chosen_security(home: Path) -> None:
    from core.worker import load_settings

    at = app("admin").run()
    at.switch_page("app_pages/admin.py").run()
    assert at.number_input(key="adm_smtp_port").value is None  # nothing stored: no 25 offered
    at.text_input(key="adm_emails").input("fin@example.com")
    at.text_input(key="adm_smtp_host").input("smtp.example.com")
    at.text_input(key="adm_smtp_user").input("alerts")
    at.checkbox(key="adm_smtp_tls").check()
    at.button(key="FormSubmitter:adm_notify-Save notification settings").click().run()
    assert not at.exception
    assert [s.value for s in at.success] == ["Notification settings saved."]
    with ControlPlane() as plane:
        assert plane.get_setting("notifications")["smtp"]["port"] == 587  # as STARTTLS expects
        assert load_settings(plane).smtp.port == 587
    again = app("admin").run()  # a new session shows what is stored
    again.switch_page("app_pages/admin.py").run()
    assert again.number_input(key="adm_smtp_port").value == 587


def test_admin_sets_smtp_ssl_and_the_operational_window(home: Path) -> None:
    """Every notification setting the worker reads is on the page: SSL (SMTPS) and the
    window the error rate, cache hit rate and latency are measured over, as well as the
    thresholds; a save that changes neither keeps what is stored."""
    at = app("admin").run()
    at.switch_page("app_pages/admin.py").run()
    at.text_input(key="adm_emails").input("fin@example.com")
    at.text_input(key="adm_smtp_host").input("smtp.example.com")
    at.text_input(key="adm_smtp_user").input("alerts")
    at.checkbox(key="adm_smtp_ssl").check()
    at.number_input(key="adm_window").set_value(15)
    at.button(key="FormSubmitter:adm_notify-Save notification settings").click().run()
    assert not at.exception
    assert [s.value for s in at.success] == ["Notification settings saved."]
    with ControlPlane() as plane:
        smtp = plane.get_setting("notifications")["smtp"]
        assert (smtp["ssl"], smtp["starttls"], smtp["port"]) == (True, False, 465)
        assert plane.get_setting("alert_thresholds")["window_minutes"] == 15
    again = app("admin").run()  # a new session shows what is stored, and saves it unchanged
    again.switch_page("app_pages/admin.py").run()
    assert again.checkbox(key="adm_smtp_ssl").value is True
    assert again.number_input(key="adm_window").value == 15
    again.button(key="FormSubmitter:adm_notify-Save notification settings").click().run()
    assert not again.exception
    with ControlPlane() as plane:
        assert plane.get_setting("notifications")["smtp"]["ssl"] is True
        assert plane.get_setting("alert_thresholds")["window_minutes"] == 15


def test_admin_creates_and_revokes_an_api_token(home: Path) -> None:
    at = app("admin").run()
    at.switch_page("app_pages/admin.py").run()
    at.selectbox(key="adm_token_user").set_value("viewer")
    at.text_input(key="adm_token_name").input("finance sheet")
    at.button(key="adm_token_create").click().run()
    assert not at.exception
    (code,) = at.code
    secret = code.value
    with ControlPlane() as plane:
        assert plane.token_actor(secret).username == "viewer"
        (token,) = plane.api_tokens()
    assert token.name == "finance sheet"
    at.run()
    assert not at.code  # shown once
    at.selectbox(key="adm_token_pick").set_value(token.id)
    at.button(key=f"adm_token_revoke_{token.id}").click().run()  # asks first
    with ControlPlane() as plane:
        assert plane.api_tokens()[0].revoked_at is None
    at.button(key=f"adm_token_revoke_yes_{token.id}").click().run()
    assert [s.value for s in at.success] == [f"Token {token.id} revoked."]
    with ControlPlane() as plane:
        assert plane.api_tokens()[0].revoked_at is not None


def test_alert_times_are_in_the_configured_zone_without_an_offset(home: Path) -> None:
    from core.control import SYSTEM

    with ControlPlane() as plane:
        plane.set_setting("timezone", "Asia/Tokyo", SYSTEM)
        stamps = {a.subject: a.ts for a in plane.alerts()}
    at = app("viewer").run()
    at.switch_page("app_pages/alerts.py").run()
    assert not at.exception
    df = at.dataframe[0].value
    for subject, shown in zip(df["subject"], df["time"], strict=True):
        local = stamps[subject].astimezone(ZoneInfo("Asia/Tokyo"))
        assert shown == f"{local:%Y-%m-%d %H:%M:%S}", (subject, shown)
