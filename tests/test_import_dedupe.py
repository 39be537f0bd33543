"""Row-level idempotent CSV import on real files and the real DuckDB-backed usage log: a
corrected re-import, CRLF line endings, reformatted numbers, overlapping files and
Costline's own export imported back each leave the total unchanged; bad rows are never
written without confirmation; a source's rows in a range are replaced on request, audited."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from core.control import ControlPlane
from core.errors import ConfigError
from core.export import export
from core.importer import import_csv, read_preview
from core.types import PICO
from core.usage import Filters, Reader

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)
START = datetime(2023, 11, 1, tzinfo=UTC)
HEADER = "time,model,prompt_tokens,completion_tokens,user,cost_usd"
MAPPING = {
    "timestamp": "time",
    "model": "model",
    "input_tokens": "prompt_tokens",
    "output_tokens": "completion_tokens",
    "user": "user",
    "cost": "cost_usd",
}


def trace(n: int, seed: int = 5) -> list[tuple[datetime, str, int, int, str, int]]:
    """n calls: (ts, model, prompt, completion, user, cost in pUSD), one a minute."""
    rng = np.random.default_rng(seed)
    models = ["gpt-4o-mini", "claude-3-5-haiku", "my-finetune"]
    return [
        (
            START + timedelta(minutes=i),
            models[int(rng.integers(0, 3))],
            int(rng.integers(1, 5000)),
            int(rng.integers(1, 800)),
            f"u{int(rng.integers(0, 7))}",
            int(rng.integers(1, 10_000)) * 10**6,  # whole micro-dollars
        )
        for i in range(n)
    ]


def line(r: tuple[datetime, str, int, int, str, int]) -> str:
    ts, model, p, c, user, pico = r
    return f"{ts:%Y-%m-%dT%H:%M:%SZ},{model},{p},{c},{user},{Decimal(pico).scaleb(-12)}"


def write(tmp_path: Path, name: str, lines: list[str], eol: str = "\n") -> Path:
    path = tmp_path / name
    path.write_bytes((eol.join([HEADER, *lines]) + eol).encode())
    return path


def total() -> int:
    return int(Reader().totals()["cost_picousd"])


def test_bad_rows_block_the_import_until_confirmed_and_the_fixed_file_adds_only_them(
    tmp_path: Path,
) -> None:
    rows = trace(1000)
    want = sum(r[5] for r in rows)
    lines = [line(r) for r in rows]
    broken = list(lines)
    broken[10] = broken[10].replace(",gpt-4o-mini,", ",,").replace(",claude-3-5-haiku,", ",,")
    broken[10] = broken[10].replace(",my-finetune,", ",,")
    broken[500] = broken[500].replace("T", "X", 1)
    path = write(tmp_path, "trace.csv", broken)
    first = import_csv(path, MAPPING, now=NOW)
    assert first.needs_confirmation and not first.written and Reader().count() == 0
    assert [b.line for b in first.bad_rows] == [12, 502]
    assert "import 998 rows and skip 2" in first.message and "nothing was imported" in first.message
    partial = import_csv(path, MAPPING, now=NOW, skip_bad_rows=True)
    assert partial.written and partial.imported == 998
    assert total() == want - rows[10][5] - rows[500][5]
    fixed = import_csv(write(tmp_path, "trace-fixed.csv", lines), MAPPING, now=NOW)
    assert (fixed.imported, fixed.duplicates) == (2, 998)
    assert "998 duplicates skipped" in fixed.message
    assert total() == want and Reader().count() == 1000


def test_the_bad_rows_sentence_counts_the_files_duplicates_too(tmp_path: Path) -> None:
    """A re-export of 1,002 rows, 1,000 already imported and 2 bad: the sentence read
    '2 of 2 rows have problems ... import 0 rows and skip 2', as if the file held 2 rows,
    and never said the other 1,000 are in the log already."""
    lines = [line(r) for r in trace(1000, seed=3)]
    import_csv(write(tmp_path, "first.csv", lines), MAPPING, now=NOW)
    bad = ["not-a-time,gpt-4o,1,1,u1,0.1", "2023-11-01T00:00:00Z,,1,1,u1,0.1"]
    again = import_csv(write(tmp_path, "again.csv", [*lines, *bad]), MAPPING, now=NOW)
    assert again.needs_confirmation and (again.imported, again.duplicates) == (0, 1000)
    assert again.message.startswith("2 of 1,002 rows have problems (listed)")
    assert "import 0 rows and skip 2 (1,000 duplicates skipped)." in again.message
    assert Reader().count() == 1000


def test_crlf_reformatted_and_overlapping_files_add_nothing_twice(tmp_path: Path) -> None:
    rows = trace(900, seed=9)
    lines = [line(r) for r in rows]
    a = import_csv(write(tmp_path, "a.csv", lines[:400]), MAPPING, now=NOW)
    b = import_csv(write(tmp_path, "b.csv", lines[300:700]), MAPPING, now=NOW)
    c = import_csv(write(tmp_path, "c.csv", lines[600:]), MAPPING, now=NOW)
    assert (a.imported, b.imported, c.imported) == (400, 300, 200)
    assert (b.duplicates, c.duplicates) == (100, 100)
    want = sum(r[5] for r in rows)
    assert total() == want
    crlf = import_csv(write(tmp_path, "crlf.csv", lines, eol="\r\n"), MAPPING, now=NOW)
    assert (crlf.imported, crlf.duplicates) == (0, 900)
    # the same values written differently: spaces, "12.0", trailing zeros, +00:00 offsets
    odd = [
        f" {ts:%Y-%m-%dT%H:%M:%S}+00:00 , {m} ,{p}.0, {c} ,{u},{Decimal(x).scaleb(-12)}000"
        for ts, m, p, c, u, x in rows
    ]
    again = import_csv(write(tmp_path, "odd.csv", odd), MAPPING, now=NOW)
    assert (again.imported, again.duplicates) == (0, 900)
    assert total() == want and Reader().count() == 900


def test_identical_rows_in_one_file_are_each_counted(tmp_path: Path) -> None:
    same = line(trace(1)[0])
    result = import_csv(write(tmp_path, "twice.csv", [same, same]), MAPPING, now=NOW)
    assert result.imported == 2
    more = import_csv(write(tmp_path, "thrice.csv", [same, same, same]), MAPPING, now=NOW)
    assert (more.imported, more.duplicates) == (1, 2)
    assert Reader().count() == 3


def test_costlines_own_export_imported_back_changes_nothing(tmp_path: Path) -> None:
    rows = trace(300, seed=2)
    import_csv(write(tmp_path, "t.csv", [line(r) for r in rows]), MAPPING, now=NOW)
    before = Reader().totals()
    data = export(None, Filters(), "csv")
    preview = read_preview(data)
    assert preview.mapping["request_id"] == "request_id" and not preview.tokens_inclusive
    back = import_csv(data, preview.mapping, tokens_inclusive=False, now=NOW)
    assert (back.imported, back.duplicates) == (0, 300)
    assert Reader().totals() == before


def test_export_of_retried_calls_keeps_every_attempt(tmp_path: Path) -> None:
    """A call's attempts share a request id: matched by count, not collapsed."""
    text = "\n".join(
        [
            "request_id,ts,model,input_tokens,output_tokens,cost_usd,status",
            "req_1,2023-11-01T10:00:00Z,gpt-4o,10,0,0,error",
            "req_1,2023-11-01T10:00:01Z,gpt-4o,10,5,0.000075,ok",
            "req_2,2023-11-01T10:00:02Z,gpt-4o,10,5,0.000075,ok",
        ]
    )
    mapping = read_preview(text.encode()).mapping
    first = import_csv(text.encode(), mapping, tokens_inclusive=False, now=NOW)
    assert first.imported == 3
    again = import_csv((text + "\n").encode(), mapping, tokens_inclusive=False, now=NOW)
    assert (again.imported, again.duplicates) == (0, 3)
    ids = sorted(e.request_id for e in Reader().fetch())
    assert ids == ["req_1", "req_1", "req_2"]


