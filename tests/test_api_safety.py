"""Safety of the management API over real HTTP (a real uvicorn server): webhook secrets
kept out of the audit log, SMTP logins only over TLS, bounded request and answer sizes,
cursor paging through rows that tie on (ts, request_id), alert delivery fields."""

from __future__ import annotations

import json
import socket
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from core.control import MIGRATIONS, make_engine, migrate
from core.usage import UsageEvent, rows_to_table, segments_dir, write_segment
from core.usage._schema import event_row
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


def test_viewers_get_a_budgets_webhook_url_redacted_and_an_echo_keeps_the_secret(
    api: ApiServer,
) -> None:
    """A budget's webhook URL holds a secret: viewers read it redacted (scheme, host, digest)
    in the list and the item, engineers in full; the ETag is the same for both (computed
    over the redacted form); a PATCH that sends the redacted form back keeps the stored URL,
    and a redacted form that is not this budget's is a 422 naming webhook_url."""
    from core.control import redact_url

    eng = api.client(api.user("eng", "engineer"))
    viewer = api.client(api.user("vic", "viewer"))
    budget = {"id": "ops", "name": "Ops", "limit_usd": "100", "period": "day"}
    created = eng.post("/budgets", json={**budget, "webhook_url": SLACK})
    assert created.status_code == 201, created.text
    assert created.json()["webhook_url"] == SLACK
    for path in ("/budgets", "/budgets/ops"):
        r = viewer.get(path)
        assert r.status_code == 200
        for secret in SECRETS:
            assert secret not in r.text, (path, secret)
    seen = viewer.get("/budgets/ops")
    assert seen.json()["webhook_url"] == redact_url(SLACK)
    assert seen.json()["webhook_url"].startswith("https://hooks.slack.com/[redacted]#")
    assert viewer.get("/budgets").json()["data"][0]["webhook_url"] == redact_url(SLACK)
    full = eng.get("/budgets/ops")
    assert full.json()["webhook_url"] == SLACK
    assert seen.headers["etag"] == full.headers["etag"] == created.headers["etag"]
    # the viewer's copy, edited and sent back by an engineer's script: the secret stays
    edited = {**seen.json(), "limit_usd": "120"}
    del edited["id"], edited["reset_generation"]
    r = eng.patch("/budgets/ops", json=edited, headers={"If-Match": seen.headers["etag"]})
    assert r.status_code == 200, r.text
    assert r.json()["webhook_url"] == SLACK and r.json()["limit_usd"] == "120"
    assert api.plane.budget("ops").webhook_url == SLACK  # type: ignore[union-attr]
    assert viewer.get("/budgets/ops").headers["etag"] == r.headers["etag"]
    # someone else's redacted URL cannot be stored as if it were a URL
    other = redact_url(DISCORD)
    r = eng.patch("/budgets/ops", json={"webhook_url": other}, headers={"If-Match": "*"})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == "webhook_url"
    assert "redacted" in r.json()["error"]["message"]
    r = eng.post("/budgets", json={**budget, "id": "ops2", "webhook_url": redact_url(SLACK)})
    assert r.status_code == 422 and r.json()["error"]["field"] == "webhook_url", r.text
    assert api.plane.budget("ops").webhook_url == SLACK  # type: ignore[union-attr]
    # a reset answers the same ETag a viewer then reads
    reset = eng.post("/budgets/ops/reset", headers={"If-Match": seen.headers["etag"]})
    assert reset.status_code == 412  # the limit changed since
    tag = viewer.get("/budgets/ops").headers["etag"]
    reset = eng.post("/budgets/ops/reset", headers={"If-Match": tag})
    assert reset.status_code == 200, reset.text
    assert viewer.get("/budgets/ops").headers["etag"] == reset.headers["etag"]


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


