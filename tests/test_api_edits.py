"""Writes over real HTTP: ETag + If-Match (412 on a stale write), one error shape,
validation errors naming the field, resets, alerts, rate-limit buckets, price import."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from core.control import SYSTEM, RateLimit
from core.ratelimits import rate_key
from core.state import MemoryState, RateItem
from tests.servers.api import ApiServer

BUDGET = {"id": "ops", "name": "Ops", "limit_usd": "100", "period": "day"}


@pytest.fixture
def api(costline_home: Path) -> Iterator[ApiServer]:
    with ApiServer(costline_home, state=MemoryState("t:")) as server:
        yield server


def test_two_engineers_cannot_silently_overwrite_each_other(api: ApiServer) -> None:
    ann = api.client(api.user("ann", "engineer"))
    bob = api.client(api.user("bob", "engineer"))
    created = ann.post("/budgets", json=BUDGET)
    assert created.status_code == 201
    tag_ann = ann.get("/budgets/ops").headers["etag"]
    tag_bob = bob.get("/budgets/ops").headers["etag"]
    assert tag_ann == tag_bob == created.headers["etag"]
    first = ann.patch("/budgets/ops", json={"limit_usd": "150"}, headers={"If-Match": tag_ann})
    assert first.status_code == 200
    assert first.headers["etag"] != tag_ann
    stale = bob.patch("/budgets/ops", json={"limit_usd": "80"}, headers={"If-Match": tag_bob})
    assert stale.status_code == 412
    assert stale.json()["error"]["type"] == "precondition_failed"
    assert api.plane.budget("ops").limit_usd == 150  # type: ignore[union-attr]
    blind = bob.patch("/budgets/ops", json={"limit_usd": "80"})
    assert blind.status_code == 428
    assert bob.delete("/budgets/ops").status_code == 428
    assert bob.delete("/budgets/ops", headers={"If-Match": tag_bob}).status_code == 412
    fresh = bob.get("/budgets/ops").headers["etag"]
    assert bob.delete("/budgets/ops", headers={"If-Match": fresh}).status_code == 204
    assert bob.get("/budgets/ops").status_code == 404
    actions = [e.action for e in api.plane.audit(entity="budget")]
    assert actions == ["budget.delete", "budget.update", "budget.create"]


def test_create_conflicts_and_validation_errors_name_the_field(api: ApiServer) -> None:
    eng = api.client(api.user("eng", "engineer"))
    assert eng.post("/budgets", json=BUDGET).status_code == 201
    dup = eng.post("/budgets", json=BUDGET)
    assert dup.status_code == 409 and dup.json()["error"]["type"] == "conflict"
    for body, field in (
        ({**BUDGET, "id": "x", "limit_usd": "ten"}, "limit_usd"),
        ({**BUDGET, "id": "x", "period": "fortnight"}, "period"),
        ({**BUDGET, "id": "x", "colour": "red"}, "colour"),
        ({**BUDGET, "id": "x", "thresholds": [50, "lots"]}, "thresholds[1]"),
        ({"id": "x"}, "name"),
    ):
        r = eng.post("/budgets", json=body)
        assert r.status_code == 422, (body, r.text)
        assert r.json()["error"]["field"] == field, r.json()
    bad_json = eng.post(
        "/budgets", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert bad_json.status_code == 400 and bad_json.json()["error"]["field"] == "body"
    unknown_model = eng.put("/routing-policies/chat", json={"primary_model": "gpt-99-ultra"})
    assert unknown_model.status_code == 422
    assert unknown_model.json()["error"]["field"] == "primary_model"
    assert [b.id for b in api.plane.budgets()] == ["ops"]  # nothing else was stored


def test_put_replaces_only_with_if_match_and_reset_needs_it_too(api: ApiServer) -> None:
    eng = api.client(api.user("eng", "engineer"))
    r = eng.put("/routing-policies/chat", json={"primary_model": "gpt-4o-mini"})
    assert r.status_code == 201
    again = eng.put("/routing-policies/chat", json={"primary_model": "gpt-4o"})
    assert again.status_code == 428
    ok = eng.put(
        "/routing-policies/chat",
        json={"primary_model": "gpt-4o", "fallbacks": ["gpt-4o-mini"]},
        headers={"If-Match": r.headers["etag"]},
    )
    assert ok.status_code == 200 and ok.json()["fallbacks"] == ["gpt-4o-mini"]
    eng.post("/budgets", json=BUDGET)
    assert eng.post("/budgets/ops/reset").status_code == 428
    tag = eng.get("/budgets/ops").headers["etag"]
    reset = eng.post("/budgets/ops/reset", headers={"If-Match": tag})
    assert reset.status_code == 200 and reset.json()["reset_generation"] == 1
    assert eng.post("/budgets/ops/reset", headers={"If-Match": tag}).status_code == 412
    assert api.plane.audit(entity="budget", limit=1)[0].action == "budget.reset"


def test_event_thresholds_edit_the_sampling_strategy(api: ApiServer) -> None:
    eng = api.client(api.user("eng", "engineer"))
    missing = eng.get("/event-thresholds/trader")  # names what is missing and how to set it
    assert missing.status_code == 404
    assert missing.json()["error"]["message"].startswith("no event thresholds for 'trader'")
    r = eng.put("/event-thresholds/trader", json={"min_interval_s": 30, "batch_size": 5})
    assert r.status_code == 201, r.text
    (s,) = api.plane.sampling()
    assert (s.key, s.strategy, s.min_interval_s, s.batch_size) == ("trader", "always", 30, 5)
    stale = eng.put("/event-thresholds/trader", json={"batch_size": 7}, headers={"If-Match": '"x"'})
    assert stale.status_code == 412
    tag = eng.get("/event-thresholds/trader").headers["etag"]
    r = eng.put("/event-thresholds/trader", json={"batch_size": 7}, headers={"If-Match": tag})
    want = {"key": "trader", "min_interval_s": 30.0, "batch_size": 7, "batch_timeout_s": 300.0}
    assert r.json() == want
    assert eng.put("/event-thresholds/trader", json={"strategy": "x"}).status_code == 422


def test_alerts_inbox_ack_and_mute(api: ApiServer) -> None:
    plane = api.plane
    plane.record_alert("ops", "2026-01-01", 90, message="Ops at 90%")
    plane.record_alert("org=acme", "2026-01-01", 0, message="odd", kind="anomaly")
    eng = api.client(api.user("eng", "engineer"))
    viewer = api.client(api.user("vic", "viewer"))
    body = viewer.get("/alerts").json()
    assert [(a["kind"], a["subject"], a["severity"]) for a in body["data"]] == [
        ("anomaly", "org=acme", "warning"),
        ("budget", "ops", "warning"),
    ]
    budget_id = body["data"][1]["id"]
    assert viewer.post(f"/alerts/{budget_id}/ack").status_code == 403
    acked = eng.post(f"/alerts/{budget_id}/ack")
    assert acked.status_code == 200 and acked.json()["acked_by"] == "eng"
    assert [
        a["state"] for a in viewer.get("/alerts", params={"state": "acked"}).json()["data"]
    ] == ["acked"]
    anomaly_id = body["data"][0]["id"]
    muted = eng.post(f"/alerts/{anomaly_id}/mute", json={"until": "2099-01-01"})
    assert muted.status_code == 422  # more than a year ahead
    until = (api.plane.now().replace(microsecond=0)).isoformat()
    assert eng.post(f"/alerts/{anomaly_id}/mute", json={"until": until}).status_code == 422
    soon = api.plane.now().date().isoformat()
    later = f"{int(soon[:4]) + 1}{soon[4:]}"
    ok = eng.post(f"/alerts/{anomaly_id}/mute", json={"until": later[:4] + "-01-01"})
    assert ok.status_code == 200, ok.text
    states = {a["kind"]: a["state"] for a in viewer.get("/alerts").json()["data"]}
    assert states == {"anomaly": "muted", "budget": "acked"}
    assert viewer.get("/alerts", params={"kind": "anomaly,budget", "severity": "warning"}).json()
    assert viewer.get("/alerts", params={"kind": "weather"}).status_code == 400
    assert [e.actor for e in plane.audit(entity="alert", limit=2)] == ["eng", "eng"]


def test_a_muted_series_is_listed_and_can_be_unmuted(api: ApiServer) -> None:
    api.plane.record_alert("org=acme", "2026-01-01", 0, message="odd", kind="anomaly")
    eng = api.client(api.user("eng", "engineer"))
    viewer = api.client(api.user("vic", "viewer"))
    (alert,) = viewer.get("/alerts").json()["data"]
    until = (api.plane.now() + timedelta(days=3)).replace(microsecond=0).isoformat()
    assert eng.post(f"/alerts/{alert['id']}/mute", json={"until": until}).status_code == 200
    (mute,) = viewer.get("/alerts/mutes").json()["data"]
    assert (mute["kind"], mute["subject"], mute["created_by"]) == ("anomaly", "org=acme", "eng")
    assert viewer.get("/alerts").json()["data"][0]["state"] == "muted"
    r = viewer.post(f"/alerts/{alert['id']}/unmute")
    assert r.status_code == 403 and r.json()["error"]["type"] == "forbidden"
    r = eng.post(f"/alerts/{alert['id']}/unmute")
    assert r.status_code == 200, r.text
    assert (r.json()["kind"], r.json()["subject"]) == ("anomaly", "org=acme")
    assert viewer.get("/alerts").json()["data"][0]["state"] == "open"
    assert viewer.get("/alerts/mutes").json()["data"] == []
    assert not api.plane.muted("anomaly", "org=acme")
    (entry,) = api.plane.audit(entity="alert", limit=1)
    assert (entry.action, entry.actor, entry.entity_id) == (
        "alert.unmute",
        "eng",
        "anomaly:org=acme",
    )
    again = eng.post(f"/alerts/{alert['id']}/unmute")
    assert again.status_code == 404 and "is not muted" in again.json()["error"]["message"]
    assert eng.post("/alerts/999999/unmute").status_code == 404
    doc = viewer.get("/openapi.json").json()
    assert "post" in doc["paths"]["/alerts/{id}/unmute"]
    assert "get" in doc["paths"]["/alerts/mutes"]


def test_limits_show_live_buckets_and_reset_them(api: ApiServer) -> None:
    rl = RateLimit(id="per-user", scope="user", limit=10, window_s=60)
    api.plane.upsert_rate_limit(rl, SYSTEM)
    state: MemoryState = api.context.state()
    item = RateItem(rate_key(rl, "ann"), "token_bucket", 10, 60.0, cost=4)
    viewer = api.client(api.user("vic", "viewer"))
    taken = time.monotonic()
    assert state.admit([item], []).ok
    (limit,) = viewer.get("/limits").json()["data"]
    refilled = (time.monotonic() - taken) * 10 / 60  # at most this much came back since
    (bucket,) = limit["buckets"]
    assert bucket["value"] == "ann"
    assert 4.0 - refilled - 0.01 <= bucket["used"] <= 4.0  # 4 taken; refilling at 10/min since
    assert viewer.delete("/limits").status_code == 403
    eng = api.client(api.user("eng", "engineer"))
    reset = eng.delete("/limits", params={"id": "per-user"}).json()
    assert (reset["reset"], reset["levels"]) == ({"per-user": 1}, "process")
    assert viewer.get("/limits").json()["data"][0]["buckets"] == []
    assert api.plane.audit(limit=1)[0].action == "rate_limit.reset"


def litellm_file() -> dict[str, Any]:
    return {
        "gpt-4o": {
            "litellm_provider": "openai",
            "mode": "chat",
            "input_cost_per_token": 0.000003,
            "output_cost_per_token": 0.000011,
            "max_input_tokens": 128000,
            "max_output_tokens": 16384,
        }
    }


def test_price_import_is_a_dry_run_until_confirmed(api: ApiServer) -> None:
    admin = api.client(api.user("adm", "admin"))
    viewer = api.client(api.user("vic", "viewer"))
    body = {"content": litellm_file(), "effective_from": "2031-01-01"}
    dry = viewer.post("/prices/import", json=body)
    assert dry.status_code == 200, dry.text
    assert dry.json()["dry_run"] is True
    changed = {(c["model"], c["field"]) for c in dry.json()["changes"]}
    assert ("gpt-4o", "input") in changed
    assert api.plane.price_overrides() == []
    assert viewer.post("/prices/import", json={**body, "confirm": True}).status_code == 403
    done = admin.post("/prices/import", json={**body, "confirm": True}).json()
    assert done["written"] == 1
    (o,) = api.plane.price_overrides()
    assert (o.model, str(o.input), str(o.output)) == ("gpt-4o", "3", "11")
    rows = admin.get("/prices", params={"model": "gpt-4o"}).json()["data"]
    assert any(r["effective_from"] == "2031-01-01" and r["input_usd_per_mtok"] == "3" for r in rows)
    assert admin.post("/prices/import", json={"content": 5}).status_code == 422
    assert json.loads(admin.get("/prices/overrides").text)["data"][0]["note"] == "LiteLLM import"


def test_notification_settings_are_validated_and_guarded(api: ApiServer) -> None:
    admin = api.client(api.user("adm", "admin"))
    eng = api.client(api.user("eng", "engineer"))
    assert eng.get("/settings").status_code == 403
    notes = {"webhook_urls": ["https://hooks.example.com/x"], "email_to": ["a@example.com"]}
    r = admin.put("/settings/notifications", json={"value": notes})
    assert r.status_code == 422
    assert r.json()["error"]["field"] == "notifications.smtp"
    notes["smtp"] = {"host": "127.0.0.1", "port": 2525, "password": "x"}
    r = admin.put("/settings/notifications", json={"value": notes})
    assert r.json()["error"]["field"] == "notifications.smtp.password"
    del notes["smtp"]["password"]
    r = admin.put("/settings/notifications", json={"value": notes})
    assert r.status_code == 200, r.text
    again = admin.put("/settings/notifications", json={"value": notes})
    assert again.status_code == 428
    ok = admin.put("/settings/retention_days", json={"value": 30})
    assert ok.status_code == 200
    assert admin.put("/settings/retention_days", json={"value": 60}).status_code == 428
    tag = admin.get("/settings/retention_days").headers["etag"]
    bad = admin.put("/settings/retention_days", json={"value": 0}, headers={"If-Match": tag})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "retention_days"
    listed = {s["key"]: s["value"] for s in admin.get("/settings").json()["data"]}
    assert listed["retention_days"] == 30 and listed["timezone"] == "UTC"
    assert api.plane.audit(entity="setting", limit=1)[0].actor == "adm"


def test_ids_with_a_slash_can_be_read_changed_and_deleted(api: ApiServer) -> None:
    """A budget id may hold '/' (team/a) and a task name too: POST created them, but every
    route of one (GET, PATCH, DELETE, status, reset) was a 404 'no such path', encoded
    (%2F, as Swagger UI sends it) or not. The sub-resources still win: /budgets/b1/status."""
    eng = api.client(api.user("eng", "engineer"))
    for bid in ("team/a", "b1"):
        body = {"id": bid, "name": "T", "limit_usd": "5"}
        assert eng.post("/budgets", json=body).status_code == 201
    for path in ("/budgets/team%2Fa", "/budgets/team/a"):
        r = eng.get(path)
        assert r.status_code == 200 and r.json()["id"] == "team/a", (path, r.text)
    tag = eng.get("/budgets/team%2Fa").headers["etag"]
    r = eng.patch("/budgets/team%2Fa", json={"limit_usd": "6"}, headers={"If-Match": tag})
    assert r.status_code == 200 and r.json()["limit_usd"] == "6", r.text
    assert eng.get("/budgets/team/a/status").json()["budget_id"] == "team/a"
    assert eng.get("/budgets/b1/status").json()["budget_id"] == "b1"
    r = eng.post("/budgets/team%2Fa/reset", headers={"If-Match": r.headers["etag"]})
    assert r.status_code == 200, r.text
    r = eng.put("/routing-policies/support%2Fbilling", json={"primary_model": "gpt-4o"})
    assert r.status_code == 201, r.text
    assert eng.get("/routing-policies/support/billing").json()["task"] == "support/billing"
    r = eng.delete("/budgets/team%2Fa", headers={"If-Match": "*"})
    assert r.status_code == 204, r.text
    assert api.plane.budget("team/a") is None


def test_a_patch_of_some_weights_keeps_the_others(api: ApiServer) -> None:
    """PATCH changes the fields it names: a weights object naming only cost reset latency
    and quality to their defaults (0.2, 0.3) instead of keeping the policy's own."""
    eng = api.client(api.user("eng", "engineer"))
    weights = {"cost": 0.1, "latency": 0.8, "quality": 0.1}
    body = {"primary_model": "gpt-4o", "strategy": "balanced", "weights": weights}
    r = eng.put("/routing-policies/triage", json=body)
    assert r.status_code == 201, r.text
    r = eng.patch(
        "/routing-policies/triage",
        json={"weights": {"cost": 0.2}},
        headers={"If-Match": r.headers["etag"]},
    )
    assert r.status_code == 200, r.text
    assert r.json()["weights"] == {"cost": 0.2, "latency": 0.8, "quality": 0.1}
    stored = api.plane.policies()[0].weights
    assert (stored.cost, stored.latency, stored.quality) == (0.2, 0.8, 0.1)
    r = eng.patch(
        "/routing-policies/triage", json={"weights": {"speed": 1}}, headers={"If-Match": "*"}
    )
    assert (r.status_code, r.json()["error"]["field"]) == (422, "weights.speed"), r.text