def test_replace_a_sources_rows_in_a_range_is_explicit_and_audited(tmp_path: Path) -> None:
    rows = trace(200, seed=4)
    import_csv(
        write(tmp_path, "v1.csv", [line(r) for r in rows]), MAPPING, source="vendor", now=NOW
    )
    import_csv(write(tmp_path, "other.csv", [line(trace(1, seed=8)[0])]), MAPPING, now=NOW)
    corrected = [
        (ts, m, p, c, u, x * 2 if i < 50 else x) for i, (ts, m, p, c, u, x) in enumerate(rows)
    ]
    v2 = write(tmp_path, "v2.csv", [line(r) for r in corrected])
    plain = import_csv(v2, MAPPING, source="vendor", now=NOW, dry_run=True)
    assert plain.imported == 50  # without replace: the changed rows would be added, not swapped
    end = START + timedelta(minutes=200)
    done = import_csv(v2, MAPPING, source="vendor", now=NOW, replace=("vendor", START, end))
    assert done.written and done.replaced_rows == 200 and done.imported == 200
    assert "replaced 200 rows" in done.message
    vendor = Reader().totals(Filters(source="vendor"))
    assert vendor["requests"] == 200 and vendor["cost_picousd"] == sum(r[5] for r in corrected)
    assert Reader().count() == 201  # the other source's row is untouched
    plane = ControlPlane()
    with plane.engine.connect() as conn:
        audit = conn.execute(
            sa.text("SELECT actor, before_json FROM audit_log WHERE action = 'data_load.replace'")
        ).all()
    plane.close()
    assert len(audit) == 1 and json.loads(audit[0].before_json)["rows"] == 200


