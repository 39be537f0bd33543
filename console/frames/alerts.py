"""The Alerts page's tables: the inbox and the muted series (pure)."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from core.control import Alert, AlertMute

PAGES = {
    "budgets": ("app_pages/budgets.py", "Budgets"),
    "forecast": ("app_pages/forecast.py", "Forecast"),
    "routing": ("app_pages/routing.py", "Routing & Sampling"),
}
SEVERITY_ICON = {"critical": "🔴", "warning": "🟠", "info": "🔵"}


def state_of(a: Alert, muted: set[tuple[str, str]]) -> str:
    if a.acked_at is not None:
        return "acked"
    return "muted" if (a.kind, a.subject) in muted else "open"


def delivery(a: Alert) -> str:
    if a.notify_state == "sent":
        return "sent: " + ", ".join(sorted(a.notify)) if a.notify else "sent"
    if a.notify_error:
        return f"{a.notify_state}: {a.notify_error}"
    return a.notify_state


def inbox_frame(alerts: Sequence[Alert], mutes: Sequence[AlertMute]) -> pd.DataFrame:
    muted = {(m.kind, m.subject) for m in mutes}
    return pd.DataFrame(
        [
            {
                "id": a.id,
                "time": a.ts,
                "severity": f"{SEVERITY_ICON.get(a.severity, '')} {a.severity}".strip(),
                "kind": a.kind.replace("_", " "),
                "subject": a.subject or "(all)",
                "window": a.window_key,
                "message": a.message,
                "state": state_of(a, muted),
                "acked by": a.acked_by or "",
                "delivery": delivery(a),
            }
            for a in alerts
        ],
        columns=[
            "id",
            "time",
            "severity",
            "kind",
            "subject",
            "window",
            "message",
            "state",
            "acked by",
            "delivery",
        ],
    )


def mutes_frame(mutes: Sequence[AlertMute]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "kind": m.kind,
                "subject": m.subject,
                "muted until": m.until,
                "by": m.created_by,
            }
            for m in mutes
        ],
        columns=["kind", "subject", "muted until", "by"],
    )


def label(a: Alert) -> str:
    """One alert in a picker: '#12 · critical · budget acme-day · reached 100% ...'."""
    text = a.message if len(a.message) <= 80 else a.message[:77] + "..."
    return f"#{a.id} · {a.severity} · {a.kind.replace('_', ' ')} {a.subject} · {text}"
