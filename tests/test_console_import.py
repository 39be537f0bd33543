"""Import/Export page: upload -> mapping -> preview -> import (bad rows by line), re-import
adds nothing; the current view exports as CSV and Parquet."""

from __future__ import annotations

import io
from datetime import timedelta
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


def test_import_shows_bad_rows_with_line_numbers_and_reimport_adds_nothing(home: Path) -> None:
    at = upload(app("engineer").run())
    assert not at.exception
    chosen = mapping(at)
    assert chosen["timestamp"] == "Date" and chosen["model"] == "Model Name"
    assert chosen["input_tokens"] == "Prompt Tokens" and chosen["cost"] == "Spend"
    assert chosen["org"] == "Team"
    preview = at.dataframe[0].value
    assert list(preview.columns)[:2] == ["timestamp", "model"] and len(preview) == 5
    at.button(key="imp_go").click().run()
    assert not at.exception
    shown = metrics(at)
    assert (shown["Rows imported"], shown["Bad rows"], shown["Unpriced models"]) == ("3", "2", "1")
    bad = at.dataframe[1].value
    assert list(bad["line"]) == [4, 5]
    assert "timestamp" in bad["reason"][0] and "negative" in bad["reason"][1]
    unpriced = at.dataframe[2].value
    assert list(unpriced["model"]) == ["mystery-model-9"]
    with Reader(home) as reader:
        assert reader.count() == 3
        assert reader.totals()["unpriced"] == 1
    at.button(key="imp_go").click().run()
    assert not at.exception
    assert any("nothing was added" in i.value for i in at.info)
    assert metrics(at)["Rows imported"] == "0"
    with Reader(home) as reader:
        assert reader.count() == 3


def test_a_mapping_without_a_required_field_is_refused(home: Path) -> None:
    at = upload(app("admin").run())
    key = next(s.key for s in at.selectbox if s.key and s.key.endswith("_timestamp"))
    at.selectbox(key=key).set_value("")
    at.run()
    at.button(key="imp_go").click().run()
    assert not at.exception
    assert any("timestamp" in e.value for e in at.error)
    with Reader(home) as reader:
        assert reader.count() == 0


def test_export_of_the_current_view_as_csv_and_parquet(home: Path) -> None:
    sample_data(home)
    at = app("viewer").run()
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