def test_a_replace_whose_range_is_backwards_is_refused(tmp_path: Path) -> None:
    """FROM and TO swapped (`--replace vendor 2023-11-02 2023-11-01`): the range was checked
    only after the file's rows were written, so the error came with the corrected rows
    already beside the old ones (that spend counted twice). Now it is refused first and
    nothing is written."""
    rows = trace(200, seed=4)
    import_csv(
        write(tmp_path, "v1.csv", [line(r) for r in rows]), MAPPING, source="vendor", now=NOW
    )
    before = Reader().totals(Filters(source="vendor"))["cost_picousd"]
    corrected = [(ts, m, p, c, u, x * 2) for ts, m, p, c, u, x in rows]
    v2 = write(tmp_path, "v2.csv", [line(r) for r in corrected])
    end = START + timedelta(minutes=200)
    for start, stop in ((end, START), (START, START)):
        with pytest.raises(ConfigError, match="replace: ") as e:
            import_csv(v2, MAPPING, source="vendor", now=NOW, replace=("vendor", start, stop))
        assert e.value.field == "replace"
        assert Reader().totals(Filters(source="vendor"))["cost_picousd"] == before
        assert Reader().count() == 200
    assert "the range must start before it ends" in e.value.message


def test_result_names_the_imported_range(tmp_path: Path) -> None:
    rows = trace(3)
    result = import_csv(write(tmp_path, "r.csv", [line(r) for r in rows]), MAPPING, now=NOW)
    assert (result.first_ts, result.last_ts) == (rows[0][0], rows[2][0])
    assert result.message.startswith("Imported 3 rows (2023-11-01) costing $")


def test_a_row_over_its_models_context_window_is_flagged(tmp_path: Path) -> None:
    text = (
        "ts,model,input,output\n"
        "2023-11-01T00:00:00Z,gpt-4,9000,10\n"
        "2023-11-01T00:01:00Z,gpt-4,10,10\n"
    )
    mapping = {
        "timestamp": "ts",
        "model": "model",
        "input_tokens": "input",
        "output_tokens": "output",
    }
    result = import_csv(text.encode(), mapping, now=NOW)
    assert result.over_context_rows == 1 and "context window" in result.message
    flags = sorted((e.input_tokens, e.price_flags) for e in Reader().fetch())
    assert flags == [(10, ()), (9000, ("over_context_window",))]
    assert {e.cost_picousd for e in Reader().fetch()} == {
        9000 * 30 * 10**6 + 10 * 60 * 10**6,
        10 * 30 * 10**6 + 10 * 60 * 10**6,
    }


@pytest.mark.parametrize("pico", [1_375_000_000])
def test_decimal_comma_is_asked_and_read_exactly(tmp_path: Path, pico: int) -> None:
    text = (
        "Timestamp;Model;ContextTokens;GeneratedTokens;Cost\n"
        "2023-11-16 10:00;gpt-4o;100;10;0,001375\n"
    )
    preview = read_preview(text.encode())
    assert preview.mapping["input_tokens"] == "ContextTokens"
    assert preview.mapping["output_tokens"] == "GeneratedTokens"
    (q,) = preview.questions
    assert q.field == "decimal" and q.suggested == "," and "0,001375" in q.examples[0]
    from core.errors import ConfigError

    with pytest.raises(ConfigError, match="decimal mark") as err:
        import_csv(text.encode(), preview.mapping, now=NOW)
    assert err.value.field == "decimal" and Reader().count() == 0
    result = import_csv(text.encode(), preview.mapping, now=NOW, decimal=",")
    assert result.imported == 1 and Reader().fetch()[0].cost_picousd == pico
    assert result.cost_total * PICO == pico  # $0.001375, not $1,375


