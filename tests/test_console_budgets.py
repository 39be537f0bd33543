"""Budgets page: utilisation from the usage log, the editor (errors next to the field, nothing
stored), viewers read only (and refused by core), reset with confirmation, the what-if replay,
and an edit reaching a Router in another process within 5 s."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from test_controls_support import python

from console.commands import budgets as budget_commands
from console.commands import routing as routing_commands
from console.frames import budgets as budget_frames
from console.frames.budgets import usd
from console.inputs.budgets import LABELS, form_values
from core import clock
from core.control import SYSTEM, Actor, Budget, ControlPlane
from core.errors import PermissionDenied
from core.usage import Filters, Reader
from tests.console_support import app, choose

PAGE = "app_pages/budgets.py"
VIEWER = Actor("viewer", "viewer")
NEW = "FormSubmitter:bud_form_new-Save budget"


@pytest.fixture
def home(console_home: Path) -> Path:
    return console_home


def page(role: str) -> Any:
    at = app(role).run()
    at.switch_page(PAGE).run()
    assert not at.exception
    return at


def add(at: Any, **values: str) -> Any:
    """Fill the new-budget form and save it."""
    for field, value in values.items():
        if field in ("scope_value", "degrade_to"):  # pickers
            choose(at, f"bud_new_{field}", value)
            continue
        widget = (
            at.selectbox(key=f"bud_new_{field}")
            if field in ("scope", "period", "action")
            else at.text_input(key=f"bud_new_{field}")
        )
        widget.set_value(value)
    at.button(key=NEW).click().run()
    assert not at.exception
    return at


def error_after(at: Any, key: str) -> str | None:
    """The error shown right after the widget ``key`` (in document order), if any."""
    nodes = [n for n in at.main if not hasattr(n, "children")]
    index = next(i for i, n in enumerate(nodes) if getattr(n, "key", None) == key)
    follower = nodes[index + 1] if index + 1 < len(nodes) else None
    return follower.value if getattr(follower, "type", "") == "error" else None


def state() -> tuple[int, list[Budget]]:
    with ControlPlane() as plane:
        return plane.version(), plane.budgets()


def test_utilisation_is_the_usage_log_of_each_window_and_scope(home: Path) -> None:
    with ControlPlane() as plane:
        plane.upsert_budget(Budget(id="all", name="All", limit_usd=Decimal("0.5")), SYSTEM)
        plane.upsert_budget(
            Budget(
                id="o0",
                name="org0 daily",
                scope="org",
                scope_value="org0",
                period="day",
                limit_usd=Decimal("0.01"),
            ),
            SYSTEM,
        )
        day = plane.budget("o0")
        assert day is not None
        plane.record_alert("o0", day.window_key(clock.now()), 50, message="half")
    at = page("viewer")
    now = clock.now()
    with Reader(home) as r:
        month = r.totals(Filters(*Budget(id="m", name="m").window_bounds(now)))["cost_picousd"]
        org0 = r.totals(Filters(*day.window_bounds(now), org="org0"))["cost_picousd"]
    bars = [p.proto.text for p in at.get("progress")]
    assert bars == [
        f"{usd(month)} of $0.50 ({month * 100 // (5 * 10**11)}%)",  # whole percents,
        f"{usd(org0)} of $0.01 ({org0 * 100 // 10**10}%)",  # rounded down
    ]
    assert "Alerts this window: 50%" in [c.value for c in at.caption]
    table = at.dataframe[0].value
    assert list(table["id"]) == ["all", "o0"] and table["spent"].tolist() == [
        budget_frames.cents(month),
        budget_frames.cents(org0),
    ]


def test_viewer_sees_no_edit_controls_and_core_refuses_their_writes(home: Path) -> None:
    with ControlPlane() as plane:
        plane.upsert_budget(Budget(id="all", name="All", limit_usd=Decimal(5)), SYSTEM)
    at = page("viewer")
    assert not at.get("form") and not at.text_input and not at.data_editor
    assert [b.key for b in at.button] == ["sign_out"]
    assert "Editing budgets needs the engineer role." in [c.value for c in at.caption]
    before = state()
    values = form_values(Budget(id="x", name="x", limit_usd=Decimal(1)))
    writes = [
        lambda a: budget_commands.save_budget(a, values, new=True),
        lambda a: budget_commands.delete_budget(a, "all"),
        lambda a: budget_commands.reset_budget(a, "all"),
        lambda a: routing_commands.save_policy(
            a, {"task": "t", "primary_model": "dryrun-small"}, new=True
        ),
    ]
    for write in writes:
        for actor in (VIEWER, Actor("viewer", "admin")):  # a forged role does not help
            with pytest.raises(PermissionDenied):
                write(actor)
    assert state() == before


def test_engineer_adds_edits_and_deletes_a_budget_and_it_is_audited(home: Path) -> None:
    at = add(
        page("engineer"),
        id="acme-day",
        name="Acme daily",
        scope="org",
        scope_value="org0",
        period="day",
        limit_usd="12.5",
        action="degrade",
        degrade_to="dryrun-small",
        thresholds="50, 90",
    )
    assert [s.value for s in at.success] == ["Budget saved."]
    assert at.selectbox(key="bud_pick").value == "acme-day"
    _, budgets = state()
    b = budgets[0]
    assert (b.id, b.scope_value, b.period, b.limit_usd, b.action, b.thresholds, b.timezone) == (
        "acme-day",
        "org0",
        "day",
        Decimal("12.5"),
        "degrade",
        (50, 90),
        "UTC",
    )
    at.text_input(key="bud_acme-day_limit_usd").set_value("20")
    at.button(key="FormSubmitter:bud_form_acme-day-Save budget").click().run()
    assert not at.exception
    assert state()[1][0].limit_usd == Decimal(20)
    at.button(key="bud_delete_acme-day").click().run()
    at.button(key="bud_delete_yes_acme-day").click().run()
    assert not at.exception and state()[1] == []
    with ControlPlane() as plane:
        log = [(e.actor, e.action) for e in plane.audit(entity="budget")]
    assert log == [
        ("engineer", "budget.delete"),
        ("engineer", "budget.update"),
        ("engineer", "budget.create"),
    ]


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("limit_usd", "-5", "must be a finite amount >= 0"),
        ("limit_usd", "lots", "must be a number of USD"),
        # a decimal comma is not read as a thousands separator ($1.50 stored as $150)
        ("limit_usd", "1,50", "commas group thousands"),
        ("limit_usd", "12,34,5", "commas group thousands"),
        # a positive limit under a picodollar is not rounded to a $0 budget
        ("limit_usd", "1e-20", "below the smallest amount"),
        ("limit_usd", "1e400", "(got '1E+400')"),  # the amount as typed, not Decimal('1E+400')
        # $50M: past what the int64 picodollar counters hold (the maximum named)
        ("limit_usd", "50000000", "must be <= 9223372.03 USD ($9,223,372.03)"),
        ("thresholds", "90, 50", "must be strictly increasing"),
        ("degrade_to", "gpt-9-imaginary", "not a model in the price catalog"),
        ("timezone", "Mars/Olympus", "IANA time zone"),
    ],
)
def test_invalid_values_show_next_to_the_field_and_change_nothing(
    home: Path, field: str, value: str, message: str
) -> None:
    with ControlPlane() as plane:
        plane.upsert_budget(Budget(id="all", name="All", limit_usd=Decimal(5)), SYSTEM)
    before = state()
    good = {"id": "b1", "name": "B1", "limit_usd": "3"}
    at = add(page("engineer"), **{**good, field: value})
    shown = error_after(at, f"bud_new_{field}")
    assert shown is not None and message in shown and shown.startswith(LABELS[field])
    assert len(at.error) == 1 and not at.success
    assert state() == before  # nothing stored, control plane version unchanged
    at.selectbox(key="bud_pick").set_value("all").run()  # the same check on an edit
    if field == "degrade_to":
        choose(at, f"bud_all_{field}", value)
    else:
        at.text_input(key=f"bud_all_{field}").set_value(value)
    at.button(key="FormSubmitter:bud_form_all-Save budget").click().run()
    assert not at.exception and error_after(at, f"bud_all_{field}") is not None
    assert state() == before


def test_every_bad_field_is_named_at_once_in_the_forms_words(home: Path) -> None:
    before = state()
    at = add(
        page("engineer"),
        id="bad id",
        name="B",
        scope="org",
        scope_value="",
        limit_usd="-5",
        thresholds="90, 50",
        timezone="Mars/Olympus",
    )
    for field in ("id", "scope_value", "limit_usd", "thresholds", "timezone"):
        shown = error_after(at, f"bud_new_{field}")
        assert shown is not None and shown.startswith(LABELS[field]), (field, shown)
        assert "(got None)" not in shown and "scope_value" not in shown
    assert any("5 fields need fixing" in e.value for e in at.error)
    assert state() == before


def test_reset_now_asks_for_confirmation_and_is_audited(home: Path) -> None:
    with ControlPlane() as plane:
        plane.upsert_budget(Budget(id="all", name="All", limit_usd=Decimal("0.5")), SYSTEM)
    at = page("engineer")
    spent_before = at.dataframe[0].value["spent"].iloc[0]
    assert spent_before != "$0.00"
    at.button(key="bud_reset_all").click().run()
    assert any("Reset 'All' now?" in w.value for w in at.warning)
    assert state()[1][0].reset_generation == 0  # not yet
    at.button(key="bud_reset_yes_all").click().run()
    assert not at.exception
    assert [s.value for s in at.success] == ["Budget 'All' was reset."]
    b = state()[1][0]
    assert b.reset_generation == 1
    assert at.dataframe[0].value["spent"].iloc[0] == "$0.00"  # the window counts from the reset
    with ControlPlane() as plane:
        assert (plane.audit(limit=1)[0].actor, plane.audit(limit=1)[0].action) == (
            "engineer",
            "budget.reset",
        )


def test_what_if_replay_on_the_page_shows_who_a_tiny_budget_would_block(home: Path) -> None:
    with ControlPlane() as plane:
        plane.upsert_budget(Budget(id="all", name="All", limit_usd=Decimal(1000)), SYSTEM)
    at = page("engineer")
    today = clock.today()
    at.date_input(key="bud_rp_dates").set_value((today, today))
    at.session_state["bud_rp_budgets"] = {
        "edited_rows": {},
        "deleted_rows": [0],
        "added_rows": [
            {
                "id": "tiny",
                "name": "tiny",
                "scope": "user",
                "scope_value": "user1",
                "period": "day",
                "limit_usd": "0.000001",
                "action": "block",
                "soft_multiplier": 2.0,
                "thresholds": "50",
                "enabled": True,
            }
        ],
    }
    at.button(key="bud_rp_run").click().run()
    assert not at.exception, at.exception
    result = at.session_state["bud_rp_result"]
    assert result.blocked == 3 and result.replayed == 12  # routed_calls: 12 today, user1: 3
    assert next(m.value for m in at.metric if m.label == "Blocked") == "3"
    hit = next(df.value for df in at.dataframe if "blocked" in df.value.columns)
    assert hit["user"].tolist() == ["user1"] and hit["blocked"].tolist() == [3]
    assert state()[1][0].id == "all"  # nothing saved


def test_a_bad_proposal_row_is_named_and_nothing_runs(home: Path) -> None:
    at = page("engineer")
    at.session_state["bud_rp_budgets"] = {
        "edited_rows": {},
        "deleted_rows": [],
        "added_rows": [
            {
                "id": "neg",
                "name": "neg",
                "scope": "global",
                "period": "day",
                "limit_usd": "-1",
                "action": "block",
                "soft_multiplier": 2.0,
                "thresholds": "50",
                "enabled": True,
            }
        ],
    }
    at.button(key="bud_rp_run").click().run()
    assert not at.exception
    assert any(e.value.startswith("row 1 (neg): limit_usd") for e in at.error)
    assert "bud_rp_result" not in at.session_state


# ---- an edit reaches a router in another process -------------------------------------------

LOOP = """
import time
from core.errors import BudgetExceeded
from core.router import Router
from core.types import ChatRequest, Message

