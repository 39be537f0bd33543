"""Playground: estimates before sending, real Router runs (local SmolLM2 streamed, dryrun side
by side) that reach the usage log at the cost shown, budgets, history, errors, keys."""

from __future__ import annotations

import socket
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from console.frames.budgets import cents
from console.frames.playground import fmt_usd
from console.queries.playground import LOCAL_MODEL
from core.control import SYSTEM, Budget, ControlPlane, PriceOverride
from core.pricing import load_catalog
from core.types import Message
from core.usage import Filters, Reader
from tests.console_support import ADMIN_PASSWORD, app, choose, make_users
from tests.servers.ports import free_port

PAGE = "app_pages/playground.py"


@pytest.fixture
def home(costline_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("COSTLINE_ADMIN_PASSWORD", ADMIN_PASSWORD)
    make_users(costline_home)
    return costline_home


def playground(role: str = "engineer"):  # type: ignore[no-untyped-def]
    at = app(role).run()
    at.switch_page(PAGE).run()
    assert not at.exception
    return at


def metrics(at) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    return [(m.label, m.value) for m in at.metric]


def table(at, column: str):  # type: ignore[no-untyped-def]
    """The first table with ``column`` (estimates: 'max cost', budgets: 'remaining',
    history: 'request id', providers: 'API key')."""
    found = [d.value for d in at.dataframe if column in d.value.columns]
    assert found, f"no table with {column!r}"
    return found[0]


def has_table(at, column: str) -> bool:  # type: ignore[no-untyped-def]
    return any(column in d.value.columns for d in at.dataframe)


def logged(home: Path, request_id: str):  # type: ignore[no-untyped-def]
    with Reader(home) as reader:
        events = [
            e for e in reader.fetch(Filters(source="playground")) if e.request_id == request_id
        ]
    assert len(events) == 1, request_id
    return events[0]


def test_local_smollm2_streams_and_the_requests_log_has_the_same_cost(home: Path) -> None:
    with ControlPlane() as plane:  # a self-hosted cost per token, so the cost is not $0
        plane.upsert_price_override(
            PriceOverride(
                "smollm2-135m-instruct",
                "local",
                load_catalog().lookup("smollm2-135m-instruct").effective_from + timedelta(days=1),
                input=Decimal("0.05"),
                output=Decimal("0.2"),
                note="GPU hours",
            ),
            SYSTEM,
        )
    at = playground()
    at.text_area(key="pg_prompt").input("Name three colours.")
    at.multiselect(key="pg_models").set_value([LOCAL_MODEL])
    at.number_input(key="pg_max_tokens").set_value(16)
    at.button(key="pg_send").click().run()
    assert not at.exception and not at.error
    result = at.session_state["pg_last"][0]
    streamed = at.chat_message[0].markdown[0].value
    assert streamed and streamed == result.text
    shown = dict(metrics(at))
    event = logged(home, result.request_id)
    assert event.cost_picousd > 0 and shown["Cost"] == fmt_usd(event.cost_picousd)
    assert (event.model, event.provider, event.user) == (
        "smollm2-135m-instruct",
        "local",
        "engineer",
    )
    assert event.ttft_ms is not None and shown["Time to first token"] != "–"  # the stream path
    assert shown["Output tokens"] == f"{event.output_tokens:,}"
    history = table(at, "request id")
    assert list(history["request id"]) == [result.request_id]
    assert list(history["cost"]) == [shown["Cost"]]
    at.switch_page("app_pages/requests.py").run()  # the Requests page, same session
    at.text_input(key="rq_lookup").input(result.request_id).run()
    assert not at.exception
    usd = Decimal(event.cost_picousd).scaleb(-12)  # the detail shows exact dollars
    assert f'"cost_usd": "{usd:f}"' in at.json[0].value


def test_side_by_side_shows_a_column_per_model_with_cost_and_latency(home: Path) -> None:
    at = playground()
    at.text_area(key="pg_prompt").input("Compare these models")
    at.multiselect(key="pg_models").set_value(["dryrun-small", "dryrun-large"])
    at.button(key="pg_send").click().run()
    assert not at.exception and not at.error
    results = at.session_state["pg_last"]
    assert [r.requested for r in results] == ["dryrun-small", "dryrun-large"]
    columns = [c for c in at.columns if c.subheader and c.metric]
    assert [c.subheader[0].value for c in columns] == ["dryrun-small", "dryrun-large"]
    for col, result in zip(columns, results, strict=True):
        shown = {m.label: m.value for m in col.metric}
        assert shown["Cost"] == fmt_usd(logged(home, result.request_id).cost_picousd)
        assert shown["Latency"].endswith(" ms")
    assert results[0].cost != results[1].cost  # priced at each model's own rates


def test_side_by_side_streams_each_request_in_its_own_order_at_once(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """stream_many, under the page's columns: both requests' chunks arrive before either
    ends (a thread each), each request's text in order, then its Completion."""
    from console.commands import playground as commands
    from core.control import Actor
    from core.router import Router
    from core.types import ChatRequest, Completion

    monkeypatch.setenv("COSTLINE_DRYRUN_MS_PER_TOKEN", "20")
    reqs = [
        ChatRequest(messages=[Message("user", "side by side")], model=m, source="playground")
        for m in ("dryrun-small", "dryrun-large")
    ]
    pieces = []
    with Router() as router:
        for batch in commands.stream_many(router, reqs, Actor("engineer", "engineer")):
            assert batch
            pieces += batch
    ends = [
        next(n for n, (i, p) in enumerate(pieces) if i == k and not isinstance(p, str))
        for k in (0, 1)
    ]
    firsts = [next(n for n, (i, _) in enumerate(pieces) if i == k) for k in (0, 1)]
    assert max(firsts) < min(ends)  # both were streaming before either finished
    for k in (0, 1):
        mine = [p for i, p in pieces if i == k]
        done = mine[-1]
        assert isinstance(done, Completion) and "".join(mine[:-1]) == done.text
        assert len(mine) > 10  # chunk by chunk


def test_estimates_are_the_hand_counted_prompt_and_its_max_cost_and_budgets_show_headroom(
    home: Path,
) -> None:
    with ControlPlane() as plane:
        plane.upsert_budget(
            Budget(
                id="acme-month",
                name="Acme monthly",
                scope="org",
                scope_value="acme",
                limit_usd=Decimal("5"),
            ),
            SYSTEM,
        )
    at = playground()
    at.text_area(key="pg_system").input("You are terse.")
    at.button(key="pg_add_turn").click().run()
    at.text_area(key="pg_turn_text_0").input("What is a token?")
    at.text_area(key="pg_prompt").input("And how are they priced?")
    at.multiselect(key="pg_models").set_value(["dryrun-small", "dryrun-large"])
    at.number_input(key="pg_max_tokens").set_value(300)
    choose(at, "pg_org", "acme")  # picked from the log, or typed (acme never called)
    at.run()
    assert not at.exception
    # cl100k: 3 reply-priming tokens, then per message 3 framing + role (1) + content:
    # "You are terse." 4, "What is a token?" 5, "And how are they priced?" 6 -> 3+8+9+10 = 30.
    # max cost = 30 input + 300 output tokens: dryrun-small $0.15/$0.60 per 1M ->
    # 4,500,000 + 180,000,000 pUSD; dryrun-large $3/$15 per 1M -> 90,000,000 + 4,500,000,000.
    estimates = table(at, "max cost")
    rows = zip(estimates["model"], estimates["prompt tokens"], estimates["max cost"], strict=True)
    assert {model: (tokens, shown) for model, tokens, shown in rows} == {
        "dryrun-small": (30, fmt_usd(184_500_000)),
        "dryrun-large": (30, fmt_usd(4_590_000_000)),
    }
    budgets = table(at, "remaining")
    assert list(budgets["budget"]) == ["Acme monthly", "Acme monthly"]
    assert list(budgets["remaining"]) == ["$5.00", "$5.00"]
    at.multiselect(key="pg_models").set_value(["dryrun-small"])
    at.button(key="pg_send").click().run()
    spent = at.session_state["pg_last"][0].cost
    assert spent > 0 and not at.error
    at.run()
    assert list(table(at, "remaining")["spent"]) == [cents(spent)]  # from the usage log


def test_org_project_and_task_are_picked_from_the_log(home: Path) -> None:
    from tests.console_support import routed_calls

    routed_calls(home, n=4)
    at = playground()
    for dim, seen in (("org", "org1"), ("project", "proj2"), ("task", "summarise")):
        assert seen in at.selectbox(key=f"pg_{dim}").options, dim
    choose(at, "pg_org", "org1")
    choose(at, "pg_task", "new-task")  # a value never logged can still be typed
    at.text_area(key="pg_prompt").input("hello")
    at.button(key="pg_send").click().run()
    assert not at.exception and not at.error
    event = logged(home, at.session_state["pg_last"][0].request_id)
    assert (event.org, event.task, event.project) == ("org1", "new-task", None)


def test_cache_is_used_unless_bypassed(home: Path) -> None:
    at = playground()
    at.text_area(key="pg_prompt").input("Same question twice")
    at.button(key="pg_send").click().run()
    at.button(key="pg_send").click().run()
    assert dict(metrics(at))["Cache hit"] == "yes" and dict(metrics(at))["Cost"] == "$0.00"
    at.toggle(key="pg_bypass").set_value(True)
    at.button(key="pg_send").click().run()
    assert not at.exception
    assert dict(metrics(at))["Cache hit"] == "no" and at.session_state["pg_last"][0].cost > 0


def current_tz() -> str:
    with ControlPlane() as plane:
        return str(plane.get_setting("timezone") or "UTC")


def test_history_run_loads_back_into_the_form(home: Path) -> None:
    at = playground()
    at.text_area(key="pg_system").input("Be brief.")
    at.text_area(key="pg_prompt").input("First prompt")
    at.number_input(key="pg_max_tokens").set_value(64)
    at.button(key="pg_send").click().run()
    rid = at.session_state["pg_last"][0].request_id
    at.text_area(key="pg_prompt").input("Something else")
    at.number_input(key="pg_max_tokens").set_value(500).run()
    at.selectbox(key="pg_hist_pick").set_value(rid)
    at.button(key="pg_hist_load").click().run()
    assert not at.exception
    assert at.text_area(key="pg_prompt").value == "First prompt"
    assert at.text_area(key="pg_system").value == "Be brief."
    assert at.number_input(key="pg_max_tokens").value == 64
    history = table(at, "request id")
    event = logged(home, rid)
    zone = ZoneInfo(current_tz())
    assert list(history["time"]) == [f"{event.ts.astimezone(zone):%Y-%m-%d %H:%M:%S}"]
    assert list(history["latency ms"]) == [round(event.latency_ms)]  # whole ms, no '.0'
    at = playground("admin")  # another user sees none of it
    assert has_table(at, "max cost") and not has_table(at, "request id")


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ({"pg_prompt": "  "}, "The prompt is empty"),
        ({"pg_max_tokens": 0}, "Max tokens must be at least 1 (got 0)"),
        ({"pg_max_tokens": -5}, "Max tokens must be at least 1 (got -5)"),
        ({"pg_other": "no-such-model-x"}, "unknown model 'no-such-model-x'"),
        ({"pg_models": ["gpt-4o-mini"]}, "no API key for openai"),
        ({"pg_models": []}, "Pick at least one model"),
    ],
    ids=[
        "empty-prompt",
        "zero-max-tokens",
        "negative-max-tokens",
        "unknown-model",
        "no-key",
        "no-model",
    ],
)
def test_invalid_inputs_show_clear_errors_and_call_nothing(home: Path, setup, message) -> None:  # type: ignore[no-untyped-def]
    at = playground()
    at.text_area(key="pg_prompt").input("A fine prompt")
    for key, value in setup.items():
        widget = {
            "pg_prompt": at.text_area,
            "pg_other": at.text_input,
            "pg_max_tokens": at.number_input,
            "pg_models": at.multiselect,
        }[key](key=key)
        widget.set_value(value)
    at.button(key="pg_send").click().run()
    assert not at.exception
    assert any(message in e.value for e in at.error), [e.value for e in at.error]
    assert "pg_last" not in at.session_state
    with Reader(home) as reader:
        assert reader.count() == 0


