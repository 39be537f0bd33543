"""Bad input over real HTTP: every mistake answers a 4xx naming the problem, and nothing
is stored (huge amounts, typo'd or already-expired token requests, unknown settings)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_usage_support import event

from core.state import MemoryState
from core.usage import rows_to_table, segments_dir, write_segment
from core.usage._schema import event_row
from tests.servers.api import ApiServer

BUDGET = {"id": "ops", "name": "Ops", "limit_usd": "100", "period": "day"}


@pytest.fixture
def api(costline_home: Path) -> Iterator[ApiServer]:
    with ApiServer(costline_home, state=MemoryState("t:")) as server:
        yield server


@pytest.mark.parametrize("amount", ["1e400", "10000000000000000", "1E+28"])
def test_an_amount_too_large_to_hold_is_a_422_naming_its_field(api: ApiServer, amount: str) -> None:
    eng = api.client(api.user("eng", "engineer"))
    admin = api.client(api.user("root", "admin"))
    assert eng.post("/budgets", json=BUDGET).status_code == 201
    tag = eng.get("/budgets/ops").headers["etag"]
    for r, field in (
        (
            eng.patch("/budgets/ops", json={"limit_usd": amount}, headers={"If-Match": tag}),
            "limit_usd",
        ),
        (eng.post("/budgets", json={**BUDGET, "id": "big", "limit_usd": amount}), "limit_usd"),
        (
            admin.post(
                "/prices/overrides",
                json={
                    "model": "gpt-4o",
                    "effective_from": "2026-01-01",
                    "input": amount,
                    "output": "1",
                },
            ),
            "input",
        ),
        (
            admin.put("/settings/currency_rates", json={"value": {"EUR": amount}}),
            "currency_rates.EUR",
        ),
    ):
        assert r.status_code == 422, r.text
        error = r.json()["error"]
        assert error["type"] == "invalid"
        if field is not None:
            assert error["field"] == field, error
            assert "must be <=" in error["message"]
    key = eng.post("/keys", json={"name": "k-big", "budget_usd": amount})
    assert key.status_code == 422 and key.json()["error"]["field"] == "budget_usd", key.text
    assert eng.get("/keys/k-big").status_code == 404
    assert eng.get("/budgets/ops").json()["limit_usd"] == "100"
    assert eng.get("/budgets/big").status_code == 404
    assert admin.get("/prices/overrides").json()["data"] == []
    assert admin.get("/settings/currency_rates").json()["stored"] is False


def test_a_token_request_with_a_typo_or_a_past_expiry_creates_no_token(api: ApiServer) -> None:
    admin = api.client(api.user("root", "admin"))
    api.user("eng", "engineer")
    before = len(admin.get("/tokens").json()["data"])
    for body, field in (
        ({"user": "eng", "expires": "2030-01-01"}, "expires"),  # would never expire
        ({"user": "eng", "expiry_at": "2030-01-01"}, "expiry_at"),
        ({"user": "eng", "expires_at": "2020-01-01"}, "expires_at"),  # expired at birth
        ({"user": "eng", "name": 7}, "name"),
    ):
        r = admin.post("/tokens", json=body)
        assert r.status_code == 422, (body, r.text)
        assert r.json()["error"]["field"] == field
    assert len(admin.get("/tokens").json()["data"]) == before
    assert [e.action for e in api.plane.audit(entity="api_token")].count("api_token.create") == 2
    made = admin.post("/tokens", json={"user": "eng", "expires_at": "2099-01-01"})
    assert made.status_code == 201, made.text
    assert api.client(made.json()["token"]).get("/budgets").status_code == 200


def test_a_misspelt_setting_is_a_404_and_is_not_stored(api: ApiServer) -> None:
    admin = api.client(api.user("root", "admin"))
    r = admin.put("/settings/retention_day", json={"value": 30})  # retention_days
    assert r.status_code == 404, r.text
    assert "retention_days" in r.json()["error"]["message"]
    assert admin.get("/settings/retention_day").status_code == 404
    assert "retention_day" not in api.plane.settings()
    assert not [e for e in api.plane.audit(entity="setting")]
    assert admin.put("/settings/retention_days", json={"value": 30}).status_code == 200


def test_a_forecast_interval_that_is_not_a_fraction_is_a_400(api: ApiServer) -> None:
    viewer = api.client(api.user("fin", "viewer"))
    for bad in ("0.8,abc", "0.8,-0.5", "0.95,1e400", "80"):
        r = viewer.get("/forecast", params={"intervals": bad, "backtest": "false"})
        assert r.status_code == 400, (bad, r.text)
        assert r.json()["error"]["field"] == "intervals"
    ok = viewer.get("/forecast", params={"intervals": "0.9", "backtest": "false"})
    assert ok.status_code == 200, ok.text
    assert ok.json()["intervals"] == [0.9]


def test_an_smtp_password_sent_by_mistake_is_refused_without_echoing_it(api: ApiServer) -> None:
    admin = api.client(api.user("root", "admin"))
    notes = {
        "email_to": ["fin@example.com"],
        "smtp": {"host": "mail.example.com", "password": "hunter2-secret"},
    }
    r = admin.put("/settings/notifications", json={"value": notes})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == "notifications.smtp.password"
    assert "COSTLINE_SMTP_PASSWORD" in r.text and "hunter2" not in r.text
    assert "notifications" not in api.plane.settings()


def test_a_budget_status_lists_its_alerts_as_the_inbox_does(api: ApiServer) -> None:
    """Money in USD decimal strings and a state, never raw picodollars."""
    eng = api.client(api.user("eng", "engineer"))
    assert eng.post("/budgets", json=BUDGET).status_code == 201
    api.plane.record_alert(
        "ops", "2026-12-05", 50, message="half", spent_picousd=50_005 * 10**9, limit_picousd=10**14
    )
    status = eng.get("/budgets/ops/status").json()
    inbox = eng.get("/alerts", params={"kind": "budget", "subject": "ops"}).json()["data"]
    assert status["alerts"] == inbox
    (alert,) = status["alerts"]
    assert (alert["spent_usd"], alert["limit_usd"], alert["state"]) == ("50.005", "100", "open")
    assert not [k for k in alert if k.endswith("_picousd")]


def test_anomalies_give_dollars_only_for_spend_as_decimal_strings(
    costline_home: Path,
) -> None:
    """A spend anomaly's excess_usd is an exact decimal string; a calls anomaly's excess is
    a number of calls, never labelled dollars (it read excess_usd: 290.0 for 290 calls)."""
    from datetime import timedelta

    from core import clock
    from core.usage import UsageEvent, UsageLog

    now = clock.now()
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    events = []

    def ev(rid: str, ts: object, org: str, cost: int) -> UsageEvent:
        return UsageEvent(
            request_id=rid, ts=ts, org=org, user="ann", model=f"m-{org}", provider="openai",
            cost_picousd=cost, latency_ms=100.0,
        )  # fmt: skip

    for d in range(1, 31):
        for k in range(10):
            ts = today - timedelta(days=d) + timedelta(hours=1 + 2 * k)
            events += [ev(f"a{d}-{k}", ts, "acme", 10**11), ev(f"b{d}-{k}", ts, "beta", 0)]
    for k in range(10):
        ts = max(today, now - timedelta(seconds=5 * (k + 1)))
        events.append(ev(f"at{k}", ts, "acme", 20 * 10**12 + (5 * 10**9 if k == 0 else 0)))
    for k in range(300):
        events.append(ev(f"bt{k}", max(today, now - timedelta(seconds=k + 1)), "beta", 0))
    with UsageLog(costline_home, compact_threshold=0) as log:
        log.append_many(events)
    with ApiServer(costline_home) as server:
        found = server.client(server.user("fin", "viewer")).get("/anomalies").json()["data"]
    day = {(f["subject"], f["metric"]): f for f in found if f["grain"] == "day"}
    spend = day[("org=acme", "spend")]
    assert spend["excess_usd"] == "199.005" and spend["excess"] == 199.005, spend
    assert spend["spent_usd"] == "200.005", spend  # exact: an integer sum from the log
    calls = day[("org=beta", "requests")]
    assert calls["excess_usd"] is None and calls["excess"] == 290, calls


def test_an_unknown_path_or_method_answers_the_one_error_shape(api: ApiServer) -> None:
    client = api.client(api.user("fin", "viewer"))
    nope = client.get("/budget")  # /budgets
    assert nope.status_code == 404 and nope.headers["content-type"] == "application/json"
    assert nope.json()["error"]["type"] == "not_found"
    assert "/api/v1/budget" in nope.json()["error"]["message"]
    for method, path in (("PUT", "/budgets"), ("DELETE", "/spend"), ("PATCH", "/usage")):
        r = client.request(method, path, json={})
        assert r.status_code == 405, (method, path, r.text)
        assert r.headers["content-type"] == "application/json"
        assert set(r.json()["error"]) == {"type", "message", "field"}
        assert r.json()["error"]["type"] == "method_not_allowed"
        assert "GET" in r.headers["allow"]


def test_acking_an_acked_alert_keeps_the_first_acknowledgement(api: ApiServer) -> None:
    ann = api.client(api.user("ann", "engineer"))
    bob = api.client(api.user("bob", "engineer"))
    api.plane.record_alert("ops", "2026-12-05", 90, message="Ops at 90%")
    (alert,) = api.plane.alerts()
    first = ann.post(f"/alerts/{alert.id}/ack")
    assert first.status_code == 200 and first.json()["acked_by"] == "ann"
    again = bob.post(f"/alerts/{alert.id}/ack")
    assert again.status_code == 200, again.text
    assert (again.json()["acked_by"], again.json()["acked_at"]) == (
        "ann",
        first.json()["acked_at"],
    )
    acks = [e for e in api.plane.audit(entity="alert") if e.action == "alert.ack"]
    assert [e.actor for e in acks] == ["ann"]
    assert bob.post("/alerts/999999/ack").status_code == 404


def test_a_price_import_with_a_misspelt_field_is_refused(api: ApiServer) -> None:
    """{"confirmed": true} is a 422, not a dry run that reads as if it had been applied."""
    admin = api.client(api.user("root", "admin"))
    prices = {"gpt-4o": {"litellm_provider": "openai", "input_cost_per_token": 3e-06}}
    r = admin.post("/prices/import", json={"content": prices, "confirmed": True})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == "confirmed"
    dry = admin.post("/prices/import", json={"content": prices})
    assert dry.status_code == 200 and dry.json()["dry_run"] is True
    assert admin.get("/prices/overrides").json()["data"] == []


@pytest.mark.parametrize("text", ["²", "٣", "99999999999999999999"])
def test_an_alert_id_or_id_cursor_it_never_returned_is_a_4xx_not_a_500(
    api: ApiServer, text: str
) -> None:
    """Ids and the id cursors of /alerts and /audit: only ASCII digits that fit the
    database's integers; anything else (a superscript two passes str.isdigit but not int, a
    number past 2**63 overflows SQLite) names the problem instead of an internal error."""
    api.plane.record_alert("ops", "2026-01-01", 90, message="Ops at 90%")
    adm = api.client(api.user("adm", "admin"))
    for path in (f"/alerts/{text}/ack", f"/alerts/{text}/mute"):
        r = adm.post(path, json={"until": "2030-01-01"})
        assert r.status_code == 404, (path, r.text)
        assert r.json()["error"]["message"].startswith("no alert")
    for path in ("/alerts", "/audit"):
        r = adm.get(path, params={"cursor": text})
        assert r.status_code == 400, (path, r.text)
        assert r.json()["error"]["field"] == "cursor"


@pytest.mark.parametrize(
    "value", [[1e300, "r"], [10**22, "r"], [-(10**22), "r"], [1, "r", 10**30], [1, "r", 1.5e300]]
)
def test_a_usage_cursor_out_of_range_is_a_400_not_a_500(
    api: ApiServer, value: list[object]
) -> None:
    write_segment(rows_to_table([event_row(event(1))]), segments_dir(api.home), "a")
    cursor = base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")
    r = api.client(api.user("vic", "viewer")).get("/usage", params={"cursor": cursor})
    assert r.status_code == 400, r.text
    assert r.json()["error"] == {
        "type": "bad_request",
        "message": "cursor: not a cursor this API returned",
        "field": "cursor",
    }


def test_boolean_parameters_take_any_case_and_refuse_anything_else(api: ApiServer) -> None:
    """``kpis=True`` (Python's requests sends booleans so) adds the KPIs instead of silently
    leaving them out; a value that is no boolean is a 400 naming it, not read as the default
    (``backtest=nope`` ran the backtest)."""
    viewer = api.client(api.user("vic", "viewer"))
    for text in ("True", "TRUE", "on"):
        r = viewer.get("/spend", params={"kpis": text})
        assert r.status_code == 200 and "kpis" in r.json(), (text, r.text)
    assert "kpis" not in viewer.get("/spend", params={"kpis": "False"}).json()
    for path, name in (("/spend", "kpis"), ("/forecast", "backtest")):
        r = viewer.get(path, params={name: "nope"})
        assert r.status_code == 400, (path, r.text)
        assert r.json()["error"] == {
            "type": "bad_request",
            "message": f"{name}: must be true or false (got 'nope')",
            "field": name,
        }


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/spend", {"org": ""}),
        ("/spend", {"model": ","}),
        ("/spend/top", {"project": ""}),
        ("/usage", {"user": ""}),
        ("/usage", {"status": ""}),
        ("/advice", {"task": ""}),
    ],
)
def test_a_filter_given_without_a_value_is_a_400_not_zero_spend(
    api: ApiServer, path: str, params: dict[str, str]
) -> None:
    """``?org=`` (an empty form field, an unset shell variable) matched no event, so the
    answer said $0 / no rows; it names the parameter instead."""
    write_segment(rows_to_table([event_row(event(1))]), segments_dir(api.home), "a")
    viewer = api.client(api.user("vic", "viewer"))
    r = viewer.get(path, params=params)
    assert r.status_code == 400, r.text
    (name,) = params
    assert r.json()["error"]["field"] == name
    assert r.json()["error"]["message"].startswith(f"{name}: no value given")


def test_a_bad_body_field_is_a_422_naming_it_as_for_every_other_body(api: ApiServer) -> None:
    """Body fields, as POST /keys already does: a mute's or a token's time that is no date
    is a 422 (it was a 400, the status of a bad query parameter), a mute with a field it
    does not take is refused rather than ignored, and a PUT whose body names another key
    than its path says which field."""
    api.plane.record_alert("ops", "2026-01-01", 90, message="Ops at 90%")
    (alert,) = api.plane.alerts()
    adm = api.client(api.user("adm", "admin"))
    r = adm.post(f"/alerts/{alert.id}/mute", json={"until": "next week"})
    assert (r.status_code, r.json()["error"]["field"]) == (422, "until"), r.text
    r = adm.post(f"/alerts/{alert.id}/mute", json={"until": "2030-01-01", "reason": "noisy"})
    assert (r.status_code, r.json()["error"]["field"]) == (422, "reason"), r.text
    assert not api.plane.mutes()
    r = adm.post("/tokens", json={"user": "adm", "expires_at": "tomorrow"})
    assert (r.status_code, r.json()["error"]["field"]) == (422, "expires_at"), r.text
    r = adm.put("/routing-policies/chat", json={"task": "summarize", "primary_model": "gpt-4o"})
    assert (r.status_code, r.json()["error"]["field"]) == (422, "task"), r.text


def test_a_query_parameter_the_operation_does_not_take_is_a_400_naming_it(
    api: ApiServer,
) -> None:
    """``?grup_by=day`` answered the ungrouped totals, ``/advice?range=7d`` advice over its
    own 30 days, as if the parameter had been honoured; only the parameters the OpenAPI
    document lists for the operation are taken."""
    viewer = api.client(api.user("vic", "viewer"))
    r = viewer.get("/spend", params={"grup_by": "day"})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["field"] == "grup_by"
    assert error["message"].startswith("grup_by: not a parameter of GET /spend (it takes start,")
    assert "group_by" in error["message"]
    r = viewer.get("/advice", params={"range": "7d"})
    assert (r.status_code, r.json()["error"]["field"]) == (400, "range"), r.text
    r = viewer.get("/budgets", params={"limit": "5"})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["message"] == "limit: not a parameter of GET /budgets (it takes none)"
    doc = viewer.get("/openapi.json").json()
    spend = {p["name"] for p in doc["paths"]["/spend"]["get"]["parameters"]}
    assert {"group_by", "kpis", "range", "org"} <= spend


def test_a_setting_put_answers_as_its_get_does_and_checks_the_key(api: ApiServer) -> None:
    """PUT /settings/{key} answered without ``stored``, which its documented schema (that
    of GET) names; a body naming another key than the path was stored under the path's."""
    adm = api.client(api.user("adm", "admin"))
    put = adm.put("/settings/retention_days", json={"value": 90})
    assert put.status_code == 200, put.text
    got = adm.get("/settings/retention_days")
    assert put.json() == got.json() == {"key": "retention_days", "value": 90, "stored": True}
    assert put.headers["etag"] == got.headers["etag"]
    r = adm.put(
        "/settings/timezone",
        json={"key": "currency", "value": "Europe/Paris"},
        headers={"If-Match": "*"},
    )
    assert (r.status_code, r.json()["error"]["field"]) == (422, "key"), r.text
    assert api.plane.get_setting("timezone") == "UTC"  # unchanged


def test_unset_alert_settings_read_as_the_values_the_worker_uses(api: ApiServer) -> None:
    """Nothing stored: the scan interval and the thresholds read as those in force (the
    worker's), not null; once stored, as stored."""
    from core.worker import load_settings

    adm = api.client(api.user("adm", "admin"))
    in_force = load_settings(api.plane)
    listed = {s["key"]: s for s in adm.get("/settings").json()["data"]}
    for key, value in (
        ("alert_scan_interval_s", in_force.interval_s),
        ("alert_thresholds", dict(in_force.thresholds)),
    ):
        one = adm.get(f"/settings/{key}").json()
        assert one == listed[key] == {"key": key, "value": value, "stored": False}, key
    r = adm.put("/settings/alert_scan_interval_s", json={"value": 60})
    assert r.status_code == 200, r.text
    got = adm.get("/settings/alert_scan_interval_s").json()
    assert got == {"key": "alert_scan_interval_s", "value": 60, "stored": True}
    assert load_settings(api.plane).interval_s == 60


@pytest.mark.parametrize(
    ("name", "value"), [("kind", "weather"), ("severity", "loud"), ("state", "closed")]
)
def test_a_bad_alerts_filter_is_a_documented_400_naming_it(
    api: ApiServer, name: str, value: str
) -> None:
    """GET /alerts answered a bad kind, severity or state with a 422, which its OpenAPI
    entry does not list (a GET lists 400 for a bad parameter, as every other one answers)."""
    viewer = api.client(api.user("vic", "viewer"))
    r = viewer.get("/alerts", params={name: value})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["field"] == name
    assert r.json()["error"]["message"].startswith(f"{name}: must be one of ")
    assert (
        str(r.status_code)
        in viewer.get("/openapi.json").json()["paths"]["/alerts"]["get"]["responses"]
    )


@pytest.mark.parametrize(
    ("method", "path", "body", "name"),
    [
        ("POST", "/budgets", {**BUDGET, "limit_tokens": 2**63}, "limit_tokens"),
        ("PUT", "/rate-limits/r", {"limit": 5, "window_s": 2**63}, "window_s"),
        ("PUT", "/cache-settings/chat", {"ttl_s": 2**64 - 1}, "ttl_s"),
        ("PUT", "/event-thresholds/trader", {"batch_size": 2**63}, "batch_size"),
        (
            "PUT",
            "/routing-policies/chat",
            {"primary_model": "gpt-4o", "max_tokens": 2**63},
            "max_tokens",
        ),
        ("POST", "/keys", {"name": "k1", "rpm": 2**63}, "rpm"),
    ],
)
def test_a_whole_number_past_int64_is_a_422_and_writes_nothing(
    api: ApiServer, method: str, path: str, body: dict[str, object], name: str
) -> None:
    """Integers are stored as BIGINT: one past 2**63 - 1 passed validation and failed the
    insert as a 500; POST /keys had already stored the key, so it was left without its
    rate limit and its name could never be used again."""
    eng = api.client(api.user("eng", "engineer"))
    version = api.plane.version()
    r = eng.request(method, path, json=body)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == name
    assert r.json()["error"]["message"].startswith(f"{name}: must be <= 9223372036854775807")
    assert api.plane.version() == version  # nothing written
    assert api.plane.virtual_key("k1") is None


def test_prices_of_a_model_alias_are_its_models_not_none(api: ApiServer) -> None:
    """The router prices a dated snapshot (gpt-4o-2024-08-06, as providers report it in
    usage) as its catalog model; /prices?model= of it answered no rows beside 'unknown
    models are never $0', as if it were unpriced."""
    viewer = api.client(api.user("vic", "viewer"))
    plain = viewer.get("/prices", params={"model": "gpt-4o"}).json()["data"]
    assert plain
    for alias in ("gpt-4o-2024-08-06", "GPT-4O-2024-08-06"):
        assert viewer.get("/prices", params={"model": alias}).json()["data"] == plain
    assert viewer.get("/prices", params={"model": "no-such-model"}).json()["data"] == []