def test_conditional_get_answers_304_while_the_etag_holds(api: ApiServer) -> None:
    """If-None-Match on a GET that answers an ETag: 304, same ETag, no body; a change (or
    another ETag) gives the 200 with the body. The OpenAPI document says so."""
    eng = api.client(api.user("eng", "engineer"))
    admin = api.client(api.user("adm", "admin"))
    assert eng.post("/budgets", json=BUDGET).status_code == 201
    first = eng.get("/budgets/ops")
    tag = first.headers["etag"]
    for held in (tag, f"W/{tag}", f'"nope", {tag}', "*"):
        r = eng.get("/budgets/ops", headers={"If-None-Match": held})
        assert r.status_code == 304, (held, r.text)
        assert r.content == b"" and r.headers["etag"] == tag
    other = eng.get("/budgets/ops", headers={"If-None-Match": '"nope"'})
    assert other.status_code == 200 and other.json() == first.json()
    patched = eng.patch("/budgets/ops", json={"limit_usd": "150"}, headers={"If-Match": tag})
    r = eng.get("/budgets/ops", headers={"If-None-Match": tag})
    assert r.status_code == 200 and r.json()["limit_usd"] == "150"
    assert r.headers["etag"] == patched.headers["etag"] != tag
    # every GET with an ETag: keys, settings
    assert eng.post("/keys", json={"name": "ci"}).status_code == 201
    key_tag = eng.get("/keys/ci").headers["etag"]
    assert eng.get("/keys/ci", headers={"If-None-Match": key_tag}).status_code == 304
    put = admin.put("/settings/timezone", json={"value": "UTC"})
    assert put.status_code in (200, 201), put.text
    set_tag = admin.get("/settings/timezone").headers["etag"]
    assert admin.get("/settings/timezone", headers={"If-None-Match": set_tag}).status_code == 304
    # a missing resource stays a 404
    assert eng.get("/budgets/gone", headers={"If-None-Match": "*"}).status_code == 404
    op = eng.get("/openapi.json").json()["paths"]["/budgets/{id}"]["get"]
    assert "304" in op["responses"] and "ETag" in op["responses"]["304"]["headers"]
    assert "If-None-Match" in [p["name"] for p in op["parameters"]]