def test_keys_from_secrets_unflag_a_provider_and_show_masked(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with _Listening() as live:  # OpenAI's server "answers" (no network in tests)
        monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{live.port}/v1")
        at = app("engineer")
        at.secrets["OPENAI_API_KEY"] = "sk-test-abcdef0123456789"
        at.run().switch_page(PAGE).run()
        at.multiselect(key="pg_models").set_value(["gpt-4o-mini"]).run()
    assert not at.exception
    assert list(table(at, "max cost")["status"]) == ["ready"]
    providers = table(at, "API key")
    row = providers[providers["provider"] == "openai"].iloc[0]
    assert (row["API key"], row["key from"], row["status"]) == ("sk-…6789", "secrets", "ready")
    assert not any("abcdef0123456789" in str(d.value.to_dict()) for d in at.dataframe)


@pytest.mark.slow  # starts the real llama.cpp server (shared by the session)
def test_a_llamacpp_server_from_secrets_streams_at_the_logged_cost(
    home: Path, llamacpp_url: str
) -> None:
    at = app("engineer")
    at.secrets["providers"] = {"llamacpp": {"wire": "openai", "base_url": llamacpp_url}}
    at.run().switch_page(PAGE).run()
    at.text_area(key="pg_prompt").input("Name a colour.")
    at.multiselect(key="pg_models").set_value([])
    at.text_input(key="pg_other").input("llamacpp/smollm2-135m-instruct")
    at.number_input(key="pg_max_tokens").set_value(12)
    at.button(key="pg_send").click().run()
    assert not at.exception and not at.error
    result = at.session_state["pg_last"][0]
    assert at.chat_message[0].markdown[0].value == result.text and result.text.strip()
    event = logged(home, result.request_id)
    assert (event.provider, event.model) == ("llamacpp", "smollm2-135m-instruct")
    assert dict(metrics(at))["Cost"] == fmt_usd(event.cost_picousd) and event.ttft_ms is not None


def test_sending_a_prompt_is_checked_against_the_stored_role(home: Path) -> None:
    """Hiding the page is not the check: the functions that send re-read the user's role."""
    from console.commands import playground as commands
    from core.control import Actor
    from core.errors import PermissionDenied
    from core.router import Router
    from core.types import ChatRequest

    req = ChatRequest(messages=[Message("user", "hi")], model="dryrun-small", source="playground")
    forged = (Actor("viewer", "viewer"), Actor("viewer", "engineer"), Actor("ghost", "engineer"))
    with Router() as router:
        for actor in forged:
            with pytest.raises(PermissionDenied, match="playground"):
                commands.run_many(router, [req], actor)
            with pytest.raises(PermissionDenied, match="playground"):
                list(commands.stream_text(router, req, {}, actor))
            with pytest.raises(PermissionDenied, match="playground"):
                list(commands.stream_many(router, [req, req], actor))
        engineer = Actor("engineer", "engineer")
        [done] = commands.run_many(router, [req], engineer)
        assert not isinstance(done, Exception) and done.text
        with ControlPlane(f"sqlite:///{home / 'control.db'}") as plane:
            plane.set_role("engineer", "viewer", SYSTEM)  # demoted while signed in
        with pytest.raises(PermissionDenied, match=r"'engineer' \(viewer\) may not use"):
            list(commands.stream_text(router, req, {}, engineer))
    with Reader(home) as reader:
        assert [e.request_id for e in reader.fetch(Filters(source="playground"))] == [
            req.request_id
        ]  # only the engineer's one call was sent and logged


def test_model_picker_puts_usable_models_first_without_select_all(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-key")
    with _Listening() as live:  # the keyed provider's server answers
        monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{live.port}/v1")
        at = playground()
    picker = at.multiselect(key="pg_models")
    assert picker.proto.select_all == 0
    options = list(picker.options)
    cat = load_catalog()
    providers = [cat.provider_of(o.split(" ⚠")[0]) for o in options]
    usable = [p for o, p in zip(options, providers, strict=True) if "⚠" not in o]
    unusable = [p for o, p in zip(options, providers, strict=True) if "⚠" in o]
    assert options.index(next(o for o in options if "⚠" in o)) == len(usable)
    assert usable[0] == "dryrun" and "local" in usable and "openai" in usable
    assert usable.index("openai") > max(i for i, p in enumerate(usable) if p == "local")
    assert "openai" not in unusable and "anthropic" in unusable


def test_an_unreachable_provider_is_flagged_before_sending(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = free_port()  # a port nothing listens on
    monkeypatch.setenv("LLAMACPP_BASE_URL", f"http://127.0.0.1:{dead}/v1")
    at = playground()
    at.text_input(key="pg_other").input("llamacpp/smollm2-135m-instruct").run()
    warnings = [w.value for w in at.warning]
    assert any(f"127.0.0.1:{dead}/v1 is not answering" in w for w in warnings), warnings
    with _Listening() as live:
        monkeypatch.setenv("LLAMACPP_BASE_URL", f"http://127.0.0.1:{live.port}/v1")
        at = playground()
        at.text_input(key="pg_other").input("llamacpp/smollm2-135m-instruct").run()
        assert not [w.value for w in at.warning if "not answering" in w.value]


class _Listening:
    """A loopback socket that accepts connections (a provider server that is up)."""

    def __enter__(self) -> _Listening:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = int(self.sock.getsockname()[1])
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()


def test_history_marks_an_unpriced_call_unpriced_not_free(tmp_path: Path) -> None:
    """The Playground's history read an unpriced call's cost as $0.00, as a free cache hit;
    a billed one reads its exact cost."""
    from console.frames.playground import history_frame
    from console.queries.playground import HISTORY_COLUMNS
    from core import clock
    from core.usage import UsageEvent, UsageLog

    log = UsageLog(tmp_path)
    for i, (rid, cost, unpriced, hit) in enumerate(
        (("tiny", 400_000, False, False), ("hit", 0, False, True), ("mystery", 0, True, False))
    ):
        log.append(
            UsageEvent(
                request_id=rid,
                ts=clock.now() - timedelta(minutes=i),
                user="engineer",
                provider="local",
                model="dryrun-small" if not unpriced else "mystery",
                cost_picousd=cost,
                unpriced=unpriced,
                cache_hit=hit,
                source="playground",
            )
        )
    log.close()
    with Reader(tmp_path) as reader:
        runs = reader.events(Filters(source="playground", user="engineer"), HISTORY_COLUMNS)
    shown = history_frame(runs, "UTC")
    cost = dict(zip(shown["request id"], shown["cost"], strict=True))
    assert cost == {"tiny": "$0.0000004", "hit": "$0.00", "mystery": "unpriced"}, cost
