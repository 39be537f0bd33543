"""The Router keeps working on the demo's control plane (its strategies and policies)."""

from __future__ import annotations

from core.demo import load_demo
from core.router import Router
from core.types import ChatRequest, Message


def test_router_serves_calls_after_the_demo_is_loaded(costline_home):
    load_demo(costline_home, days=20, seed=3)
    with Router() as router:
        for task in ("agent", "chat", "summarize", None):
            req = ChatRequest(
                messages=[Message("user", f"hello {task}")],
                model="dryrun-small",
                task=task,
                org="acme",
            )
            done = router.complete(req)
            assert done.text