def test_replacing_a_range_with_the_file_already_imported_keeps_its_other_rows(
    tmp_path: Path,
) -> None:
    """The same file imported, then imported again replacing part of its range: the rows
    outside the range stay (the replace's segment had the first import's name and
    overwrote it: 200 rows became the 50 of the range)."""
    rows = trace(200, seed=6)
    path = write(tmp_path, "v1.csv", [line(r) for r in rows])
    import_csv(path, MAPPING, source="vendor", now=NOW)
    start, end = START + timedelta(minutes=150), START + timedelta(minutes=200)
    done = import_csv(path, MAPPING, source="vendor", now=NOW, replace=("vendor", start, end))
    assert (done.imported, done.duplicates, done.replaced_rows) == (50, 150, 50)
    got = sorted((e.ts, e.input_tokens, int(e.cost_usd * PICO)) for e in Reader().fetch())
    assert got == sorted((r[0], r[2], r[5]) for r in rows)
    assert total() == sum(r[5] for r in rows)


def test_a_row_naming_its_provider_is_priced_at_that_providers_entry() -> None:
    """provider,model = groq,gpt-4o is unpriced (Groq has no gpt-4o), as a call to
    groq/gpt-4o is, and azure's gpt-4o-mini costs Azure's rate: both were priced at
    OpenAI's rate, the model name alone."""
    import dataclasses

    from core.pricing import load_catalog

    base = load_catalog()
    day = datetime(2025, 6, 1).date()
    openai_row = base.lookup("gpt-4o-mini", day)
    azure = dataclasses.replace(openai_row, provider="azure", input=165_000, aliases=())
    catalog = base.with_rows([azure])
    text = (
        "time,model,provider,input,output\n"
        "2025-06-01T00:00:00Z,gpt-4o,groq,1000,0\n"
        "2025-06-01T00:00:00Z,gpt-4o-mini,azure,1000,0\n"
        "2025-06-01T00:00:00Z,gpt-4o-mini,OpenAI,1000,0\n"
        "2025-06-01T00:00:00Z,openai/gpt-4o-mini,openai,1000,0\n"
        "2025-06-01T00:00:00Z,gpt-4o,,1000,0\n"
    )
    result = import_csv(
        text.encode(), read_preview(text.encode()).mapping, catalog=catalog, now=NOW
    )
    assert result.imported == 5 and result.unpriced_models == {"gpt-4o": 1}
    got = [(e.provider, e.model, e.unpriced, e.cost_picousd) for e in Reader().fetch()]
    gpt4o = base.lookup("gpt-4o", day).input * 1000
    assert sorted(got, key=str) == sorted(
        [
            ("groq", "gpt-4o", True, 0),
            ("azure", "gpt-4o-mini", False, 165_000 * 1000),
            ("openai", "gpt-4o-mini", False, openai_row.input * 1000),  # names the catalog's
            ("openai", "gpt-4o-mini", False, openai_row.input * 1000),
            ("openai", "gpt-4o", False, gpt4o),
        ],
        key=str,
    )


def test_rows_of_hours_that_retention_pruned_are_refused_not_counted_twice(
    tmp_path: Path,
) -> None:
    """Retention keeps a pruned hour as totals only, so an overlapping file's rows there
    cannot be matched: they are bad rows naming the hour (they were imported again and the
    totals counted them twice); the file's other rows import on confirmation."""
    from core.usage import prune

    rows = trace(120, seed=9)  # 2023-11-01 00:00 to 01:59
    import_csv(write(tmp_path, "a.csv", [line(r) for r in rows]), MAPPING, now=NOW)
    before = Reader().totals()
    assert prune(None, 30).rows == 120
    kept = Reader().totals()
    assert (kept["requests"], kept["cost_picousd"]) == (120, before["cost_picousd"])
    later = (START + timedelta(hours=5), "gpt-4o-mini", 10, 1, "u1", 10**6)
    b = write(tmp_path, "b.csv", [line(r) for r in rows[60:]] + [line(later)])
    check = import_csv(b, MAPPING, now=NOW)
    assert check.needs_confirmation and not check.written and len(check.bad_rows) == 60
    assert "2023-11-01 01:00 UTC: retention pruned" in check.bad_rows[0].reason
    assert check.bad_rows[0].line == 2
    done = import_csv(b, MAPPING, now=NOW, skip_bad_rows=True)
    assert done.imported == 1 and len(done.bad_rows) == 60
    after = Reader().totals()
    assert after["requests"] == 121
    assert after["cost_picousd"] == before["cost_picousd"] + 10**6


