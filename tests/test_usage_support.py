"""Helpers shared by the usage-log tests: deterministic events and subprocess runners."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from core.usage import UsageEvent
from tests.child_clock import preamble
from tests.child_death import die_with_parent

REPO = Path(__file__).resolve().parents[1]
T0 = datetime(2024, 12, 20, tzinfo=UTC)
MODELS = ("gpt-4o", "gpt-4o-mini", "claude-3-5-haiku")
ORGS = ("acme", "globex")
STATUSES = ("ok", "ok", "ok", "error", "blocked", "rate_limited", "skipped")


def event(i: int, **overrides: Any) -> UsageEvent:
    """A varied but deterministic event number ``i`` (about one per 37 minutes from T0)."""
    fields: dict[str, Any] = dict(
        request_id=f"req_{i:08d}",
        ts=T0 + timedelta(minutes=37 * i, microseconds=i),
        org=ORGS[i % 2],
        project=f"p{i % 3}",
        user=f"u{i % 5}",
        task="chat" if i % 4 else None,
        provider="anthropic" if i % 3 == 2 else "openai",
        model=MODELS[i % 3],
        status=STATUSES[i % 7],
        input_tokens=100 + i % 17,
        cached_input_tokens=i % 11,
        output_tokens=10 + i % 13,
        cost_picousd=1_000_003 * (i % 101) + 7,
        saved_picousd=999 * (i % 9 == 0),
        cache_hit=i % 9 == 0,
        latency_ms=12.5 + i,
        source="test",
    )
    fields.update(overrides)
    return UsageEvent(**fields)


def python(code: str, home: Path, *args: str, **kw: Any) -> subprocess.Popen[str]:
    """Start ``python -c code args...`` with COSTLINE_HOME=home and the repo importable, its
    ``core.clock`` on this process's clock, moved or not (``tests/child_clock.py``; its
    ``time.time()`` stays the kernel's), killed when this process dies
    (``tests/child_death.py``)."""
    env = {
        **os.environ,
        "COSTLINE_HOME": str(home),
        "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")]),
    }
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            die_with_parent() + preamble(process=False) + textwrap.dedent(code),
            *args,
        ],
        env=env,
        cwd=REPO,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kw,
    )


def finish(proc: subprocess.Popen[str], timeout: float = 60) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"subprocess failed ({proc.returncode}):\n{err}"
    return out


def full_event() -> UsageEvent:
    """Every field set away from its default, with unicode and JSON-hostile text."""
    return UsageEvent(
        request_id="req_full_ü",
        ts=datetime(2025, 3, 30, 0, 59, 59, 999_999, tzinfo=UTC),
        org="Ørg",
        project="projet-été",
        user="用户",
        task="summarise",
        app="key_42",
        tags=("α", "b,c", 'quote"d', ""),
        provider="anthropic",
        model="claude-3-5-sonnet",
        requested_model="gpt-4o",
        status="error",
        error_type="ProviderServerError",
        error_message='boom\nline two\t"quoted" \\ backslash',
        attempt=3,
        input_tokens=1_234_567,
        cached_input_tokens=2,
        cache_write_tokens=3,
        output_tokens=4,
        reasoning_tokens=5,
        usage_estimated=True,
        cost_picousd=2**63 - 1,
        cost_input_picousd=11,
        cost_cached_input_picousd=12,
        cost_cache_write_picousd=13,
        cost_output_picousd=14,
        cost_reasoning_picousd=15,
        saved_picousd=16,
        unpriced=True,
        latency_ms=123.456,
        ttft_ms=7.25,
        cache_hit=True,
        ai_called=False,
        degraded=True,
        route_reason="fallback: 503 from openai",
        criticality="critical",
        source="playground",
        prompt="Hello 👋\nwörld",
        response="{'json': [1, 2]}\u2028end",
        metadata={"ticket": "ÄBC-1", "empty": "", "nested": '{"a": 1}'},
    )


def bare_event() -> UsageEvent:
    """Only the required fields: every optional one stays None / default."""
    return UsageEvent(request_id="req_bare", ts=T0, provider="openai", model="gpt-4o")
