"""The OpenAPI document validates, and every documented operation answers over HTTP with
a documented status (never the router's plain 404/405), in the one error shape."""

from __future__ import annotations

import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from openapi_spec_validator import validate
from test_usage_support import event

from core.control import SYSTEM, Budget, RateLimit, RoutingPolicy, SamplingStrategy
from core.usage import rows_to_table, segments_dir, write_segment
from core.usage._schema import event_row
from tests.servers.api import ApiServer

SAMPLE = {
    "id": "b1",
    "task": "chat",
    "key": "trader",
    "name": "k1",
    "request_id": event(3).request_id,
}
BODIES: dict[tuple[str, str], Any] = {
    ("post", "/budgets"): {"id": "b2", "name": "New", "limit_usd": "3"},
    ("patch", "/budgets/{id}"): {"limit_usd": "7"},
    ("put", "/routing-policies/{task}"): {"primary_model": "gpt-4o"},
    ("patch", "/routing-policies/{task}"): {"max_tokens": 100},
    ("put", "/sampling-strategies/{key}"): {"strategy": "always"},
    ("patch", "/sampling-strategies/{key}"): {"batch_size": 3},
    ("put", "/event-thresholds/{key}"): {"batch_size": 4},
    ("put", "/cache-settings/{task}"): {"ttl_s": 60},
    ("patch", "/cache-settings/{task}"): {"ttl_s": 61},
    ("put", "/rate-limits/{id}"): {"limit": 5},
    ("patch", "/rate-limits/{id}"): {"limit": 6},
    ("post", "/prices/overrides"): {
        "model": "gpt-4o",
        "effective_from": "2032-01-01",
        "input": "1",
        "output": "2",
    },
    ("post", "/prices/import"): {"content": {}},
    ("post", "/alerts/{id}/mute"): {"until": "2000-01-01"},
    ("post", "/tokens"): {"user": "adm"},
    ("post", "/keys"): {"name": "k1", "rpm": 10},
    ("put", "/settings/{key}"): {"value": 1},
}


@pytest.fixture
def api(costline_home: Path) -> Iterator[tuple[ApiServer, httpx.Client]]:
    rows = [event_row(event(i)) for i in range(200)]
    write_segment(rows_to_table(rows), segments_dir(costline_home), "a")
    with ApiServer(costline_home) as server:
        plane = server.plane
        plane.upsert_budget(Budget(id="b1", name="One", limit_usd=Decimal(9)), SYSTEM)
        plane.upsert_policy(RoutingPolicy(task="chat", primary_model="gpt-4o-mini"), SYSTEM)
        plane.upsert_sampling(SamplingStrategy(key="trader"), SYSTEM)
        plane.upsert_rate_limit(RateLimit(id="b1"), SYSTEM)
        plane.record_alert("b1", "w", 50, message="half")
        yield server, server.client(server.user("adm", "admin"))


def test_the_document_validates_and_every_operation_answers(
    api: tuple[ApiServer, httpx.Client],
) -> None:
    server, client = api
    doc = client.get("/openapi.json").json()
    validate(doc)
    assert set(doc["paths"]["/keys"]) == {"get", "post"}
    assert set(doc["paths"]["/keys/{name}"]) == {"get", "delete"}
    alert_id = str(server.plane.alerts()[0].id)
    token_id = server.plane.api_tokens()[0].id
    seen = 0
    for path, item in doc["paths"].items():
        for method, op in item.items():
            ids = {**SAMPLE, "id": alert_id if "/alerts/" in path else "b1"}
            if path.startswith("/tokens/"):
                ids["id"] = token_id
            url = re.sub(r"\{(\w+)\}", lambda m: ids[m.group(1)], path)  # noqa: B023
            if path == "/cache-settings/{task}" and method == "get":
                client.put("/cache-settings/chat", json={"ttl_s": 60})
            headers = {}
            if method in ("put", "patch", "delete") or path.endswith("/reset"):
                got = client.get(url)
                if got.status_code == 200 and "etag" in got.headers:
                    headers["If-Match"] = got.headers["etag"]
            body = BODIES.get((method, path))
            r = client.request(method.upper(), url, json=body, headers=headers)
            documented = set(op["responses"])
            assert str(r.status_code) in documented, (method, path, r.status_code, r.text)
            if r.status_code >= 400:
                assert set(r.json()["error"]) == {"type", "message", "field"}, r.text
            seen += 1
    assert seen >= 50


