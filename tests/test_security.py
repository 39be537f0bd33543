"""Security hardening (issue 12 §5): CSV formula escaping, private COSTLINE_HOME modes,
comma-list settings, invisible characters in names, a bare CR in an imported CSV."""

from __future__ import annotations

import csv
import io
import os
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest

from core.control import SYSTEM, Budget, ControlPlane
from core.errors import ConfigError
from core.export import escape_frame, export, frame_to_bytes, unescape_cell
from core.importer import read_preview
from core.settings import Settings, comma_list
from core.usage import UsageEvent, UsageLog

FORMULAS = ['=HYPERLINK("http://x","y")', "+cmd|' /C calc'!A0", "-2+3", "@SUM(1,2)", "\tx", "\rx"]


def rows(text: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text.decode(), newline="")))


def test_csv_export_escapes_formula_cells(costline_home: Path) -> None:
    log = UsageLog(costline_home)
    for i, value in enumerate(FORMULAS + ["plain", "'=quoted"]):
        log.append(
            UsageEvent(
                request_id=f"req_{i}",
                ts=datetime(2026, 1, 1, 10, i, tzinfo=UTC),
                org=value,
                project="p",
                user="u",
                provider="dryrun",
                model="dryrun-small",
                requested_model="dryrun-small",
                status="ok",
                tags=("=1+1", "ok"),
                cost_picousd=1234,
            )
        )
    log.close()
    out = rows(export(costline_home, None, "csv"))
    orgs = [r["org"] for r in out]
    assert orgs == ["'" + v for v in FORMULAS] + ["plain", "''=quoted"]
    assert [unescape_cell(o) for o in orgs] == FORMULAS + ["plain", "'=quoted"]
    assert {r["tags"] for r in out} == {"'=1+1;ok"}
    assert {r["cost_usd"] for r in out} == {"0.000000001234"}


def test_numbers_stay_numbers_and_only_text_is_escaped() -> None:
    frame = pd.DataFrame(
        {
            "name": ["=1+2", "-x", "ok", None],
            "delta_usd": [-1.5, 2.0, -3.25, 0.0],
            "n": [-1, 2, 3, 4],
            "cost_picousd": [-5_000_000, 1, 2, 3],
        }
    )
    out = rows(frame_to_bytes(frame, "csv"))
    assert [r["name"] for r in out] == ["'=1+2", "'-x", "ok", ""]
    assert [r["delta_usd"] for r in out] == ["-1.5", "2", "-3.25", "0"]
    assert [r["n"] for r in out] == ["-1", "2", "3", "4"]
    assert out[0]["cost_usd"] == "-0.000005000000"
    pandas_csv = escape_frame(frame).to_csv(index=False)  # the forecast download's path
    assert "'=1+2" in pandas_csv and ",-1.5," in pandas_csv and "'-1.5" not in pandas_csv


def test_comma_list_settings_strip_spaces() -> None:
    s = Settings.from_env({"COSTLINE_LOG_BODIES_PROJECTS": "alpha, beta ,, gamma"})
    assert s.log_bodies_projects == frozenset({"alpha", "beta", "gamma"})
    assert comma_list(" a , b,") == ("a", "b") and comma_list(None) == ()


@pytest.mark.parametrize(
    "bad",
    ["ac\u202eme", "ac\u200bme", "ac\u2066me", "ac\u200dme", "ac\ufeffme", "ac\x7fme", "ac\x85me"],
)
def test_names_with_invisible_or_control_characters_are_refused(bad: str) -> None:
    with ControlPlane(scrypt_n=2**4) as plane:
        budget = Budget(id="b1", name=bad, scope="org", scope_value="acme", limit_usd=Decimal(5))
        with pytest.raises(ConfigError) as err:
            plane.upsert_budget(budget, SYSTEM)
        assert err.value.field == "name" and f"U+{ord(bad[2]):04X}" in str(err.value)
        org = Budget(id="b2", name="ok", scope="org", scope_value=bad, limit_usd=Decimal(5))
        with pytest.raises(ConfigError, match="invisible or control"):
            plane.upsert_budget(org, SYSTEM)
        with pytest.raises(ConfigError) as user:
            plane.create_user(bad, "long enough pw", "viewer", SYSTEM)
        assert user.value.field == "username" and "invisible or control" in str(user.value)
        assert plane.budgets() == [] and plane.users() == []
        plane.upsert_budget(Budget(id="b3", name="Ünïcødé ok", limit_usd=Decimal(5)), SYSTEM)


