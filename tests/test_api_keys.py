"""Virtual keys over the REST API (real HTTP): list without secrets, create with the secret
shown once, revoke with If-Match; engineer/admin only, every write audited as the token's
user."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from core.keys import KeyIndex, load_pepper
from tests.servers.api import ApiServer


@pytest.fixture
def api(costline_home: Path) -> Iterator[ApiServer]:
    with ApiServer(costline_home) as server:
        yield server


CI = {"name": "ci", "project": "search", "budget_usd": "12.5", "rpm": 60, "models": ["gpt-4o"]}


def test_role_matrix_secret_once_and_audit(api: ApiServer, costline_home: Path) -> None:
    viewer = api.client(api.user("vic", "viewer"))
    engineer = api.client(api.user("eng", "engineer"))
    admin = api.client(api.user("adm", "admin"))
    # viewer: no keys at all (the console's Keys page is engineer/admin too)
    assert viewer.get("/keys").status_code == 403
    r = viewer.post("/keys", json=CI)
    assert r.status_code == 403 and r.json()["error"]["type"] == "forbidden"
    assert api.plane.virtual_keys() == []
    # engineer creates: the secret is in this answer only
    r = engineer.post("/keys", json=CI)
    assert r.status_code == 201, r.text
    made = r.json()
    secret = made.pop("secret")
    assert secret.startswith("sk-cl-") and made["prefix"] == secret[: len(made["prefix"])]
    assert r.headers["etag"]
    assert made["project"] == "search" and made["budget_usd"] == "12.5" and made["rpm"] == 60
    assert made["models"] == ["gpt-4o"] and made["status"] == "active"
    assert made["created_by"] == "eng"
    found = KeyIndex(api.plane.virtual_keys(), load_pepper(costline_home)).find(secret)
    assert found is not None and found.name == "ci"  # the secret is the stored hash's
    listed = engineer.get("/keys").json()["data"]
    assert [k["name"] for k in listed] == ["ci"]
    text = engineer.get("/keys").text
    assert secret not in text and "key_hash" not in text and found.key_hash not in text
    one = engineer.get("/keys/ci")
    assert one.status_code == 200 and one.json() == made
    assert api.plane.budget("key:ci") is not None  # an ordinary budget with scope key
    # revoke: If-Match required; a stale ETag is refused; '*' always matches
    etag = one.headers["etag"]
    assert viewer.delete("/keys/ci", headers={"If-Match": etag}).status_code == 403
    r = engineer.delete("/keys/ci")
    assert r.status_code == 428 and "If-Match" in r.json()["error"]["message"]
    r = engineer.delete("/keys/ci", headers={"If-Match": '"0123456789abcdef"'})
    assert r.status_code == 412 and r.json()["error"]["type"] == "precondition_failed"
    assert admin.delete("/keys/ci", headers={"If-Match": etag}).status_code == 204
    assert api.plane.virtual_key("ci").revoked_by == "adm"  # type: ignore[union-attr]
    # revoked already: a 404 (no active key), as a token revoked twice, whatever If-Match says
    for match in (etag, "*"):
        r = engineer.delete("/keys/ci", headers={"If-Match": match})
        assert r.status_code == 404 and r.json()["error"]["type"] == "not_found"
        assert "no active key 'ci': revoked at" in r.json()["error"]["message"]
    assert api.plane.virtual_key("ci").revoked_by == "adm"  # type: ignore[union-attr]
    made_token = admin.post("/tokens", json={"user": "eng", "name": "twice"}).json()
    assert admin.delete(f"/tokens/{made_token['id']}").status_code == 204
    assert admin.delete(f"/tokens/{made_token['id']}").status_code == 404
    assert engineer.get("/keys", params={"status": "revoked"}).json()["data"][0]["name"] == "ci"
    assert engineer.get("/keys", params={"status": "active"}).json()["data"] == []
    assert engineer.delete("/keys/nope", headers={"If-Match": "*"}).status_code == 404
    # every write audited with the token's user; the audit never holds the secret or hash
    audit = admin.get("/audit", params={"limit": "100"}).json()["data"]
    got = {(e["action"], e["entity_id"], e["actor"]) for e in audit}
    assert ("virtual_key.create", "ci", "eng") in got
    assert ("virtual_key.revoke", "ci", "adm") in got
    assert ("budget.create", "key:ci", "eng") in got
    assert ("rate_limit.create", "key:ci:rpm", "eng") in got
    dump = admin.get("/audit", params={"limit": "100", "entity": "virtual_key"}).text
    assert secret not in dump and found.key_hash not in dump


def test_bad_input_is_named_and_nothing_is_stored(api: ApiServer) -> None:
    engineer = api.client(api.user("eng", "engineer"))
    cases = [
        ({"project": "x"}, 422, "name"),
        ({"name": "a", "budget_usd": "lots"}, 422, "budget_usd"),
        ({"name": "a", "budget_usd": "-1"}, 422, "budget_usd"),
        ({"name": "a", "rpm": 0}, 422, "rpm"),
        ({"name": "a", "period": "year", "budget_usd": "1"}, 422, "period"),
        ({"name": "a", "models": ["no-such-model-x"]}, 422, "models"),
        ({"name": "a", "expires_at": "2001-01-01"}, 422, "expires_at"),
        ({"name": "a", "colour": "red"}, 422, "colour"),
        ({"name": "bad name!"}, 422, "name"),
    ]
    for body, status, field in cases:
        r = engineer.post("/keys", json=body)
        assert r.status_code == status, (body, r.text)
        assert r.json()["error"]["field"] == field, (body, r.text)
    assert api.plane.virtual_keys() == []
    assert [b for b in api.plane.budgets() if b.scope == "key"] == []
    assert engineer.post("/keys", json={"name": "a"}).status_code == 201
    r = engineer.post("/keys", json={"name": "a"})
    assert r.status_code == 409 and "never reused" in r.json()["error"]["message"]
    assert r.json()["error"]["field"] == "name"
