"""Formats a CSV does not state are asked, never guessed: day/month order, decimal commas;
the parsed preview shows what each answer means; token columns are suggested under their
common names; the CLI says what is wrong instead of printing a traceback."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from core.errors import ConfigError
from core.importer import import_csv, parse_sample, read_preview, suggest_mapping
from core.usage import Reader

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[1]
SLASHED = (
    "date,model,prompt_tokens,completion_tokens\n"
    "16/11/2023 10:00,gpt-4o,100,10\n"  # only day-first reads
    "05/11/2023 11:00,gpt-4o,100,10\n"  # reads both ways
)


def test_day_month_order_is_asked_and_applied_to_every_row() -> None:
    preview = read_preview(SLASHED.encode())
    (q,) = preview.questions
    assert (q.field, q.suggested) == ("date_order", "dmy")
    assert "'16/11/2023 10:00'" in q.examples
    with pytest.raises(ConfigError, match="date_order") as err:
        import_csv(SLASHED.encode(), preview.mapping, now=NOW)
    assert err.value.field == "date_order" and Reader().count() == 0
    result = import_csv(SLASHED.encode(), preview.mapping, now=NOW, date_order="dmy")
    days = sorted(e.ts for e in Reader().fetch())
    assert days == [datetime(2023, 11, 5, 11, tzinfo=UTC), datetime(2023, 11, 16, 10, tzinfo=UTC)]
    assert result.date_range == "2023-11-05 to 2023-11-16"


def test_month_first_answer_makes_day_first_dates_bad_rows_not_guesses() -> None:
    mapping = read_preview(SLASHED.encode()).mapping
    result = import_csv(SLASHED.encode(), mapping, now=NOW, date_order="mdy")
    assert result.needs_confirmation and [b.line for b in result.bad_rows] == [2]
    assert "16/11/2023" in result.bad_rows[0].reason


def test_both_orders_in_one_file_suggest_nothing() -> None:
    text = "ts,model,input,output\n11/16/2023,gpt-4o,1,1\n16/11/2023,gpt-4o,1,1\n"
    (q,) = read_preview(text.encode()).questions
    assert q.suggested is None and "both orders" in q.reason


def test_the_parsed_preview_shows_each_answer() -> None:
    text = "Timestamp;Model;ContextTokens;GeneratedTokens;Cost\n05/11/2023;gpt-4o;1.000;10;0,5\n"
    mapping = read_preview(text.encode()).mapping
    eu = parse_sample(text.encode(), mapping, decimal=",", date_order="dmy")
    assert eu.loc[0, "timestamp"] == datetime(2023, 11, 5, tzinfo=UTC)
    assert (eu.loc[0, "input_tokens"], eu.loc[0, "cost_usd"]) == (1000, Decimal("0.5"))
    us = parse_sample(text.encode(), mapping, decimal=".", date_order="mdy")
    assert "decimal mark" in us.loc[0, "problem"]  # "0,5" is no thousands grouping
    point = text.replace("0,5", "0.5").encode()
    (q,) = [q for q in read_preview(point).questions if q.field == "decimal"]
    assert q.suggested == "," and "1.000" in q.examples[0]  # "1.000" tokens: asked too
    us = parse_sample(point, mapping, decimal=".", date_order="mdy")
    assert us.loc[0, "timestamp"] == datetime(2023, 5, 11, tzinfo=UTC)
    assert (us.loc[0, "input_tokens"], us.loc[0, "cost_usd"]) == (1, Decimal("0.5"))


def test_thousands_separators_with_a_point_decimal() -> None:
    text = 'ts,model,input,output,cost\n2023-11-01,gpt-4o,"1,200",10,"1,234.5"\n'
    mapping = read_preview(text.encode()).mapping
    (q,) = read_preview(text.encode()).questions
    assert q.suggested == "."
    import_csv(text.encode(), mapping, now=NOW, decimal=".")
    e = Reader().fetch()[0]
    assert e.input_tokens == 1200 and e.cost_usd == Decimal("1234.5")


@pytest.mark.parametrize(
    ("inp", "out"),
    [
        ("ContextTokens", "GeneratedTokens"),
        ("n_context_tokens_total", "n_generated_tokens_total"),
        ("num_prompt_tokens", "num_completion_tokens"),
        ("InputTokenCount", "OutputTokenCount"),
        ("tokens_prompt", "tokens_completion"),
    ],
)
def test_common_token_column_names_are_suggested(inp: str, out: str) -> None:
    m = suggest_mapping(["Timestamp", "Model", inp, out])
    assert (m["input_tokens"], m["output_tokens"]) == (inp, out)


def test_cli_without_map_says_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "trace.csv"
    path.write_text("when,what,n\n2023-11-01,gpt-4o,5\n")
    run = subprocess.run(
        [sys.executable, "-m", "core.cli", "import", str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert "Columns in the file: when, what, n" in run.stderr and "--map" in run.stderr
    slashed = tmp_path / "slashed.csv"
    slashed.write_text(SLASHED)
    run = subprocess.run(
        [sys.executable, "-m", "core.cli", "import", str(slashed)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert "date_order" in run.stderr and "16/11/2023" in run.stderr
    ok = subprocess.run(
        [sys.executable, "-m", "core.cli", "import", str(slashed), "--date-order", "dmy"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert ok.returncode == 0, ok.stderr
    assert "Imported 2 rows (2023-11-05 to 2023-11-16)" in ok.stdout


def test_a_column_of_epoch_times_alone_is_read_to_the_microsecond() -> None:
    """Every cell epoch seconds, milliseconds or microseconds (a fraction too): each row at
    its instant (a column with no ISO cell crashed: pandas' units did not mix)."""
    cells = ["1704067200", "1704067200123", "1704067200123456", "1704067200.5", "1704067200123.4"]
    text = "ts,model,input,output\n" + "".join(f"{c},gpt-4o,10,1\n" for c in cells)
    result = import_csv(text.encode(), read_preview(text.encode()).mapping, now=NOW)
    assert result.imported == 5 and not result.bad_rows
    base = datetime(2024, 1, 1, tzinfo=UTC).timestamp() * 10**6
    got = sorted(int(e.ts.timestamp() * 10**6) - int(base) for e in Reader().fetch())
    assert got == [0, 123_000, 123_400, 123_456, 500_000]


def test_a_leading_zero_group_is_never_read_as_thousands() -> None:
    """'0,001' (a decimal comma: $0.001) was suggested and read as thousands grouping: one
    dollar, a thousand times the cost; '0.100' tokens under a decimal comma read as 100."""
    text = 'ts,model,input,output,cost\n2023-11-01,gpt-4o,100,10,"0,001"\n'
    mapping = read_preview(text.encode()).mapping
    (q,) = read_preview(text.encode()).questions
    assert q.suggested == ","
    point = import_csv(text.encode(), mapping, now=NOW, decimal=".", dry_run=True)
    assert [b.line for b in point.bad_rows] == [2] and "decimal mark" in point.bad_rows[0].reason
    import_csv(text.encode(), mapping, now=NOW, decimal=",")
    assert Reader().fetch()[0].cost_usd == Decimal("0.001")
    dotted = 'ts,model,input,output\n2023-11-01,gpt-4o,"0.100",10\n'
    assert not read_preview(dotted.encode()).questions  # not a grouped count: no question
    bad = import_csv(dotted.encode(), mapping | {"cost": ""}, now=NOW, decimal=",", dry_run=True)
    assert [b.line for b in bad.bad_rows] == [2]


def test_a_latin1_file_is_read_wherever_its_first_accent_is() -> None:
    """A Windows (Latin-1) file whose only accent sits in its last bytes, or after the first
    64 KiB, is read as Latin-1 (it failed: 'invalid UTF8 data'); UTF-8 text followed by a
    Latin-1 byte is refused with the line that holds it."""
    head = "time,model,prompt_tokens,completion_tokens,user\n"
    row = "2023-11-01T10:00:00Z,gpt-4o,10,1,{}\n"
    short = (head + row.format("José")).encode("latin-1")
    long = (head + row.format("ann") * 2000 + row.format("Zoë")).encode("latin-1")
    assert len(long) > 64 * 1024
    for data in (short, long):
        import_csv(data, read_preview(data).mapping, now=NOW)
    assert {e.user for e in Reader().fetch()} == {"José", "ann", "Zoë"}
    mixed = (head + row.format("José")).encode() + row.format("Zoë").encode("latin-1")
    with pytest.raises(ConfigError, match="line 3: .*not UTF-8"):
        read_preview(mixed)


def test_the_parsed_preview_never_cuts_a_value_that_holds_line_breaks() -> None:
    """A prompt column of three lines per cell: the preview's first rows are all good (the
    cut after 21 lines fell inside a quoted value: a bad row 'expected 5 columns, got 1'
    that the file does not have)."""
    cell = '"line one\nline two\nline three"'
    text = "prompt,ts,model,input,output\n" + "".join(
        f"{cell},2023-11-01T10:00:{i:02d}Z,gpt-4o,10,5\n" for i in range(30)
    )
    mapping = read_preview(text.encode()).mapping
    sample = parse_sample(text.encode(), mapping)
    assert list(sample["problem"]) == [""] * 7
    assert list(sample["line"]) == [2, 5, 8, 11, 14, 17, 20]
    assert list(sample["input_tokens"]) == [10] * 7


def test_a_utf16_file_is_read() -> None:
    """Excel's 'Unicode Text' (UTF-16 with its byte order mark, tab-separated) is read (it
    was read as Latin-1 with a NUL between letters: 'a carriage return without a line
    feed')."""
    text = "time\tmodel\tprompt_tokens\tcompletion_tokens\tuser\r\n"
    text += "2023-11-01T10:00:00Z\tgpt-4o\t100\t10\tJosé\r\n"
    for codec in ("utf-16", "utf-16-be", "utf-32"):
        data = text.encode(codec) if codec != "utf-16-be" else b"\xfe\xff" + text.encode(codec)
        preview = read_preview(data)
        assert preview.delimiter == "\t" and preview.missing == []
        result = import_csv(data, preview.mapping, now=NOW, dry_run=True)
        assert result.imported == 1 and not result.bad_rows
    import_csv(text.encode("utf-16"), read_preview(text.encode("utf-16")).mapping, now=NOW)
    assert Reader().fetch()[0].user == "José"
