"""Budget writes: each passes the signed-in Actor to the control plane, which checks the role
(PermissionDenied) and audits the change."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from console import auth
from console.inputs.budgets import parse_budget
from core.control import Actor, Budget
from core.errors import ConfigError


def save_budget(actor: Actor, values: Mapping[str, Any], *, new: bool) -> Budget:
    """Create (``new``) or update a budget from editor values."""
    budget = parse_budget(values)
    plane = auth.plane()
    if new and plane.budget(budget.id) is not None:
        raise ConfigError(
            f"id: a budget {budget.id!r} already exists; pick it to edit it", field="id"
        )
    return plane.upsert_budget(budget, actor)


def delete_budget(actor: Actor, budget_id: str) -> bool:
    return auth.plane().delete_budget(budget_id, actor)


def reset_budget(actor: Actor, budget_id: str) -> Budget:
    """Start a fresh window now (audited as budget.reset)."""
    return auth.plane().reset_budget(budget_id, actor)
