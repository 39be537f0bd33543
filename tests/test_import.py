"""CSV import on real files: line-exact bad rows, mapping suggestions, catalog pricing versus
given costs, unpriced models, duplicate files, and a 10k-row file."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from core.control import Actor, ControlPlane
from core.errors import ConfigError, PermissionDenied
from core.importer import BadRow, data_loads, import_csv, read_preview, suggest_mapping
from core.pricing import cost_of, load_catalog
from core.types import PICO, Usage
from core.usage import Filters, Reader

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)
HEADER = "created_at,model,prompt_tokens,completion_tokens,cached_tokens,team,user_id,cost_usd,note"
MAPPING = {
    "timestamp": "created_at",
    "model": "model",
    "input_tokens": "prompt_tokens",
    "output_tokens": "completion_tokens",
    "cached_tokens": "cached_tokens",
    "org": "team",
    "user": "user_id",
    "cost": "cost_usd",
}
MIXED = (
    "\n".join(
        [
            HEADER,  # line 1
            "2026-11-01T10:00:00Z,gpt-4o,1000,200,400,acme,alice,,ok",  # 2 priced from catalog
            "2026-11-01 11:00:00,gpt-4o-mini,500,50,0,acme,bob,0.00123,",  # 3 cost given
            'bad-date,gpt-4o,100,10,0,acme,alice,,"two',  # 4 (a value spanning
            'lines"',  # 5  two lines)
            "2026-11-02,my-finetune,100,10,,globex,carol,,",  # 6 unpriced
            "",  # 7 blank: skipped
            "2026-11-03T00:00:00Z,gpt-4o,-5,1.5,0,acme,alice,,",  # 8
            "2026-11-03T00:00:00Z,gpt-4o,100,10,200,acme,alice,abc,",  # 9
            "2026-11-03T00:00:00Z,,100,10,0,acme,alice,0.1234567890123,",  # 10
            "2026-11-03T00:00:00Z,gpt-4o,100,10,0,acme",  # 11 too few cells
            "2026-11-03T00:00:00+02:00,claude-sonnet-4,250000,10,0,acme,dan,,",  # 12 tier price
            "2030-01-01T00:00:00Z,gpt-4o,1,1,0,acme,dan,,",  # 13 future
            "2026-11-04T00:00:00Z,gpt-4o,,5,0,acme,dan,-1,",  # 14
        ]
    )
    + "\n"
)


def write(tmp_path: Path, name: str, text: str, encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def test_good_rows_import_and_bad_rows_are_listed_with_lines_and_reasons(tmp_path: Path) -> None:
    result = import_csv(write(tmp_path, "mixed.csv", MIXED), MAPPING, now=NOW, skip_bad_rows=True)
    assert result.bad_rows == [
        BadRow(4, "timestamp 'bad-date' is not a date/time"),
        BadRow(8, "prompt_tokens -5 is negative; completion_tokens '1.5' is not a whole number"),
        BadRow(9, "cached_tokens 200 > prompt_tokens 100; cost 'abc' is not a number of USD"),
        BadRow(10, "model is empty; cost '0.1234567890123' has more than 12 decimals"),
        BadRow(11, "expected 9 columns, got 6"),
        BadRow(13, "timestamp '2030-01-01T00:00:00Z' is in the future"),
        BadRow(14, "prompt_tokens is empty; cost '-1' is negative"),
    ]
    assert result.imported == 4 and result.blank_rows == 1 and not result.skipped_duplicate_file
    assert result.unpriced_models == {"my-finetune": 1}
    events = {e.user: e for e in Reader().fetch()}
    assert set(events) == {"alice", "bob", "carol", "dan"}
    alice = events["alice"]  # 1000 prompt tokens of which 400 cached -> disjoint classes
    assert (alice.input_tokens, alice.cached_input_tokens, alice.output_tokens) == (600, 400, 200)
    assert alice.cost_picousd == 600 * 2_500_000 + 400 * 1_250_000 + 200 * 10_000_000
    assert alice.org == "acme" and alice.provider == "openai" and alice.source == "import"
    assert events["bob"].cost_picousd == 1_230_000_000 and not events["bob"].unpriced
    carol = events["carol"]
    assert carol.unpriced and carol.cost_picousd == 0 and carol.provider == "unknown"
    dan = events["dan"]  # above 200k prompt tokens: the long-context tier, at 22:00 UTC
    assert dan.ts == datetime(2026, 11, 2, 22, tzinfo=UTC)
    assert (
        dan.cost_picousd
        == cost_of(
            load_catalog(), "claude-sonnet-4", Usage(input_tokens=250_000, output_tokens=10)
        ).total
    )
    assert dan.cost_picousd == 250_000 * 6_000_000 + 10 * 22_500_000
    assert result.cost_total == Decimal(
        alice.cost_picousd + 1_230_000_000 + dan.cost_picousd
    ).scaleb(-12)


def test_rows_are_priced_at_the_rate_of_their_day(tmp_path: Path) -> None:
    # deepseek-chat changed prices on 2025-09-05 and again on 2025-09-29
    text = "\n".join(
        [
            "ts,model,input_tokens,output_tokens",
            "2025-09-01T12:00:00Z,deepseek-chat,1000000,1000000",
            "2025-09-10T12:00:00Z,deepseek-chat,1000000,1000000",
            "2025-10-10T12:00:00Z,deepseek-chat,1000000,1000000",
        ]
    )
    import_csv(write(tmp_path, "d.csv", text), read_preview(text.encode()).mapping, now=NOW)
    costs = [e.cost_picousd for e in Reader().fetch(descending=False)]
    assert costs == [
        (270_000 + 1_100_000) * 10**6,
        (560_000 + 1_680_000) * 10**6,
        (280_000 + 420_000) * 10**6,
    ]
    catalog = load_catalog()
    for e, day in zip(
        Reader().fetch(descending=False), ("2025-09-01", "2025-09-10", "2025-10-10"), strict=True
    ):
        want = cost_of(
            catalog,
            "deepseek-chat",
            Usage(input_tokens=10**6, output_tokens=10**6),
            at=date.fromisoformat(day),
        )
        assert (e.cost_input_picousd, e.cost_output_picousd) == (want.input, want.output)


def test_given_costs_are_kept_exactly_and_unknown_models_are_never_zero(tmp_path: Path) -> None:
    text = "\n".join(
        [
            "date,model,input,output,cost",
            "2026-11-01,gpt-4o,10,10,0.000056550000",
            "2026-11-01,my-finetune,10,10,1.5",
            "2026-11-01,my-finetune,10,10,",
            "2026-11-01,my-finetune,10,10,$2",
        ]
    )
    mapping = {
        "timestamp": "date",
        "model": "model",
        "input_tokens": "input",
        "output_tokens": "output",
        "cost": "cost",
    }
    result = import_csv(write(tmp_path, "c.csv", text), mapping, now=NOW)
    assert result.unpriced_models == {"my-finetune": 1} and not result.bad_rows
    rows = Reader().events(
        columns=["model", "cost_picousd", "unpriced", "cost_input_picousd"],
        order_by="cost_picousd",
        descending=False,
    )
    assert rows["cost_picousd"].tolist() == [0, 56_550_000, 1_500_000_000_000, 2 * PICO]
    assert rows["unpriced"].tolist() == [True, False, False, False]
    assert rows["cost_input_picousd"].isna().tolist() == [False, True, True, True]
    assert result.cost_total == Decimal("3.500056550000")
    assert Reader().totals(Filters(source="import"))["unpriced"] == 1


def test_the_same_file_is_imported_once(tmp_path: Path) -> None:
    path = write(tmp_path, "mixed.csv", MIXED)
    first = import_csv(path, MAPPING, now=NOW, skip_bad_rows=True)
    before = Reader().totals()
    again = import_csv(path.read_bytes(), MAPPING, now=NOW)  # same bytes, another way in
    assert again.skipped_duplicate_file and again.imported == 0
    assert "already imported" in again.message and again.previous is not None
    assert "4 duplicates skipped" in again.message
    assert Reader().totals() == before
    other = import_csv(
        write(tmp_path, "more.csv", MIXED + "2026-11-05,gpt-4o,1,1,0,x,y,,\n"),
        MAPPING,
        now=NOW,
        skip_bad_rows=True,
    )
    assert (other.imported, other.duplicates) == (1, first.imported)  # only the new row
    assert "4 duplicates skipped" in other.message
    loads = data_loads()
    assert [x.rows for x in loads] == [1, 4] and {x.kind for x in loads} == {"import"}
    assert loads[1].name == "mixed.csv" and loads[1].cost_picousd == first.cost_total * PICO


def test_mapping_suggestions_from_common_headers(tmp_path: Path) -> None:
    openai = [
        "timestamp",
        "model",
        "prompt_tokens",
        "completion_tokens",
        "cached_tokens",
        "organization",
        "user_email",
        "project_id",
        "feature",
        "cost ($)",
    ]
    assert suggest_mapping(openai) == {
        "timestamp": "timestamp",
        "model": "model",
        "input_tokens": "prompt_tokens",
        "output_tokens": "completion_tokens",
        "cached_tokens": "cached_tokens",
        "org": "organization",
        "user": "user_email",
        "project": "project_id",
        "task": "feature",
        "cost": "cost ($)",
    }
    litellm = [
        "startTime",
        "model",
        "prompt_tokens",
        "completion_tokens",
        "spend",
        "team_id",
        "end_user",
        "custom_llm_provider",
    ]
    assert suggest_mapping(litellm) == {
        "timestamp": "startTime",
        "model": "model",
        "input_tokens": "prompt_tokens",
        "output_tokens": "completion_tokens",
        "cost": "spend",
        "org": "team_id",
        "user": "end_user",
        "provider": "custom_llm_provider",
    }
    semi = "Date;Model Name;Input Tokens;Output Tokens;Cost USD\n2026-11-01;gpt-4o;1;2;0.5\n"
    p = read_preview(write(tmp_path, "s.csv", semi, "latin-1"))
    assert p.delimiter == ";" and p.missing == [] and p.tokens_inclusive
    assert p.mapping == {
        "timestamp": "Date",
        "model": "Model Name",
        "input_tokens": "Input Tokens",
        "output_tokens": "Output Tokens",
        "cost": "Cost USD",
    }
    assert p.rows == [["2026-11-01", "gpt-4o", "1", "2", "0.5"]]
    assert list(p.frame().columns) == p.columns
    own = read_preview(
        b"ts,model,input_tokens,cached_input_tokens,cache_write_tokens,output_tokens\n"
    )
    assert not own.tokens_inclusive  # Costline's own export counts classes apart
    assert read_preview(b"when,what\n1,2\n").missing == [
        "timestamp",
        "model",
        "input_tokens",
        "output_tokens",
    ]


def test_a_latin1_semicolon_file_imports(tmp_path: Path) -> None:
    text = "Zeit;Modell;Eingabe;Ausgabe;Benutzer\n2026-11-01 08:00;gpt-4o-mini;1000;10;Jürgen\n"
    mapping = {
        "timestamp": "Zeit",
        "model": "Modell",
        "input_tokens": "Eingabe",
        "output_tokens": "Ausgabe",
        "user": "Benutzer",
    }
    result = import_csv(write(tmp_path, "de.csv", text, "latin-1"), mapping, now=NOW)
    assert result.imported == 1
    assert Reader().fetch()[0].user == "Jürgen"


def test_exclusive_token_columns(tmp_path: Path) -> None:
    text = (
        "ts,model,input_tokens,cached_tokens,output_tokens,reasoning_tokens\n"
        "2026-11-01T00:00:00Z,o4-mini,100,500,10,40\n"
    )
    m = suggest_mapping(text.split("\n")[0].split(","))
    import_csv(write(tmp_path, "x.csv", text), m, tokens_inclusive=False, now=NOW)
    e = Reader().fetch()[0]
    assert (e.input_tokens, e.cached_input_tokens, e.output_tokens, e.reasoning_tokens) == (
        100,
        500,
        10,
        40,
    )


def test_bad_mappings_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    path = write(tmp_path, "mixed.csv", MIXED)
    with pytest.raises(ConfigError, match="'colour'"):
        import_csv(path, {**MAPPING, "colour": "note"})
    with pytest.raises(ConfigError, match="'no_such_column' is not in the file"):
        import_csv(path, {**MAPPING, "task": "no_such_column"})
    with pytest.raises(ConfigError, match="map a column to output_tokens"):
        import_csv(path, {k: v for k, v in MAPPING.items() if k != "output_tokens"})
    assert Reader().count() == 0 and data_loads() == []


def test_viewers_may_not_import(tmp_path: Path) -> None:
    ControlPlane().close()  # migrate
    with pytest.raises(PermissionDenied):
        import_csv(write(tmp_path, "mixed.csv", MIXED), MAPPING, actor=Actor("finance", "viewer"))
    assert Reader().count() == 0


def test_a_10k_row_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    n = 10_000
    models = np.array(["gpt-4o", "gpt-4o-mini", "claude-3-5-haiku", "gemini-2.5-flash"])
    model = models[rng.integers(0, len(models), n)]
    prompt = rng.integers(1, 20_000, n)
    cached = (prompt * rng.random(n) * 0.5).astype(int)
    out = rng.integers(1, 2_000, n)
    ts = np.datetime64("2026-10-01T00:00:00") + rng.integers(0, 40 * 86400, n)
    lines = ["time,model,prompt_tokens,completion_tokens,cached_tokens"] + [
        f"{t}Z,{m},{p},{o},{c}"
        for t, m, p, o, c in zip(ts, model, prompt, out, cached, strict=True)
    ]
    result = import_csv(
        write(tmp_path, "big.csv", "\n".join(lines)),
        read_preview(lines[0].encode()).mapping,
        now=NOW,
    )
    assert result.imported == n and not result.bad_rows
    catalog = load_catalog()
    want = sum(
        cost_of(
            catalog,
            m,
            Usage(input_tokens=int(p - c), cached_input_tokens=int(c), output_tokens=int(o)),
            at=t.astype(date),
        ).total
        for t, m, p, o, c in zip(ts, model, prompt, out, cached, strict=True)
    )
    totals = Reader().totals()
    assert totals["cost_picousd"] == want == result.cost_total * PICO
    assert totals["cached_input_tokens"] == int(cached.sum())
    assert totals["input_tokens"] == int((prompt - cached).sum())


def test_the_import_sentence_rounds_its_total_as_the_console_does(tmp_path: Path) -> None:
    """Costs given to the tenth of a cent: the result sentence names the same total to the
    cent as the console's tables, half a cent up ($1.005 -> $1.01, not $1.00)."""
    text = "\n".join(
        [
            "date,model,input,output,cost",
            "2026-11-01,gpt-4o,10,10,0.5",
            "2026-11-01,gpt-4o,10,10,0.505",
        ]
    )
    mapping = {
        "timestamp": "date",
        "model": "model",
        "input_tokens": "input",
        "output_tokens": "output",
        "cost": "cost",
    }
    result = import_csv(write(tmp_path, "c.csv", text), mapping, now=NOW)
    assert result.cost_total == Decimal("1.005")
    assert "costing $1.01" in result.message, result.message