router = Router()  # controls on: the control plane of $COSTLINE_HOME, polled every second
i, deadline = 0, time.monotonic() + 90
while time.monotonic() < deadline:
    i += 1
    try:
        router.complete(ChatRequest([Message("user", f"q{i}")], model="dryrun-small",
                                    org="acme", max_tokens=20))
    except BudgetExceeded as exc:
        print("blocked", repr(time.monotonic()), exc.budget, flush=True)  # one clock for both
        break
    if i == 1:
        print("ready", flush=True)
    time.sleep(0.005)
router.close()
"""


def lines(proc: subprocess.Popen[str], timeout: float) -> Iterator[str]:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line:
            yield line.strip()
        elif proc.poll() is not None:
            err = proc.stderr.read() if proc.stderr else ""
            raise AssertionError(f"router child exited {proc.returncode}: {err[-2000:]}")
    raise AssertionError("router child stalled")


def test_a_budget_saved_in_the_page_blocks_a_router_in_another_process_within_5s(
    home: Path,
) -> None:
    child = python(LOOP)
    try:
        out = lines(child, 90)
        assert next(out) == "ready"
        at = page("engineer")
        # CLOCK_MONOTONIC is the child's clock too; this process's wall clock may be moved
        clicked, wall = time.monotonic(), clock.timestamp() - time.monotonic()
        add(
            at,
            id="freeze",
            name="Freeze acme",
            scope="org",
            scope_value="acme",
            limit_usd="0",
            action="block",
        )
        with ControlPlane() as plane:
            saved = plane.audit(limit=1)[0].ts
        saved_at = (saved if saved.tzinfo else saved.replace(tzinfo=UTC)).timestamp() - wall
        word, at_time, budget_id = next(out).split()
        lag, from_click = float(at_time) - saved_at, float(at_time) - clicked
        print(
            f"\nconsole edit -> enforced in another process: {lag * 1000:.0f} ms after the"
            f" write ({from_click * 1000:.0f} ms after the click)"
        )
        assert (word, budget_id) == ("blocked", "freeze")
        assert 0 < lag < 5.0
        assert child.wait(30) == 0
    finally:
        child.kill()
        child.wait(10)


def test_projection_stops_at_the_cap_of_an_enforcing_budget(home: Path) -> None:
    """A blocking budget cannot spend past soft_multiplier x limit: the projection says so."""
    with ControlPlane() as plane:
        for action in ("alert", "block"):
            plane.upsert_budget(
                Budget(
                    id=action,
                    name=action,
                    limit_usd=Decimal("0.001"),
                    action=action,
                    soft_multiplier=1.5,
                ),
                SYSTEM,
            )
    at = page("viewer")
    table = at.dataframe[0].value.set_index("id")
    run_rate = table.loc["alert", "run rate"]
    assert table.loc["alert", "projected"] == run_rate  # alert-only: no cap
    assert table.loc["block", "run rate"] == run_rate
    assert table.loc["block", "projected"] == "<$0.01 (capped)"  # 1.5 x $0.001, to the cent
    assert usd(int(1.5e9)) == "$0.0015"
    metrics = {m.value: m.proto.delta for m in at.metric}
    assert metrics["$0.0015"] == "capped at 1.5x the limit"
    assert any(
        c.value.startswith(f"The run rate would reach {run_rate}; calls past $0.0015")
        for c in at.caption
    )


def test_a_scope_value_never_logged_is_flagged(home: Path) -> None:
    at = add(page("engineer"), id="typo", name="Typo", scope="project", scope_value="prj1")
    at.run()
    warned = [w.value for w in at.warning if "No call was ever logged" in w.value]
    assert warned and "project 'prj1'" in warned[0] and "'proj1'" in warned[0]
    at = add(page("engineer"), id="ok", name="Ok", scope="project", scope_value="proj1")
    at.run()
    assert not [w for w in at.warning if "No call was ever logged" in w.value]
    # a model budget matches the logged name in any letter case (core.budgets.model_names)
    at = add(page("engineer"), id="case", name="Case", scope="model", scope_value="GPT-4o-Mini")
    at.run()
    assert not [w for w in at.warning if "No call was ever logged" in w.value]


def test_scope_values_and_models_are_picked_from_the_log_and_the_catalog(home: Path) -> None:
    at = page("engineer")
    values = at.selectbox(key="bud_new_scope_value").options
    assert {"proj0", "proj1", "org0", "user1", "chat", "dryrun-small", "dryrun"} <= set(values)
    models = at.selectbox(key="bud_new_degrade_to").options
    assert {"dryrun-small", "gpt-4o-mini"} <= set(models)
    add(at, id="p1", name="P1", scope="project", scope_value="proj1", limit_usd="5")
    new = {"id": "p2", "name": "New", "scope": "project", "scope_value": "proj-new"}
    at = add(page("engineer"), **new, limit_usd="5")
    at.selectbox(key="bud_pick").set_value("p1").run()  # the scope's own values come first
    shown = at.selectbox(key="bud_p1_scope_value")
    assert shown.value == "proj1" and sorted(shown.options[1:4]) == ["proj0", "proj1", "proj2"]
    assert [(b.id, b.scope_value) for b in state()[1]] == [("p1", "proj1"), ("p2", "proj-new")]


def test_replay_shows_the_unchanged_configuration_beside_the_log(home: Path) -> None:
    with ControlPlane() as plane:
        plane.upsert_budget(Budget(id="all", name="All", limit_usd=Decimal(1000)), SYSTEM)
    at = page("engineer")
    today = clock.today()
    start = today - timedelta(days=7)
    at.date_input(key="bud_rp_dates").set_value((start, today))
    at.button(key="bud_rp_run").click().run()
    assert not at.exception, at.exception
    base = at.session_state["bud_rp_baseline"].result
    line = next(i.value for i in at.info if "unchanged configuration" in i.value)
    assert line.startswith(
        f"Replaying the unchanged configuration gives {base.degraded:,} degraded vs"
        f" {base.degraded_actual:,} logged"
    )
    skipped = base.calls - base.replayed
    assert skipped > 0 and f"{skipped:,} of the {base.calls:,} calls are not replayed" in line
    assert "keep the model they asked for" in line  # routing was off


def test_edited_proposal_cells_are_listed_and_highlighted(home: Path) -> None:
    with ControlPlane() as plane:
        plane.upsert_budget(Budget(id="all", name="All", limit_usd=Decimal(1000)), SYSTEM)
        plane.upsert_budget(Budget(id="two", name="Two", limit_usd=Decimal(50)), SYSTEM)
    at = page("engineer")
    at.session_state["bud_rp_budgets"] = {
        "edited_rows": {"0": {"limit_usd": "5"}},
        "deleted_rows": [1],
        "added_rows": [{"id": "new", "name": "new", "limit_usd": "1", "enabled": True}],
    }
    at.run()
    assert not at.exception
    shown = next(d for d in at.dataframe if "change" in d.value.columns)
    assert shown.value["change"].tolist() == ["edited", "added", "deleted"]
    assert shown.value["limit_usd"].tolist() == ["5", "1", "50"]
    _, styles = budget_frames.proposal_changes(
        budget_frames.proposal_frame(state()[1]), at.session_state["bud_rp_budgets"]
    )
    assert styles.loc[0, "limit_usd"] == budget_frames.EDITED and styles.loc[0, "name"] == ""
    assert styles.loc[1, "id"] == budget_frames.ADDED


def test_table_money_is_to_the_cent_with_thousands_separators(home: Path) -> None:
    cents = budget_frames.cents
    assert [cents(p) for p in (1_234_567 * 10**10, 42 * 10**6, 0, -5 * 10**12)] == [
        "$12,345.67",
        "<$0.01",
        "$0.00",
        "-$5.00",
    ]
    with ControlPlane() as plane:
        budget = Budget(id="big", name="Big", limit_usd=Decimal(12345), limit_tokens=2_500_000)
        plane.upsert_budget(budget, SYSTEM)
    at = page("viewer")
    row = at.dataframe[0].value.iloc[0]
    assert (row["limit"], row["token limit"]) == ("$12,345.00", "2,500,000")


def test_replay_editors_pin_their_key_columns_and_label_them_as_the_forms(home: Path) -> None:
    """The proposal table scrolls sideways (13 columns): its id and action columns come first
    and are pinned, so the action stays in view; headers in the form's words; the policy
    table pins its task; the changes table pins change, id and action."""
    import json

    with ControlPlane() as plane:
        plane.upsert_budget(Budget(id="all", name="All", limit_usd=Decimal(1000)), SYSTEM)
    at = page("engineer")
    at.checkbox(key="bud_rp_route").check()
    at.session_state["bud_rp_budgets"] = {
        "edited_rows": {"0": {"action": "block"}},
        "deleted_rows": [],
        "added_rows": [],
    }
    at.run()
    assert not at.exception

    def config(key: str) -> tuple[list[str], dict[str, Any]]:
        table = next(d for d in at.dataframe if d.proto.id.endswith(key) or key in d.proto.id)
        return list(table.value.columns), json.loads(table.proto.columns)

    columns, cols = config("bud_rp_budgets")
    assert columns[:2] == ["id", "action"]
    assert {c for c, v in cols.items() if v.get("pinned")} == {"id", "action"}
    assert cols["action"]["label"] == LABELS["action"] and cols["scope_value"]["label"] == (
        "Scope value"
    )
    _, pols = config("bud_rp_policies")
    assert {c for c, v in pols.items() if v.get("pinned")} == {"task"}
    assert pols["primary_model"]["label"] == "Primary model"
    shown = next(d for d in at.dataframe if "change" in d.value.columns)
    changes = json.loads(shown.proto.columns)
    assert {c for c, v in changes.items() if v.get("pinned")} == {"change", "id", "action"}
    assert shown.value["action"].tolist() == ["block"]
