"""Anomaly alerts: findings recorded through the budget-alert channel (system writes, no
Actor: the control plane de-duplicates them)."""

from __future__ import annotations

import streamlit as st

from console import auth
from core import insights
from core.alerts import AlertSink
from core.control import control_url
from core.insights import Finding


@st.cache_resource(show_spinner=False)
def _sink(url: str) -> AlertSink:
    return AlertSink(auth.plane())


def record_alerts(found: list[Finding]) -> int:
    """Anomaly alerts through the budget-alert channel; de-duplicated by the control plane
    (and by the sink in this process), so calling it on every render records each once."""
    hook = auth.plane().get_setting("anomaly_webhook_url", None)
    return len(insights.raise_anomaly_alerts(found, _sink(control_url()), webhook_url=hook))
