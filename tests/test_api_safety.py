"""Safety of the management API over real HTTP (a real uvicorn server): webhook secrets
kept out of the audit log, SMTP logins only over TLS, bounded request and answer sizes,
cursor paging through rows that tie on (ts, request_id), alert delivery fields."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from core.control import MIGRATIONS, make_engine, migrate
from tests.servers.api import ApiServer

SLACK = "https://hooks.slack.com/services/T0AAA/B0BBB/s3cr3tSlackToken"
DISCORD = "https://discord.com/api/webhooks/123/d1sc0rdS3cret?wait=true&key=qk3y"
SECRETS = ("s3cr3tSlackToken", "d1sc0rdS3cret", "qk3y", "T0AAA/B0BBB")


@pytest.fixture
def api(costline_home: Path) -> Iterator[ApiServer]:
    with ApiServer(costline_home) as server:
        yield server


def test_webhook_urls_are_redacted_in_the_audit_log(api: ApiServer, costline_home: Path) -> None:
    """Setting the notification webhooks and a budget's webhook: the audit (API, and the rows
    in the database) keeps scheme, host and a digest, never the token in the path or query;
    a change of URL is still audited and visible (the digests differ)."""
    adm = api.client(api.user("adm", "admin"))
    r = adm.put("/settings/notifications", json={"value": {"webhook_urls": [SLACK]}})
    assert r.status_code == 200, r.text
    tag = r.headers["etag"]
    r = adm.put(
        "/settings/notifications",
        json={"value": {"webhook_urls": [SLACK, DISCORD]}},
        headers={"If-Match": tag},
    )
    assert r.status_code == 200, r.text
    budget = {"id": "ops", "name": "Ops", "limit_usd": "100", "period": "day"}
    r = adm.post("/budgets", json={**budget, "webhook_url": SLACK})
    assert r.status_code == 201, r.text
    r = adm.patch(
        "/budgets/ops", json={"webhook_url": DISCORD}, headers={"If-Match": r.headers["etag"]}
    )
    assert r.status_code == 200, r.text
    page = adm.get("/audit", params={"limit": 100})
    assert page.status_code == 200
    text = page.text
    for secret in SECRETS:
        assert secret not in text, (secret, text)
    entries = page.json()["data"]
    setting = [e for e in entries if e["entity_id"] == "notifications"]
    assert len(setting) == 2
    urls = setting[0]["after"]["value"]["webhook_urls"]
    assert [u.split("/[redacted]#")[0] for u in urls] == [
        "https://hooks.slack.com",
        "https://discord.com",
    ]
    assert urls[0] != urls[1] and all(len(u.rsplit("#", 1)[1]) == 8 for u in urls)
    assert (
        setting[0]["before"]["value"]["webhook_urls"] == urls[:1]
    )  # the same URL, the same digest
    update = next(e for e in entries if e["action"] == "budget.update")
    assert update["before"]["webhook_url"] != update["after"]["webhook_url"]  # a change shows
    assert update["after"]["webhook_url"].startswith("https://discord.com/[redacted]#")
    # the stored rows, not only the answer
    with sqlite3.connect(costline_home / "control.db") as db:
        stored = " ".join(
            str(r) for r in db.execute("SELECT before_json, after_json FROM audit_log")
        )
    assert "hooks.slack.com" in stored
    for secret in SECRETS:
        assert secret not in stored, secret


def test_the_migration_redacts_webhook_urls_in_older_audit_rows(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    engine = make_engine(url)
    names = [m.__name__ for m in MIGRATIONS]
    at = names.index("m009_redact_audit_webhooks")
    migrate(engine, MIGRATIONS[:at])
    before = '{"value":{"email_to":[],"webhook_urls":["' + SLACK + '"]}}'
    with engine.begin() as conn:
        for i, (b, a) in enumerate(
            ((None, before), ('{"webhook_url":"' + DISCORD + '"}', '{"webhook_url":null}'))
        ):
            conn.execute(
                sa.text(
                    "INSERT INTO audit_log (ts, actor, action, entity, entity_id, before_json,"
                    " after_json) VALUES ('2026-01-01 00:00:00', 'adm', 'x', 'e', :i, :b, :a)"
                ),
                {"i": str(i), "b": b, "a": a},
            )
        conn.execute(
            sa.text(
                "INSERT INTO audit_log (ts, actor, action, entity, entity_id, after_json)"
                " VALUES ('2026-01-01 00:00:00', 'adm', 'y', 'e', 'z', '{\"name\": \"keep\"}')"
            )
        )
    assert migrate(engine) == names[at:]
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT entity_id, before_json, after_json FROM audit_log ORDER BY id")
        ).all()
    engine.dispose()
    text = " ".join(str(r) for r in rows)
    for secret in SECRETS:
        assert secret not in text, text
    assert (
        "https://hooks.slack.com/[redacted]#" in text and "https://discord.com/[redacted]#" in text
    )
    assert rows[1][2] == '{"webhook_url":null}'  # nothing to redact: the row is untouched
    assert rows[2][2] == '{"name": "keep"}'


def test_an_smtp_login_without_tls_is_refused_naming_the_field(api: ApiServer) -> None:
    adm = api.client(api.user("adm", "admin"))
    smtp = {"host": "mail.example.com", "port": 25, "sender": "cl@example.com", "username": "u"}
    notes = {"email_to": ["fin@example.com"], "smtp": smtp}
    r = adm.put("/settings/notifications", json={"value": notes})
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["field"] == "notifications.smtp.username"
    assert "starttls or ssl" in err["message"] and "in clear" in err["message"]
    assert api.plane.get_setting("notifications") in (None, {})
    no_login = {**notes, "smtp": {k: v for k, v in smtp.items() if k != "username"}}
    r = adm.put("/settings/notifications", json={"value": no_login})
    assert r.status_code == 200, r.text
    for tls in ({"starttls": True}, {"ssl": True, "port": 465}):
        ok = {**notes, "smtp": {**smtp, **tls}}
        r = adm.put("/settings/notifications", json={"value": ok}, headers={"If-Match": "*"})
        assert r.status_code == 200, r.text
