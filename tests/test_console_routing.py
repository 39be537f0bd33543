"""Routing & Sampling page: policy, sampling, cache and rate-limit editors (errors next to the
field, nothing stored), viewers read only (and refused by core), sampling savings and provider
health that reconcile with the usage log."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from console.commands import routing as commands
from console.queries.routing import sampling_savings
from core import clock
from core.control import (
    SYSTEM,
    Actor,
    CacheSetting,
    ControlPlane,
    RateLimit,
    RoutingPolicy,
    SamplingStrategy,
)
from core.errors import PermissionDenied
from core.sampling import SamplingConfig
from core.usage import Filters, Reader, UsageEvent, UsageLog
from tests.console_support import app, choose

PAGE = "app_pages/routing.py"
VIEWER = Actor("viewer", "viewer")


@pytest.fixture
def home(console_home: Path) -> Path:
    return console_home


def page(role: str) -> Any:
    at = app(role).run()
    at.switch_page(PAGE).run()
    assert not at.exception
    return at


def fill(at: Any, prefix: str, **values: Any) -> None:
    for field, value in values.items():
        key = f"{prefix}_{field}"
        for kind in ("text_input", "selectbox", "multiselect", "number_input", "checkbox"):
            found = [w for w in getattr(at, kind) if w.key == key]
            if found and kind == "selectbox" and isinstance(value, str):
                choose(at, key, value)  # pickers allow a typed value
                break
            if found:
                found[0].set_value(value)
                break
        else:
            raise KeyError(key)


def save(at: Any, form: str) -> Any:
    at.button(key=f"FormSubmitter:{form}-Save").click().run()
    assert not at.exception
    return at


def error_after(at: Any, key: str) -> str | None:
    nodes = [n for n in at.main if not hasattr(n, "children")]
    index = next(i for i, n in enumerate(nodes) if getattr(n, "key", None) == key)
    follower = nodes[index + 1] if index + 1 < len(nodes) else None
    return follower.value if getattr(follower, "type", "") == "error" else None


def version() -> int:
    with ControlPlane() as plane:
        return plane.version()


def test_viewer_reads_every_table_but_gets_no_edit_controls(home: Path) -> None:
    with ControlPlane() as plane:
        plane.upsert_policy(RoutingPolicy("chat", "dryrun-small", ("dryrun-large",)), SYSTEM)
        plane.upsert_sampling(SamplingStrategy("chat", "periodic", {"interval_s": 60}), SYSTEM)
    at = page("viewer")
    assert not at.get("form") and not at.text_input and not at.number_input
    assert [b.key for b in at.button] == ["sign_out"]
    assert {
        "Editing policies needs the engineer role.",
        "Editing sampling strategies needs the engineer role.",
    } <= {c.value for c in at.caption}
    assert at.dataframe[0].value["primary"].tolist() == ["dryrun-small"]
    before = version()
    writes = [
        lambda a: commands.save_policy(a, {"task": "t", "primary_model": "dryrun-small"}, new=True),
        lambda a: commands.delete_policy(a, "chat"),
        lambda a: commands.save_sampling(
            a, {"key": "k", "strategy": "always", "batch_size": 1, "batch_timeout_s": 1.0}, new=True
        ),
        lambda a: commands.delete_sampling(a, "chat"),
        lambda a: commands.save_cache_setting(a, {"task": "chat", "ttl_s": 60}),
        lambda a: commands.save_rate_limit(
            a,
            {
                "id": "r",
                "scope": "user",
                "metric": "requests",
                "limit": 5,
                "window_s": 60,
                "algorithm": "token_bucket",
            },
        ),
    ]
    for write in writes:
        for actor in (VIEWER, Actor("viewer", "engineer")):
            with pytest.raises(PermissionDenied):
                write(actor)
    assert version() == before


def test_engineer_adds_a_policy_and_it_is_stored_and_audited(home: Path) -> None:
    at = page("engineer")
    fill(
        at,
        "rt_pol_new",
        task="summarise",
        primary_model="dryrun-large",
        fallbacks=["dryrun-medium", "dryrun-small"],
        degrade_to="dryrun-small",
        strategy="cheapest",
        criticality="high",
        cache_ttl_s="600",
        max_tokens="300",
        personalised=True,
        prompt_cache="1h",
    )
    save(at, "rt_pol_form_new")
    assert [s.value for s in at.success] == ["Policy saved."]
    with ControlPlane() as plane:
        (p,) = plane.policies()
        entry = plane.audit(limit=1)[0]
    assert (
        p.task,
        p.primary_model,
        p.fallbacks,
        p.degrade_to,
        p.strategy,
        p.criticality,
        p.cache_ttl_s,
        p.max_tokens,
        p.personalised,
        p.prompt_cache,
    ) == (
        "summarise",
        "dryrun-large",
        ("dryrun-medium", "dryrun-small"),
        "dryrun-small",
        "cheapest",
        "high",
        600,
        300,
        True,
        "1h",
    )
    assert (entry.actor, entry.action) == ("engineer", "routing_policy.create")
    assert at.selectbox(key="rt_pol_pick").value == "summarise"


@pytest.mark.parametrize("field", ["primary_model", "fallbacks", "degrade_to"])
def test_an_unknown_model_shows_under_its_field_and_nothing_is_stored(
    home: Path, field: str
) -> None:
    before = version()
    at = page("engineer")
    values = {"task": "chat", "primary_model": "dryrun-small", "fallbacks": ["dryrun-large"]}
    typed = ["gpt-9-imaginary"] if field == "fallbacks" else "gpt-9-imaginary"
    fill(at, "rt_pol_new", **{**values, field: typed})
    save(at, "rt_pol_form_new")
    shown = error_after(at, f"rt_pol_new_{field}")
    assert shown is not None and "'gpt-9-imaginary' is not a model in the price catalog" in shown
    assert not at.success and version() == before


def test_sampling_editor_shows_each_strategys_own_knobs_and_validates_them(home: Path) -> None:
    at = page("engineer")
    keys = {w.key for w in at.text_input}
    assert "rt_smp_new_p_interval_s" not in keys  # 'always' has no knobs
    at.selectbox(key="rt_smp_new_strategy").set_value("periodic").run()
    assert "rt_smp_new_p_interval_s" in {w.key for w in at.text_input}
    at.selectbox(key="rt_smp_new_strategy").set_value("adaptive").run()
    assert {
        "rt_smp_new_p_base_interval_s",
        "rt_smp_new_p_min_interval_s",
        "rt_smp_new_p_max_interval_s",
    } <= {w.key for w in at.text_input}
    before = version()
    fill(
        at,
        "rt_smp_new",
        key="agent",
        p_base_interval_s="120",
        p_min_interval_s="300",
        p_max_interval_s="60",
    )
    save(at, "rt_smp_form_new")
    shown = error_after(at, "rt_smp_new_p_max_interval_s")
    assert shown is not None and "must be >= params.min_interval_s" in shown
    fill(at, "rt_smp_new", p_base_interval_s="", p_max_interval_s="600")
    save(at, "rt_smp_form_new")
    assert "required by the adaptive strategy" in (
        error_after(at, "rt_smp_new_p_base_interval_s") or ""
    )
    assert version() == before
    fill(
        at,
        "rt_smp_new",
        p_base_interval_s="120",
        min_interval_s=10.0,
        batch_size=5,
        batch_timeout_s=60.0,
    )
    save(at, "rt_smp_form_new")
    assert [s.value for s in at.success] == ["Sampling strategy saved."]
    with ControlPlane() as plane:
        (s,) = plane.sampling()
    assert (s.key, s.strategy, dict(s.params), s.min_interval_s, s.batch_size) == (
        "agent",
        "adaptive",
        {"base_interval_s": 120.0, "min_interval_s": 300.0, "max_interval_s": 600.0},
        10.0,
        5,
    )
    assert SamplingConfig.from_strategy(s).base_interval_s == 120.0  # routers can use it


def test_sampling_savings_are_the_skipped_events_of_the_log(home: Path) -> None:
    with ControlPlane() as plane:
        plane.upsert_sampling(SamplingStrategy("regime", "periodic", {"interval_s": 300}), SYSTEM)
    now = clock.now()
    with UsageLog(home) as log:
        for i in range(9):
            skipped = i % 3 != 0
            log.append(
                UsageEvent(
                    request_id=f"s{i}",
                    ts=now - timedelta(minutes=i),
                    task="regime",
                    provider="dryrun",
                    model="dryrun-small",
                    status="skipped" if skipped else "ok",
                    ai_called=not skipped,
                    cost_picousd=0 if skipped else 2_500_000_000_000,
                    saved_picousd=2_500_000_000_000 if skipped else 0,
                    source="test",
                )
            )
    at = page("viewer")
    table = next(d.value for d in at.dataframe if "agent / task" in d.value.columns)
    row = table[table["agent / task"] == "regime"].iloc[0]
    assert (row["events"], row["AI calls"], row["calls saved"]) == (9, 3, 6)
    with Reader(home) as r:
        saved = r.totals(Filters(task="regime", status="skipped"))["saved_picousd"]
    assert saved == 15 * 10**12 and row["saved"] == "$15.00"
    savings = sampling_savings(str(home), "x", now - timedelta(days=1), now + timedelta(minutes=1))
    assert int(savings.set_index("key").loc["regime", "saved_picousd"]) == saved


def test_provider_health_matches_the_log(home: Path) -> None:
    at = page("viewer")
    at.button_group(key="rt_health_range").set_value("Selected range").run()
    assert not at.exception
    table = at.dataframe[-1].value
    scope = at.session_state["selection"].scope
    with Reader(home) as r:
        ev = r.events(Filters(start=scope.start, end=scope.end, model="dryrun-large"))
    ev = ev[ev["ai_called"] & ~ev["cache_hit"] & ev["status"].isin(["ok", "error"])]
    row = table[table["model"] == "dryrun-large"].iloc[0]
    ok = ev[ev["status"] == "ok"]["latency_ms"].to_numpy()
    assert row["attempts"] == len(ev) and row["errors"] == int((ev["status"] == "error").sum())
    assert row["error rate"] == pytest.approx(row["errors"] / len(ev))
    assert row["latency p50 (ms)"] == round(float(np.percentile(ok, 50)))
    assert row["latency p95 (ms)"] == round(float(np.percentile(ok, 95)))
    assert row["errors"] > 0 and set(table["breaker (this console)"]) <= {
        "n/a",
        "closed",
        "open",
        "half_open",
    }


def test_cache_setting_and_rate_limit_editors(home: Path) -> None:
    at = page("engineer")
    fill(at, "rt_cache_new", task="chat", ttl_s=120, semantic_threshold="0.95")
    save(at, "rt_cache_form_new")
    before = version()
    fill(
        at,
        "rt_rl_new",
        id="per-user",
        scope="user",
        metric="requests",
        limit=0,
        window_s=60,
        burst="",
    )
    save(at, "rt_rl_form_new")
    shown = error_after(at, "rt_rl_new_enabled")  # the errors sit under the compact row
    assert shown is not None and shown.startswith("limit: must be a whole number >= 1")
    assert version() == before
    fill(at, "rt_rl_new", limit=30, burst="40")
    save(at, "rt_rl_form_new")
    with ControlPlane() as plane:
        (c,) = plane.cache_settings()
        (r,) = plane.rate_limits()
    assert (c.task, c.ttl_s, c.semantic_threshold) == ("chat", 120, 0.95)
    assert (r.id, r.scope, r.limit, r.window_s, r.burst) == ("per-user", "user", 30, 60, 40)


EDITORS = {  # prefix: (entity's name, how to store one, how to list them, the flash)
    "rt_pol": (
        "chat",
        lambda p: p.upsert_policy(RoutingPolicy("chat", "dryrun-small"), SYSTEM),
        lambda p: p.policies(),
        "Policy for chat deleted.",
    ),
    "rt_smp": (
        "chat",
        lambda p: p.upsert_sampling(
            SamplingStrategy("chat", "periodic", {"interval_s": 60}), SYSTEM
        ),
        lambda p: p.sampling(),
        "Strategy for chat deleted.",
    ),
    "rt_cache": (
        "chat",
        lambda p: p.upsert_cache_setting(CacheSetting("chat", 120), SYSTEM),
        lambda p: p.cache_settings(),
        "Cache setting for chat deleted.",
    ),
    "rt_rl": (
        "per-user",
        lambda p: p.upsert_rate_limit(RateLimit("per-user", limit=30), SYSTEM),
        lambda p: p.rate_limits(),
        "Rate limit per-user deleted.",
    ),
}


@pytest.mark.parametrize("prefix", list(EDITORS))
def test_every_routing_delete_asks_first_and_cancel_keeps_the_entry(
    home: Path, prefix: str
) -> None:
    name, store, listing, done = EDITORS[prefix]
    with ControlPlane() as plane:
        store(plane)
    at = page("engineer")
    at.selectbox(key=f"{prefix}_pick").set_value(name).run()
    at.button(key=f"{prefix}_delete_{name}").click().run()
    assert not at.exception
    assert any(name in w.value and w.value.startswith("Delete") for w in at.warning)
    with ControlPlane() as plane:
        assert len(listing(plane)) == 1  # asked, not deleted
    at.button(key=f"{prefix}_delete_no_{name}").click().run()
    assert not at.warning and not at.exception
    at.button(key=f"{prefix}_delete_{name}").click().run()
    at.button(key=f"{prefix}_delete_yes_{name}").click().run()
    assert not at.exception
    assert [s.value for s in at.success] == [done]
    assert at.selectbox(key=f"{prefix}_pick").value == "__new__"  # the deleted one is gone
    with ControlPlane() as plane:
        entry = plane.audit(limit=1)[0]
        assert listing(plane) == []
    assert entry.actor == "engineer" and entry.action.endswith(".delete")


def test_saving_an_existing_policy_shows_what_was_stored(home: Path) -> None:
    with ControlPlane() as plane:
        plane.upsert_policy(RoutingPolicy("chat", "dryrun-small"), SYSTEM)
    at = page("engineer")
    at.selectbox(key="rt_pol_pick").set_value("chat").run()
    fill(at, "rt_pol_chat", fallbacks=["dryrun-large", "dryrun-medium"], max_tokens="1_000")
    save(at, "rt_pol_form_chat")
    assert [s.value for s in at.success] == ["Policy saved."]
    assert at.multiselect(key="rt_pol_chat_fallbacks").value == ["dryrun-large", "dryrun-medium"]
    assert at.text_input(key="rt_pol_chat_max_tokens").value == "1000"
    with ControlPlane() as plane:
        (p,) = plane.policies()
    assert (p.fallbacks, p.max_tokens) == (("dryrun-large", "dryrun-medium"), 1000)


def test_models_and_rate_limit_values_are_picked_from_the_catalog_and_the_log(
    home: Path,
) -> None:
    at = page("engineer")
    for field in ("primary_model", "degrade_to"):
        assert {"dryrun-small", "gpt-4o-mini"} <= set(
            at.selectbox(key=f"rt_pol_new_{field}").options
        )
    assert {"org0", "user1"} <= set(at.selectbox(key="rt_rl_new_scope_value").options)


def test_fallbacks_are_picked_from_the_catalog_in_the_order_chosen(home: Path) -> None:
    at = page("engineer")
    picker = at.multiselect(key="rt_pol_new_fallbacks")  # a picker, not comma-separated text
    assert picker.label == "Fallbacks"
    assert {"dryrun-small", "dryrun-large", "gpt-4o-mini"} <= set(picker.options)
    fill(
        at,
        "rt_pol_new",
        task="chat",
        primary_model="dryrun-medium",
        fallbacks=["dryrun-small", "dryrun-large"],  # not the options' order
    )
    save(at, "rt_pol_form_new")
    assert [s.value for s in at.success] == ["Policy saved."]
    with ControlPlane() as plane:
        (p,) = plane.policies()
    assert p.fallbacks == ("dryrun-small", "dryrun-large")
    assert at.multiselect(key="rt_pol_chat_fallbacks").value == ["dryrun-small", "dryrun-large"]
    at.multiselect(key="rt_pol_chat_fallbacks").set_value(["dryrun-large", "dryrun-small"])
    save(at, "rt_pol_form_chat")
    with ControlPlane() as plane:
        assert plane.policies()[0].fallbacks == ("dryrun-large", "dryrun-small")


def test_every_bad_policy_field_is_named_at_once_in_the_forms_words(home: Path) -> None:
    from console.inputs.routing import POLICY_LABELS

    before = version()
    at = page("engineer")
    fill(
        at,
        "rt_pol_new",
        task="",
        primary_model="dryrun-small",
        fallbacks=["dryrun-small"],  # repeats the primary model
        cache_ttl_s="-5",
        max_tokens="lots",
    )
    save(at, "rt_pol_form_new")
    for field in ("task", "fallbacks", "cache_ttl_s", "max_tokens"):
        shown = error_after(at, f"rt_pol_new_{field}")
        assert shown is not None and shown.startswith(POLICY_LABELS[field]), (field, shown)
        assert field not in shown or field == "task", shown  # the label, not the field name
    assert any("4 fields need fixing" in e.value for e in at.error), [e.value for e in at.error]
    assert not at.success and version() == before


def test_control_tables_show_blank_unset_numbers_and_thousands_separators(home: Path) -> None:
    import json

    with ControlPlane() as plane:
        plane.upsert_policy(RoutingPolicy("chat", "dryrun-small", max_tokens=1200), SYSTEM)
        plane.upsert_policy(RoutingPolicy("summarise", "dryrun-small"), SYSTEM)
        plane.upsert_rate_limit(
            RateLimit("org-tpm", scope="org", metric="tokens", limit=2_000_000, window_s=60),
            SYSTEM,
        )
    at = page("viewer")
    tables = {tuple(d.value.columns)[:2]: d for d in at.dataframe}
    policies = next(d.value for k, d in tables.items() if k == ("task", "primary"))
    assert dict(zip(policies["task"], policies["max tokens"], strict=True)) == {
        "chat": "1,200",
        "summarise": "",
    }
    assert set(policies["cache TTL (s)"]) == {""}  # unset: blank, not None
    limits = next(d for k, d in tables.items() if k == ("id", "scope"))
    config = json.loads(limits.proto.columns)
    assert config["limit"]["type_config"]["format"] == "localized"  # shown as 2,000,000
    assert limits.value["burst"].tolist() == [""]


def test_the_replay_policy_table_keeps_fallbacks_as_ordered_text() -> None:
    """The what-if replay's policy table holds fallbacks as 'a, b' text (a table cell); the
    editor holds a list: both parse to the same ordered tuple."""
    import pandas as pd

    from console.frames.routing import policy_proposal_frame
    from console.inputs.routing import model_list, policies_from_frame
    from core.pricing import load_catalog

    p = RoutingPolicy("chat", "dryrun-small", ("dryrun-large", "dryrun-medium"))
    frame = policy_proposal_frame([p])
    assert frame.loc[0, "fallbacks"] == "dryrun-large, dryrun-medium"
    (back,) = policies_from_frame(frame, load_catalog())
    assert back.fallbacks == p.fallbacks
    assert model_list(["dryrun-large", " dryrun-medium "]) == p.fallbacks
    assert model_list(None) == model_list(float("nan")) == model_list("") == ()
    assert isinstance(frame, pd.DataFrame)


def test_a_saving_under_half_a_cent_never_reads_as_nothing_saved() -> None:
    """Calls saved on cheap embeddings add up to $0.0008: the sampling table read '$0.00'
    beside 2 calls saved."""
    import pandas as pd

    from console.frames.routing import sampling_frame
    from console.selection import Money
    from core.control import SamplingStrategy

    savings = pd.DataFrame(
        [
            {"key": "embed", "events": 5, "calls": 3, "skipped": 2, "saved_picousd": 800_000_000},
            {"key": "idle", "events": 0, "calls": 0, "skipped": 0, "saved_picousd": 0},
        ]
    )
    strategies = [
        SamplingStrategy("embed", "periodic", {"interval_s": 60}),
        SamplingStrategy("idle"),
    ]
    shown = sampling_frame(strategies, savings, Money())
    assert list(shown["saved"]) == ["<$0.01", "$0.00"]