def test_a_bare_cr_in_a_csv_field_names_the_line() -> None:
    data = b"Date,Model Name,Prompt Tokens\n2025-03-01,dryrun-small,10\n2025-03-02,dry\rrun,5\n"
    with pytest.raises(ConfigError) as err:
        read_preview(data)
    assert "line 3" in str(err.value) and "carriage return" in str(err.value)
    header = b"Da\rte,Model\n2025-03-01,x\n"
    with pytest.raises(ConfigError, match="line 1"):
        read_preview(header)


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_costline_home_is_private_after_a_demo_load_and_calls(
    costline_home: Path, umask_022: None
) -> None:
    from core.control import ensure_admin
    from core.demo import load_demo
    from core.keys import KeySpec, issue_key
    from core.router import Router
    from core.types import ChatRequest, Message

    os.chmod(costline_home, 0o755)  # as an older version left it
    with ControlPlane(scrypt_n=2**4) as plane:
        ensure_admin(plane)
        plane.create_api_token("admin", SYSTEM)
        issue_key(plane, KeySpec(name="web"), SYSTEM)
    load_demo(costline_home, days=3)
    with Router(Settings.from_env(home=costline_home)) as router:
        for i in range(3):
            router.complete(
                ChatRequest(messages=[Message("user", f"hi {i}")], model="dryrun-small")
            )
        router.log.flush()
    loose = []
    for path in [costline_home, *costline_home.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        want = 0o700 if path.is_dir() else 0o600
        if mode != want:
            loose.append(f"{path.relative_to(costline_home)}: {oct(mode)}")
    names = {p.name for p in costline_home.rglob("*")}
    assert {"control.db", "token_pepper", "gateway.pepper"} <= names and any(
        n.endswith(".parquet") for n in names
    )
    assert loose == []


def test_a_call_with_an_invisible_character_in_a_name_is_refused_before_the_provider(
    costline_home: Path,
) -> None:
    from core.errors import BadRequest
    from core.router import Router
    from core.types import ChatRequest, Message

    with Router(Settings.from_env(home=costline_home)) as router:
        for field in ("org", "project", "user"):
            req = ChatRequest(messages=[Message("user", "hi")], model="dryrun-small")
            setattr(req, field, "ad\u202emin")
            with pytest.raises(BadRequest, match=f"{field}: contains U\\+202E"):
                router.complete(req)
        ok = router.complete(
            ChatRequest(messages=[Message("user", "hi")], model="dryrun-small", org="Zürich")
        )
        router.log.flush()
        assert ok.text
    from core.usage import Reader

    with Reader(costline_home) as reader:
        rows = reader.sql("SELECT status, error_type, cost_picousd FROM events ORDER BY ts")
    # the refused calls are logged as failed, unpaid BadRequests; the good one as ok
    assert rows["status"].tolist() == ["error", "error", "error", "ok"]
    assert set(rows["error_type"][:3]) == {"BadRequest"} and rows["cost_picousd"][:3].sum() == 0


def test_an_escaped_export_imports_back_to_the_original_names(
    costline_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.importer import import_csv
    from core.usage import Filters, Reader

    text = "time,model,prompt_tokens,completion_tokens,user\n" + "".join(
        f"2025-03-0{i + 1}T10:00:00Z,dryrun-small,10,5,{u}\n"
        for i, u in enumerate(["=SUM(1)", "-x", "plain"])
    )
    mapping = {
        "timestamp": "time",
        "model": "model",
        "input_tokens": "prompt_tokens",
        "output_tokens": "completion_tokens",
        "user": "user",
    }
    import_csv(text.encode(), mapping)
    data = export(None, Filters(), "csv")
    assert sorted(r["user"] for r in rows(data)) == ["'-x", "'=SUM(1)", "plain"]
    other = tmp_path / "other-home"
    monkeypatch.setenv("COSTLINE_HOME", str(other))
    preview = read_preview(data)
    import_csv(data, preview.mapping, tokens_inclusive=False)
    with Reader(other) as reader:
        users = sorted(reader.sql("SELECT user FROM events")["user"])
    assert users == ["-x", "=SUM(1)", "plain"]