def _http_exchange(port: int, head: bytes, body_chunks: Iterator[bytes] | list[bytes]) -> bytes:
    """A raw HTTP/1.1 exchange: send ``head`` and then what ``body_chunks`` yields (stopping
    when the server closed the connection), then read the answer (10 s at most)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)
        try:
            for chunk in body_chunks:
                sock.sendall(chunk)
        except OSError:
            pass  # the server answered and closed before taking all of it
        out = b""
        try:
            while b"\r\n\r\n" not in out or not out.rstrip().endswith(b"}"):
                got = sock.recv(65536)
                if not got:
                    break
                out += got
        except (TimeoutError, ConnectionResetError):
            pass
        return out


def test_a_request_body_over_the_limit_is_a_413(api: ApiServer) -> None:
    """A body is read up to 8 MiB: a Content-Length past it is refused before any of the
    body is read (the server waited for all of it, however large), and a chunked body as
    soon as what arrived passes it."""
    token = api.user("adm", "admin")
    port = int(api.base_url.rsplit(":", 1)[1])
    limit = 8 * 2**20
    head = (
        "PUT /api/v1/settings/timezone HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
    )
    started = time.monotonic()
    answer = _http_exchange(port, f"{head}Content-Length: {limit + 1}\r\n\r\n".encode(), [b"{"])
    assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
    assert time.monotonic() - started < 5
    err = json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]
    assert err["type"] == "payload_too_large" and err["field"] == "body"
    assert "8 MiB" in err["message"] and f"{limit + 1:,}" in err["message"]

    mib = b" " * 2**20
    chunks = [b"%x\r\n%s\r\n" % (len(mib), mib) for _ in range(9)] + [b"0\r\n\r\n"]
    answer = _http_exchange(port, f"{head}Transfer-Encoding: chunked\r\n\r\n".encode(), chunks)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
    assert api.plane.get_setting("timezone") == "UTC"
    ok = api.client(token).put("/settings/timezone", json={"value": "Europe/Paris"})
    assert ok.status_code == 200, ok.text  # an ordinary body is unaffected


def test_spend_refuses_to_build_more_rows_than_the_cap(api: ApiServer, costline_home: Path) -> None:
    """group_by=minute,user over range=all, 50,001 (minute, user) pairs: a 400 that says how
    to narrow it (the answer built every row: millions on a real log); a narrower range
    answers, with the same totals a plain query gives."""
    t0 = datetime(2025, 3, 1, tzinfo=UTC)
    n = 50_001
    rows = [
        event_row(
            UsageEvent(
                request_id=f"r{i}",
                ts=t0 + timedelta(minutes=i),
                user=f"u{i}",
                provider="openai",
                model="gpt-4o-mini",
                cost_picousd=10**9,
            )
        )
        for i in range(n)
    ]
    write_segment(rows_to_table(rows), segments_dir(costline_home), "many")
    client = api.client(api.user("fin", "viewer"))
    r = client.get("/spend", params={"group_by": "minute,user", "range": "all"})
    assert r.status_code == 400, r.text[:300]
    err = r.json()["error"]
    assert err["field"] == "group_by"
    assert "more than 50,000 rows" in err["message"]
    assert "range" in err["message"] and "coarser period" in err["message"]
    r = client.get("/spend", params={"group_by": "user", "range": "all"})
    assert r.status_code == 400  # a dimension alone too
    end = (t0 + timedelta(minutes=1000)).isoformat()
    params = {"group_by": "minute,user", "start": t0.isoformat(), "end": end}
    r = client.get("/spend", params=params)
    assert r.status_code == 200, r.text[:300]
    body = r.json()
    assert len(body["rows"]) == 1000 and body["totals"]["requests"] == 1000
    assert body["totals"]["cost_usd"] == "1"
    r = client.get("/spend", params={"range": "all", "group_by": "day"})
    assert r.status_code == 200 and r.json()["totals"]["requests"] == n


def test_usage_paging_walks_through_rows_that_tie_on_ts_and_request_id(
    api: ApiServer, costline_home: Path
) -> None:
    """Rows may share (ts, request_id): retries logged within one microsecond, an import of
    the same rows. Paging 2 at a time, in two segment files, reaches every row once: the
    cursor only held (ts, request_id), so a page either swelled past ``limit`` and ended the
    paging (no next_cursor), or the rest of a tied group was skipped."""
    t0 = datetime(2025, 3, 1, tzinfo=UTC)

    def ev(rid: str, ts: datetime, attempt: int, status: str = "error") -> UsageEvent:
        return UsageEvent(
            request_id=rid,
            ts=ts,
            attempt=attempt,
            status=status,  # type: ignore[arg-type]
            provider="openai",
            model="gpt-4o-mini",
            cost_picousd=attempt,
        )

    newer = [ev(f"n{i}", t0 + timedelta(seconds=10 + i), 1, "ok") for i in range(3)]
    tied = [ev("same", t0 + timedelta(seconds=5), a) for a in range(1, 6)]  # 5 attempts, 1 µs
    twin = [ev("dup", t0 + timedelta(seconds=4), 1, "ok")] * 2  # the same row imported twice
    older = [ev(f"o{i}", t0 + timedelta(seconds=3 - i), 1, "ok") for i in range(3)]
    sdir = segments_dir(costline_home)
    write_segment(rows_to_table([event_row(e) for e in newer + tied[:2] + twin[:1]]), sdir, "a")
    write_segment(rows_to_table([event_row(e) for e in tied[2:] + twin[1:] + older]), sdir, "b")
    every = newer[::-1] + tied[::-1] + twin + older
    client = api.client(api.user("fin", "viewer"))
    window = {"start": "2025-02-01", "end": "2025-04-01"}
    for limit in (1, 2, 3, 4, 1000):
        seen: list[tuple[str, int]] = []
        cursor = None
        for _ in range(40):
            params = {**window, "limit": str(limit), **({"cursor": cursor} if cursor else {})}
            r = client.get("/usage", params=params)
            assert r.status_code == 200, r.text
            body = r.json()
            assert len(body["data"]) <= limit
            seen += [(d["request_id"], d["attempt"]) for d in body["data"]]
            cursor = body["next_cursor"]
            if cursor is None:
                break
        want = [(e.request_id, e.attempt) for e in every]
        assert sorted(seen) == sorted(want), (limit, seen)
        order = [rid for rid, _ in seen]
        assert order == [e.request_id for e in every], (limit, order)  # newest first
        tied_seen = [a for rid, a in seen if rid == "same"]
        assert tied_seen == [5, 4, 3, 2, 1], (limit, tied_seen)  # the last attempt first
