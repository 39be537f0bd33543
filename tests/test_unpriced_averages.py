"""An unpriced call's cost is unknown, so no average counts it as $0: the Overview's "Avg cost
/ request", GET /spend's avg_cost_usd and the cost per 1K requests divide the known cost by
the priced calls (two calls, one of $1.00 and one unpriced, average $1.00, not $0.50)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from core import clock
from core.usage import UsageEvent, UsageLog
from tests.console_support import app, make_users
from tests.servers.api import ApiServer


@pytest.fixture
def half_unpriced(costline_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("COSTLINE_ADMIN_PASSWORD", "admin-pass-123")
    log = UsageLog(costline_home)
    when = clock.now() - timedelta(days=1)
    for rid, model, cost, unpriced in (
        ("priced", "gpt-4o", 10**12, False),
        ("unknown", "mystery-model", 0, True),
    ):
        log.append(
            UsageEvent(
                request_id=rid,
                ts=when,
                org="a",
                user="ann",
                provider="openai",
                model=model,
                cost_picousd=cost,
                unpriced=unpriced,
            )
        )
    log.close()
    make_users(costline_home)
    return costline_home


def test_overview_average_and_unit_cost_leave_unpriced_calls_out(half_unpriced: Path) -> None:
    at = app("viewer").run()
    assert not at.exception
    shown = {m.label: m.value for m in at.metric}
    assert shown["Requests"] == "2" and shown["Spend in range"] == "$1.00"
    assert shown["Avg cost / request"] == "$1.0000"
    import pyarrow as pa

    per_1k = [
        r
        for chart in at.get("vega_lite_chart")
        for d in chart.proto.datasets
        for r in pa.ipc.open_stream(d.data.data).read_all().to_pylist()
        if "per_1k_text" in r
    ]
    assert [r["per_1k_text"] for r in per_1k] == ["$1,000.0000"]


def test_api_average_leaves_unpriced_calls_out(half_unpriced: Path) -> None:
    with ApiServer(half_unpriced) as server:
        client = server.client(server.user("fin", "viewer"))
        totals = client.get("/spend", params={"range": "7d"}).json()["totals"]
    assert (totals["requests"], totals["unpriced"], totals["cost_usd"]) == (2, 1, "1")
    assert totals["avg_cost_usd"] == "1"