def test_own_export_with_formula_like_ids_and_models_imports_back_as_duplicates() -> None:
    """The export escapes every formula-like text cell ('-42' -> "'-42"); the import read a
    request id, model or provider back with the quote, so the call was new and counted
    twice (org, user, project and task were already read back without it)."""
    from core.usage import UsageEvent, UsageLog

    with UsageLog() as log:
        for rid, provider, model in (("-42", "openai", "gpt-4o-mini"), ("r2", "=lab", "+ft")):
            log.append(
                UsageEvent(
                    request_id=rid,
                    ts=START,
                    provider=provider,
                    model=model,
                    input_tokens=10,
                    output_tokens=5,
                    cost_picousd=123,
                )
            )
    data = export(None, Filters(), "csv")
    assert "'-42" in data.decode() and "'+ft" in data.decode()
    preview = read_preview(data)
    back = import_csv(data, preview.mapping, tokens_inclusive=False, now=NOW)
    assert (back.imported, back.duplicates) == (0, 2)
    assert Reader().count() == 2


def test_a_zero_spend_for_a_model_the_catalog_does_not_know_is_unpriced() -> None:
    """LiteLLM logs spend 0 for a call it could not price: a $0 cost for an unknown model
    with tokens is an unknown cost, flagged unpriced (it was a priced $0 call); a known
    model's $0, a tokenless $0 and a stated nonzero cost stay as given. The row's key is
    the file's values: the same file again adds nothing."""
    text = (
        "startTime,model,prompt_tokens,completion_tokens,spend\n"
        "2025-06-01T00:00:00Z,my-finetune,100,10,0.0\n"
        "2025-06-01T00:01:00Z,my-finetune,100,10,0.5\n"
        "2025-06-01T00:02:00Z,my-finetune,0,0,0\n"
        "2025-06-01T00:03:00Z,gpt-4o-mini,100,10,0\n"
    )
    mapping = read_preview(text.encode()).mapping
    result = import_csv(text.encode(), mapping, now=NOW)
    assert result.unpriced_models == {"my-finetune": 1}
    got = sorted((e.ts, e.unpriced, e.cost_picousd) for e in Reader().fetch())
    assert [(u, c) for _, u, c in got] == [(True, 0), (False, PICO // 2), (False, 0), (False, 0)]
    assert Reader().totals()["cost_picousd"] == PICO // 2
    again = import_csv((text + "\n").encode(), mapping, now=NOW)
    assert (again.imported, again.duplicates) == (0, 4)


def test_a_replaced_sources_rows_stay_that_source_so_a_second_replace_finds_them(
    tmp_path: Path,
) -> None:
    """The page and `costline import --replace` name only the source to replace: the file's
    rows take its place under that source, so the next corrected re-export replaces them in
    turn (they were stored as source "import": the second replace removed nothing and the
    changed rows were counted twice)."""
    rows = trace(20, seed=6)
    import_csv(
        write(tmp_path, "v1.csv", [line(r) for r in rows]), MAPPING, source="vendor", now=NOW
    )
    end = START + timedelta(minutes=20)
    final = rows
    for k in (2, 3):  # two corrected re-exports, each replacing the one before
        final = [
            (ts, m, p, c, u, x * k if i < 5 else x) for i, (ts, m, p, c, u, x) in enumerate(rows)
        ]
        done = import_csv(
            write(tmp_path, f"v{k}.csv", [line(r) for r in final]),
            MAPPING,
            now=NOW,
            replace=("vendor", START, end),
        )
        assert done.written and done.replaced_rows == 20, done.message
    vendor = Reader().totals(Filters(source="vendor"))
    assert vendor["requests"] == Reader().count() == 20
    assert vendor["cost_picousd"] == sum(r[5] for r in final)
    with pytest.raises(ConfigError, match="source"):
        import_csv(
            write(tmp_path, "v4.csv", [line(r) for r in final]),
            MAPPING,
            source="other",
            now=NOW,
            replace=("vendor", START, end),
        )
    assert Reader().totals(Filters(source="vendor"))["cost_picousd"] == sum(r[5] for r in final)
