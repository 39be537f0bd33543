"""Import/Export page: upload -> mapping -> preview -> import (bad rows by line), re-import
adds nothing; the current view exports as CSV and Parquet."""

from __future__ import annotations

import io
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from console.queries.usage import export_bytes
from core.usage import Reader
from tests.console_support import ADMIN_PASSWORD, app, make_users, sample_data

CSV = (
    "Date,Model Name,Prompt Tokens,Completion Tokens,Team,Spend\n"
    "2025-03-01T10:00:00Z,dryrun-small,1000,200,acme,\n"  # line 2: priced by catalog
    "2025-03-01T11:00:00Z,dryrun-large,500,50,acme,0.25\n"  # line 3: given cost
    "not a date,dryrun-small,10,10,acme,\n"  # line 4: bad timestamp
    "2025-03-02T09:00:00Z,dryrun-small,-5,10,beta,\n"  # line 5: negative tokens
    "2025-03-02T09:30:00Z,mystery-model-9,100,10,beta,\n"  # line 6: unpriced
)


@pytest.fixture
def home(costline_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("COSTLINE_ADMIN_PASSWORD", ADMIN_PASSWORD)
    make_users(costline_home)
    return costline_home


def upload(at, content: str = CSV):  # type: ignore[no-untyped-def]
    at.switch_page("app_pages/import_export.py").run()
    at.file_uploader(key="imp_file").set_value(("usage.csv", content.encode(), "text/csv"))
    return at.run()


def mapping(at) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """field -> chosen column (keys are imp_map_<file digest>_<field>)."""
    return {
        s.key.split("_", 3)[3]: s.value
        for s in at.selectbox
        if s.key and s.key.startswith("imp_map_")
    }


def metrics(at) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {m.label: m.value for m in at.metric}


def frame(at, key: str):  # type: ignore[no-untyped-def]
    """The table shown by the step ``key`` names, found by a column only it has."""
    column = {"imp_sample": "cost_usd", "imp_bad_rows": "reason", "imp_unpriced": "rows"}[key]
    return next(d.value for d in at.dataframe if column in d.value.columns)


def test_every_row_is_checked_and_bad_rows_are_skipped_only_as_the_button_says(
    home: Path,
) -> None:
    at = upload(app("engineer").run())
    assert not at.exception
    chosen = mapping(at)
    assert chosen["timestamp"] == "Date" and chosen["model"] == "Model Name"
    assert chosen["input_tokens"] == "Prompt Tokens" and chosen["cost"] == "Spend"
    assert chosen["org"] == "Team"
    sample = frame(at, "imp_sample")  # parsed values, problems inline
    assert list(sample["line"]) == [2, 3, 4, 5, 6]
    assert str(sample.loc[0, "timestamp"]).startswith("2025-03-01 10:00:00")
    assert "timestamp" in sample.loc[2, "problem"]
    shown = metrics(at)
    assert (shown["Rows to import"], shown["Bad rows"], shown["Duplicates skipped"]) == (
        "3",
        "2",
        "0",
    )
    bad = frame(at, "imp_bad_rows")
    assert list(bad["line"]) == [4, 5]
    assert "timestamp" in bad["reason"][0] and "negative" in bad["reason"][1]
    with Reader(home) as reader:
        assert reader.count() == 0  # checked, nothing written
    go = at.button(key="imp_go")
    assert go.label == "Import 3 rows, skip 2 (listed)"
    go.click().run()
    assert not at.exception
    result = metrics(at)
    assert (result["Rows imported"], result["Bad rows skipped"]) == ("3", "2")
    assert result["Unpriced models imported"] == "1"
    assert any("Imported 3 rows (2025-03-01 to 2025-03-02)" in s.value for s in at.success)
    assert list(frame(at, "imp_unpriced")["model"]) == ["mystery-model-9"]
    with Reader(home) as reader:
        assert reader.count() == 3
        assert reader.totals()["unpriced"] == 1
    # the same rows again: every good row is a duplicate, there is nothing to import
    again = upload(app("engineer").run())
    assert metrics(again)["Duplicates skipped"] == "3"
    assert not [b for b in again.button if b.key == "imp_go"]
    with Reader(home) as reader:
        assert reader.count() == 3


def test_after_an_import_the_banner_goes_and_the_range_is_one_click_away(home: Path) -> None:
    at = upload(app("engineer").run())
    assert any("No usage recorded yet" in m.value for m in at.markdown)
    at.button(key="imp_go").click().run()
    assert not at.exception
    assert not any("No usage recorded yet" in m.value for m in at.markdown)
    assert not [b for b in at.button if b.key == "demo_load"]
    show = at.button(key="imp_show_range")
    assert show.label == "Show this range (2025-03-01 to 2025-03-02)"
    show.click().run()
    assert not at.exception
    assert at.session_state["f_range"] == "custom"
    view = at.session_state["selection"]
    assert view.scope.start.date().isoformat() == "2025-03-01"
    assert view.scope.end.date().isoformat() == "2025-03-03"  # the day after the last, exclusive


def test_a_decimal_comma_and_slash_dates_are_asked_before_rows_are_read(home: Path) -> None:
    text = (
        "Date;Model;ContextTokens;GeneratedTokens;Cost\n16/11/2023;dryrun-small;100;10;0,001375\n"
    )
    at = upload(app("engineer").run(), text)
    assert not at.exception
    radios = {r.key.rsplit("_", 1)[-1]: r for r in at.radio if r.key}
    assert set(radios) == {"decimal", "order"}
    assert radios["decimal"].value == "," and radios["order"].value == "dmy"  # suggested
    sample = frame(at, "imp_sample")
    assert Decimal(str(sample.loc[0, "cost_usd"])) == Decimal("0.001375")
    assert str(sample.loc[0, "timestamp"]).startswith("2023-11-16")
    radios["decimal"].set_value(".").run()
    assert "decimal mark" in frame(at, "imp_sample").loc[0, "problem"]


def test_a_mapping_without_a_required_field_is_refused(home: Path) -> None:
    at = upload(app("admin").run())
    key = next(s.key for s in at.selectbox if s.key and s.key.endswith("_timestamp"))
    at.selectbox(key=key).set_value("")
    at.run()
    assert not at.exception
    assert any("timestamp" in e.value for e in at.error)
    assert not [b for b in at.button if b.key == "imp_go"]
    with Reader(home) as reader:
        assert reader.count() == 0


def test_export_of_the_current_view_as_csv_and_parquet(home: Path) -> None:
    sample_data(home)
    at = app("viewer", filters=True).run()
    at.multiselect(key="f_org").set_value(["org1"]).run()
    at.switch_page("app_pages/import_export.py").run()
    assert not at.exception
    scope = at.session_state["selection"].scope
    with Reader(home) as reader:
        expected = reader.count(scope.filters())
        assert 0 < expected < reader.count()
    parquet = pq.read_table(io.BytesIO(export_bytes(scope, "parquet")))
    assert parquet.num_rows == expected
    assert set(parquet.column("org").to_pylist()) == {"org1"}
    csv = export_bytes(scope, "csv").decode().splitlines()
    assert len(csv) == expected + 1 and "cost_usd" in csv[0]
    older = scope.__class__(**{**scope.__dict__, "end": scope.start + timedelta(days=1)})
    assert pq.read_table(io.BytesIO(export_bytes(older, "parquet"))).num_rows < expected


def test_the_replace_warning_rounds_its_total_as_the_console_does(home: Path) -> None:
    """Rows costing $1.005 in all: the replace warning reads $1.01, as the Overview does
    (Decimal's own rounding, half to even, read $1.00)."""
    half = (
        "Date,Model Name,Prompt Tokens,Completion Tokens,Team,Spend\n"
        "2025-03-01T10:00:00Z,dryrun-small,10,1,acme,0.5\n"
        "2025-03-01T11:00:00Z,dryrun-small,10,1,acme,0.505\n"
    )
    at = upload(app("engineer").run(), half)
    at.button(key="imp_go").click().run()
    assert not at.exception
    at = upload(at, half)
    on = next(c for c in at.checkbox if c.key and c.key.startswith("imp_rep_on_"))
    digest = on.key.removeprefix("imp_rep_on_")
    on.check().run()
    at.date_input(key=f"imp_rep_from_{digest}").set_value(date(2025, 3, 1))
    at.date_input(key=f"imp_rep_to_{digest}").set_value(date(2025, 3, 1)).run()
    assert not at.exception
    warning = next(w.value for w in at.warning if "will be" in w.value)
    assert "2 rows ($1.01) of source 'import'" in warning, warning


def test_a_replace_with_the_rows_already_there_can_be_run(home: Path) -> None:
    """A corrected re-export that only drops a row: every row it has is already in the log,
    but with 'replace' on the page offers the import (it said 'Nothing new' and offered no
    button, so the dropped row could not be removed); the log then holds the file's rows."""
    v1 = (
        "Date,Model Name,Prompt Tokens,Completion Tokens,Team,Spend\n"
        "2025-03-01T10:00:00Z,dryrun-small,10,1,acme,0.5\n"
        "2025-03-01T11:00:00Z,dryrun-small,10,1,acme,0.25\n"
        "2025-03-01T12:00:00Z,dryrun-small,10,1,acme,0.125\n"
    )
    at = upload(app("engineer").run(), v1)
    at.button(key="imp_go").click().run()
    assert not at.exception and Reader().count() == 3
    v2 = v1.rsplit("2025-03-01T12", 1)[0]  # the vendor dropped the last call
    at = upload(at, v2)
    on = next(c for c in at.checkbox if c.key and c.key.startswith("imp_rep_on_"))
    digest = on.key.removeprefix("imp_rep_on_")
    on.check().run()
    at.date_input(key=f"imp_rep_from_{digest}").set_value(date(2025, 3, 1))
    at.date_input(key=f"imp_rep_to_{digest}").set_value(date(2025, 3, 1)).run()
    assert not at.exception
    assert at.button(key="imp_go").label == "Import 2 rows"
    at.button(key="imp_go").click().run()
    assert not at.exception
    assert sorted(e.cost_usd for e in Reader().fetch()) == [Decimal("0.25"), Decimal("0.5")]


def test_a_parquet_file_imports_through_the_page(home: Path) -> None:
    """Costline's own Parquet export (or any Parquet usage file) is mapped, checked and
    imported like a CSV (the page refused it: 'a carriage return (CR) without a line feed')."""
    import pandas as pd

    frame = pd.DataFrame(
        {
            "Date": pd.to_datetime(["2025-03-01T10:00:00Z", "2025-03-01T11:00:00Z"], utc=True),
            "Model Name": ["dryrun-small", "mystery-model-9"],
            "Prompt Tokens": pd.array([1000, 100], dtype="int32"),
            "Completion Tokens": [200.0, 10.0],
        }
    )
    buf = io.BytesIO()
    frame.to_parquet(buf)
    at = app("engineer").run()
    at.switch_page("app_pages/import_export.py").run()
    at.file_uploader(key="imp_file").set_value(
        ("usage.parquet", buf.getvalue(), "application/vnd.apache.parquet")
    )
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert mapping(at)["model"] == "Model Name"
    assert at.button(key="imp_go").label == "Import 2 rows"
    at.button(key="imp_go").click().run()
    assert not at.exception
    events = sorted(Reader().fetch(), key=lambda e: e.ts)
    assert [(e.model, e.input_tokens, e.unpriced) for e in events] == [
        ("dryrun-small", 1000, False),
        ("mystery-model-9", 100, True),
    ]


def test_costlines_own_export_maps_its_event_fields_and_keeps_errors(
    home: Path, tmp_path: Path
) -> None:
    """The page suggests Costline's event columns for its own export (in the "Event fields"
    box) and an error call imported through it stays an error."""
    from datetime import UTC, datetime

    from core.export import export
    from core.usage import UsageEvent, UsageLog

    other = tmp_path / "elsewhere"
    with UsageLog(other) as log:
        log.append_many(
            [
                UsageEvent(
                    request_id="e1",
                    ts=datetime(2025, 3, 1, 10, tzinfo=UTC),
                    provider="openai",
                    model="gpt-4o-mini",
                    status="error",
                    error_type="RateLimited",
                    tags=("batch",),
                )
            ]
        )
    content = export(other, fmt="csv").decode()
    at = upload(app("engineer").run(), content)
    assert not at.exception
    chosen = mapping(at)
    assert chosen["status"] == "status" and chosen["tags"] == "tags"
    assert chosen["error_type"] == "error_type"
    assert any("Event fields" in e.label for e in at.expander)
    at.button(key="imp_go").click().run()
    (e,) = [e for e in Reader().fetch() if e.request_id == "e1"]
    assert (e.status, e.error_type, e.tags) == ("error", "RateLimited", ("batch",))
