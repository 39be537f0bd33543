"""ReplayResult: replayed outcomes beside the logged ones, in total, per call and per group."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pandas as pd

from core.replay._calls import LoggedCall
from core.types import pico_to_usd

DETAIL_COLUMNS = [
    "request_id",
    "ts",
    "org",
    "project",
    "user",
    "task",
    "criticality",
    "replayed",
    "model_actual",
    "status_actual",
    "degraded_actual",
    "model_replayed",
    "status_replayed",
    "degraded_replayed",
    "cost_actual_picousd",
    "cost_replayed_picousd",
    "reason",
]
GROUP_COLUMNS = [
    "calls",
    "degraded",
    "blocked",
    "rate_limited",
    "cost_actual_picousd",
    "cost_replayed_picousd",
    "difference_picousd",
]


@dataclass(frozen=True)
class ReplayResult:
    """Replayed counts and costs beside the logged ones. ``cost_*`` are exact USD Decimals;
    the frames hold exact integer picodollars (object columns). ``details`` has one row per
    logged call; ``by_user``/``by_project`` put the most affected first."""

    calls: int  # logged requests in the period (after any cap)
    replayed: int  # of which sent through the router (see the package docstring)
    degraded: int
    blocked: int
    rate_limited: int
    errors: int  # replayed calls refused for another reason (e.g. a task with no policy)
    cost_actual: Decimal
    cost_replayed: Decimal
    by_user: pd.DataFrame
    by_project: pd.DataFrame
    details: pd.DataFrame
    degraded_actual: int = 0  # what the log shows, over the same calls
    blocked_actual: int = 0
    rate_limited_actual: int = 0
    note: str = ""
    seconds: float = 0.0

    @property
    def cost_difference(self) -> Decimal:
        return self.cost_replayed - self.cost_actual


def build(
    calls: Sequence[LoggedCall], got: Mapping[str, Mapping[str, Any]], note: str, seconds: float
) -> ReplayResult:
    """``got``: the replay's own usage event per replayed request id."""
    rows = []
    for c in calls:
        r = got.get(c.request_id) if c.replayable else None
        rows.append(
            {
                "request_id": c.request_id,
                "ts": c.ts,
                "org": c.org,
                "project": c.project,
                "user": c.user,
                "task": c.task,
                "criticality": c.criticality,
                "replayed": r is not None,
                "model_actual": c.model,
                "status_actual": c.status,
                "degraded_actual": c.degraded,
                "model_replayed": str(r["model"]) if r else c.model,
                "status_replayed": str(r["status"]) if r else c.status,
                "degraded_replayed": bool(r["degraded"]) if r else c.degraded,
                "cost_actual_picousd": c.cost_picousd,
                "cost_replayed_picousd": int(r["cost_picousd"]) if r else c.cost_picousd,
                "reason": _reason(r),
            }
        )
    details = pd.DataFrame(rows, columns=DETAIL_COLUMNS)
    for col in ("cost_actual_picousd", "cost_replayed_picousd"):
        details[col] = details[col].astype(object)
    done = details[details["replayed"].astype(bool)]
    status = done["status_replayed"]
    return ReplayResult(
        calls=len(details),
        replayed=len(done),
        degraded=int(done["degraded_replayed"].sum()),
        blocked=int((status == "blocked").sum()),
        rate_limited=int((status == "rate_limited").sum()),
        errors=int((status == "error").sum()),
        cost_actual=pico_to_usd(_exact(details["cost_actual_picousd"])),
        cost_replayed=pico_to_usd(_exact(details["cost_replayed_picousd"])),
        by_user=by_group(details, "user"),
        by_project=by_group(details, "project"),
        details=details,
        degraded_actual=int(details["degraded_actual"].sum()),
        blocked_actual=int((details["status_actual"] == "blocked").sum()),
        rate_limited_actual=int((details["status_actual"] == "rate_limited").sum()),
        note=note,
        seconds=seconds,
    )


def _reason(r: Mapping[str, Any] | None) -> str:
    if r is None:
        return ""
    for key in ("error_message", "route_reason"):
        text = r.get(key)
        if isinstance(text, str) and text:
            return text
    return ""


def by_group(details: pd.DataFrame, key: str) -> pd.DataFrame:
    """Replay outcomes per ``key`` value (e.g. user or project): calls, degraded, blocked,
    rate_limited and exact costs; the most affected first, then the largest saving."""
    if details.empty:
        return pd.DataFrame(columns=[key, *GROUP_COLUMNS])
    done = details["replayed"].astype(bool)
    status = details["status_replayed"]
    frame = pd.DataFrame(
        {
            key: details[key].astype(object).where(details[key].notna(), "(none)"),
            "calls": 1,
            "degraded": (done & details["degraded_replayed"].astype(bool)).astype(int),
            "blocked": (done & (status == "blocked")).astype(int),
            "rate_limited": (done & (status == "rate_limited")).astype(int),
            "cost_actual_picousd": details["cost_actual_picousd"],
            "cost_replayed_picousd": details["cost_replayed_picousd"],
        }
    )
    out = frame.groupby(key, as_index=False, sort=True).agg(
        calls=("calls", "sum"),
        degraded=("degraded", "sum"),
        blocked=("blocked", "sum"),
        rate_limited=("rate_limited", "sum"),
        cost_actual_picousd=("cost_actual_picousd", _exact),
        cost_replayed_picousd=("cost_replayed_picousd", _exact),
    )
    for col in ("cost_actual_picousd", "cost_replayed_picousd"):
        out[col] = pd.Series([int(v) for v in out[col]], dtype=object)
    out["difference_picousd"] = pd.Series(
        [
            int(r) - int(a)
            for a, r in zip(out["cost_actual_picousd"], out["cost_replayed_picousd"], strict=True)
        ],
        dtype=object,
    )
    hit = (out["degraded"] + out["blocked"] + out["rate_limited"]).tolist()
    diff = out["difference_picousd"].tolist()
    order = sorted(range(len(out)), key=lambda i: (-int(hit[i]), int(diff[i])))
    return out.iloc[order].reset_index(drop=True)


def _exact(values: pd.Series) -> int:
    return sum(int(v) for v in values)
