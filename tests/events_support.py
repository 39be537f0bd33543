"""One usage event of a given cost in USD, for tests that build a spend history by hand."""

from __future__ import annotations

from datetime import datetime

from core.types import PICO
from core.usage import UsageEvent


def spend_event(
    request_id: str, ts: datetime, usd: float, *, org: str = "a", user: str = "u1"
) -> UsageEvent:
    """A priced gpt-4o chat call of ``usd`` dollars (to the picodollar) at ``ts``."""
    return UsageEvent(
        request_id=request_id,
        ts=ts,
        org=org,
        user=user,
        task="chat",
        model="gpt-4o",
        provider="openai",
        source="test",
        cost_picousd=round(usd * PICO),
    )
