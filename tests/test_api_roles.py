"""API tokens and roles over real HTTP: hashed tokens, revocation, the role re-checked on
every call, and every write audited with the token's user."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from core import clock
from core.control import SYSTEM
from tests.servers.api import ApiServer


@pytest.fixture
def api(costline_home: Path) -> Iterator[ApiServer]:
    with ApiServer(costline_home) as server:
        yield server


def test_tokens_are_stored_hashed_and_stop_working_when_revoked(api: ApiServer) -> None:
    token = api.user("ann", "viewer")
    with api.plane.engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT token_hash, prefix FROM api_tokens")).one()
    assert token not in stored.token_hash and len(stored.token_hash) == 64
    assert token.startswith(stored.prefix)
    client = api.client(token)
    assert client.get("/budgets").status_code == 200
    (record,) = api.plane.api_tokens("ann")
    assert record.last_used_at is not None
    assert api.plane.revoke_api_token(record.id, SYSTEM)
    r = client.get("/budgets")
    assert r.status_code == 401
    assert r.json()["error"]["type"] == "unauthorized"
    assert api.client("clt_made-up").get("/budgets").status_code == 401
    assert api.client().get("/budgets").status_code == 401


def test_expired_and_disabled_users_tokens_are_refused(api: ApiServer) -> None:
    api.plane.create_user("old", "password-123", "engineer", SYSTEM)
    secret, _ = api.plane.create_api_token(
        "old", SYSTEM, expires_at=clock.now() + timedelta(seconds=1)
    )
    with clock.offset(timedelta(seconds=5)):
        assert api.client(secret).get("/budgets").json()["error"]["message"] == (
            "API token expired"
        )
    token = api.user("bob", "engineer")
    api.plane.disable_user("bob", SYSTEM)
    assert api.client(token).get("/budgets").status_code == 401


BUDGET = {"id": "b1", "name": "Team", "limit_usd": "50.25", "period": "month"}


def test_role_matrix_with_audit_rows(api: ApiServer) -> None:
    viewer = api.client(api.user("vic", "viewer"))
    engineer = api.client(api.user("eng", "engineer"))
    admin = api.client(api.user("adm", "admin"))
    # viewer: reads everything but the audit log and tokens; writes nothing
    for path in ("/budgets", "/spend", "/usage", "/alerts", "/prices?model=gpt-4o", "/limits"):
        assert viewer.get(path).status_code == 200, path
    for path in ("/audit", "/tokens"):
        assert viewer.get(path).status_code == 403, path
    r = viewer.post("/budgets", json=BUDGET)
    assert r.status_code == 403
    assert r.json()["error"]["type"] == "forbidden"
    # engineer: budgets and policies, not prices, tokens or the audit log
    r = engineer.post("/budgets", json=BUDGET)
    assert r.status_code == 201, r.text
    assert r.json()["limit_usd"] == "50.25"
    r = engineer.put("/routing-policies/summarize", json={"primary_model": "gpt-4o-mini"})
    assert r.status_code == 201, r.text
    price = {"model": "gpt-4o", "effective_from": "2030-01-01", "input": "1", "output": "2"}
    assert engineer.post("/prices/overrides", json=price).status_code == 403
    assert engineer.post("/tokens", json={"user": "eng"}).status_code == 403
    assert engineer.get("/audit").status_code == 403
    # admin: everything
    r = admin.post("/prices/overrides", json=price)
    assert r.status_code == 201, r.text
    r = admin.post("/tokens", json={"user": "vic", "name": "script"})
    assert r.status_code == 201 and r.json()["token"].startswith("clt_")
    audit = admin.get("/audit", params={"limit": "50"}).json()["data"]
    by_action = {(e["action"], e["entity_id"]): e["actor"] for e in audit}
    assert by_action[("budget.create", "b1")] == "eng"
    assert by_action[("routing_policy.create", "summarize")] == "eng"
    assert by_action[("price_override.create", "openai/gpt-4o/2030-01-01")] == "adm"
    assert any(a == "api_token.create" and who == "adm" for (a, _), who in by_action.items())


def test_a_demoted_user_loses_write_access_on_the_next_call(api: ApiServer) -> None:
    token = api.user("eve", "engineer")
    client = api.client(token)
    assert client.post("/budgets", json=BUDGET).status_code == 201
    api.plane.set_role("eve", "viewer", SYSTEM)
    etag = client.get("/budgets/b1").headers["etag"]
    r = client.patch("/budgets/b1", json={"limit_usd": "1"}, headers={"If-Match": etag})
    assert r.status_code == 403
    assert api.plane.budget("b1").limit_usd == 50.25  # type: ignore[union-attr]
    api.plane.set_role("eve", "admin", SYSTEM)
    assert client.get("/audit").status_code == 200
