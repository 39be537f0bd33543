"""Helpers for the console tests: small synthetic usage data and signed-in AppTests.

Data comes from two real paths: calls through ``core.router.Router`` with the dryrun provider
(today), and backdated ``UsageEvent``s priced by the catalog, appended with ``UsageLog``
(so the KPI windows - yesterday, last month, 30 days ago - have something to compare).
"""

from __future__ import annotations

import random
from datetime import timedelta
from pathlib import Path

from streamlit.testing.v1 import AppTest

from core import clock
from core.control import Actor, ControlPlane
from core.pricing import cost_of, load_catalog
from core.router import Router
from core.settings import Settings
from core.types import ChatRequest, Message, Usage
from core.usage import UsageEvent, UsageLog

APP = str(Path(__file__).resolve().parents[1] / "console" / "app.py")
ADMIN_PASSWORD = "admin-pass-123"
PASSWORDS = {"viewer": "viewer-pass-1", "engineer": "engineer-pass-1", "admin": ADMIN_PASSWORD}
MODELS = ["dryrun-small", "dryrun-large"]


def routed_calls(home: Path, n: int = 12) -> None:
    """n real calls through the Router (dryrun provider), logged and flushed."""
    with Router(Settings.from_env(home=home), seed=3) as router:
        for i in range(n):
            router.complete(
                ChatRequest(
                    messages=[Message("user", f"question {i} " * (1 + i % 4))],
                    model=MODELS[i % 2],
                    org=f"org{i % 2}",
                    project=f"proj{i % 3}",
                    user=f"user{i % 4}",
                    task=["chat", "summarise"][i % 2],
                    source="test",
                )
            )
        router.log.flush()


def backdated_events(home: Path, days: int = 70, per_day: int = 6, seed: int = 5) -> int:
    """Priced events spread over the past ``days`` days, some failed, some cache hits."""
    rng = random.Random(seed)
    catalog = load_catalog()
    now = clock.now()
    log = UsageLog(home)
    n = 0
    for d in range(1, days + 1):
        for j in range(per_day):
            model = MODELS[(d + j) % 2]
            usage = Usage(
                input_tokens=rng.randint(100, 5000),
                output_tokens=rng.randint(10, 900),
                cached_input_tokens=rng.choice([0, 0, 256]),
            )
            cost = cost_of(catalog, model, usage)
            status = "error" if j == 5 and d % 3 == 0 else "ok"
            hit = status == "ok" and j == 4 and d % 2 == 0
            log.append(
                UsageEvent(
                    request_id=f"req_hist_{d:03d}_{j}",
                    ts=now - timedelta(days=d, minutes=7 * j),
                    org=f"org{j % 2}",
                    project=f"proj{j % 3}",
                    user=f"user{(d + j) % 4}",
                    task=["chat", "summarise", "extract"][j % 3],
                    provider="dryrun",
                    model=model,
                    requested_model=model,
                    status=status,  # type: ignore[arg-type]
                    error_type="ProviderServerError" if status == "error" else None,
                    error_message="HTTP 503" if status == "error" else None,
                    input_tokens=usage.input_tokens,
                    cached_input_tokens=usage.cached_input_tokens,
                    output_tokens=0 if status == "error" else usage.output_tokens,
                    cost_picousd=0 if status == "error" or hit else cost.total,
                    saved_picousd=cost.total if hit else 0,
                    cache_hit=hit,
                    latency_ms=rng.uniform(80, 2500),
                    route_reason="explicit",
                    source="test",
                )
            )
            n += 1
    log.close()
    return n


def sample_data(home: Path) -> None:
    routed_calls(home)
    backdated_events(home)


def make_users(home: Path) -> None:
    """admin (via ensure_admin's env password) plus a viewer and an engineer."""
    from core.control import SYSTEM, ensure_admin

    # a test-only scrypt cost, passed explicitly (the default is OWASP's 2^17)
    with ControlPlane(f"sqlite:///{home / 'control.db'}", scrypt_n=2**4) as plane:
        ensure_admin(plane)
        for role in ("viewer", "engineer"):
            plane.create_user(role, PASSWORDS[role], role, SYSTEM)


def app(role: str | None = "admin", timeout: float = 30, filters: bool = False) -> AppTest:
    """An AppTest of console/app.py, signed in as the user named like ``role``; ``filters``:
    with the sidebar's filters expander open (its multiselects are drawn only then)."""
    at = AppTest.from_file(APP, default_timeout=timeout)
    if role is not None:
        at.session_state["actor"] = Actor(role, role)  # type: ignore[arg-type]
    if filters:
        at.session_state["f_filters_open"] = True
    return at


def choose(at: AppTest, key: str, value: str) -> None:
    """Set a picker (select box with free entry): pick a listed value, or type a new one."""
    box = at.selectbox(key=key)
    if box.format_func(value) not in box.options:  # typed, as the browser sends a new option
        box.options.append(value)
    box.set_value(value)