def test_docs_are_served_locally(api: tuple[ApiServer, httpx.Client]) -> None:
    server, _ = api
    page = httpx.get(server.base_url + "/api/docs")
    assert page.status_code == 200
    assert "/api/v1/openapi.json" in page.text
    assert "https://" not in page.text  # nothing from a CDN
    js = httpx.get(server.base_url + "/api/docs/assets/swagger-ui-bundle.js")
    assert js.status_code == 200 and len(js.content) > 100_000


def _json_schema(schema: Any) -> Any:
    """OpenAPI 3.0's dialect as JSON Schema: ``nullable`` as a null type."""
    if isinstance(schema, list):
        return [_json_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _json_schema(v) for k, v in schema.items() if k not in ("nullable", "format")}
    if schema.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


def test_every_read_answers_the_documented_schema(
    api: tuple[ApiServer, httpx.Client],
) -> None:
    """Each GET's body validates against its documented 200 schema, and every property the
    document names is in the body (for lists: in their first item)."""
    server, client = api
    client.put("/cache-settings/chat", json={"ttl_s": 60})
    client.post("/keys", json={"name": "k1", "rpm": 10})
    alert_id = str(server.plane.alerts()[0].id)
    doc = client.get("/openapi.json").json()
    checked = 0
    for path, item in doc["paths"].items():
        op = item.get("get")
        if op is None:
            continue
        ids = {**SAMPLE, "id": alert_id if "/alerts/" in path else "b1"}
        if path == "/settings/{key}":
            ids["key"] = "timezone"
        url = re.sub(r"\{(\w+)\}", lambda m: ids[m.group(1)], path)  # noqa: B023
        r = client.get(url)
        assert r.status_code == 200, (path, r.text)
        schema = op["responses"]["200"]["content"]["application/json"]["schema"]
        body = r.json()
        jsonschema.validate(body, _json_schema(schema))
        named = set(schema.get("properties", {}))
        assert named <= set(body), (path, named - set(body))
        items = schema.get("properties", {}).get("data", {}).get("items", {})
        if items.get("properties") and body.get("data"):
            assert set(items["properties"]) <= set(body["data"][0]), (path, body["data"][0])
        checked += 1
    assert checked >= 25


def test_writes_answer_a_documented_status_with_the_documented_body(
    api: tuple[ApiServer, httpx.Client],
) -> None:
    """A PUT that creates answers 201 and a price override that replaces one 200: both are
    in the document with the body's schema (only 200, resp. 201, was), and the body names
    what the schema names: the token a POST /tokens answers (its secret) is documented."""
    _, client = api
    doc = client.get("/openapi.json").json()

    def check(method: str, path: str, r: httpx.Response) -> None:
        responses = doc["paths"][path][method]["responses"]
        assert str(r.status_code) in responses, (method, path, r.status_code, r.text)
        schema = responses[str(r.status_code)]["content"]["application/json"]["schema"]
        jsonschema.validate(r.json(), _json_schema(schema))
        assert set(schema.get("properties", {})) <= set(r.json()), (path, schema, r.text)

    r = client.put("/routing-policies/new", json={"primary_model": "gpt-4o"})
    assert r.status_code == 201, r.text
    check("put", "/routing-policies/{task}", r)
    r = client.put("/event-thresholds/fresh", json={"batch_size": 4})
    assert r.status_code == 201, r.text
    check("put", "/event-thresholds/{key}", r)
    price = {"model": "gpt-4o", "effective_from": "2033-01-01", "input": "1", "output": "2"}
    first = client.post("/prices/overrides", json=price)
    assert first.status_code == 201, first.text
    check("post", "/prices/overrides", first)
    again = client.post(
        "/prices/overrides",
        json={**price, "output": "3"},
        headers={"If-Match": first.headers["etag"]},
    )
    assert again.status_code == 200, again.text
    check("post", "/prices/overrides", again)
    token = client.post("/tokens", json={"user": "adm"})
    assert token.status_code == 201 and token.json()["token"].startswith("clt_")
    check("post", "/tokens", token)
    assert (
        "token"
        in doc["paths"]["/tokens"]["post"]["responses"]["201"]["content"]["application/json"][
            "schema"
        ]["properties"]
    )
