"""What-if replay: the logged calls of a past period through the real Router, under a proposed
set of budgets, routing policies and rate limits, side by side with what happened.

    result = replay(Reader(), start, end, budgets=[...], policies=[...])
    result.blocked, result.degraded, result.cost_actual, result.cost_replayed, result.by_user

How: a throwaway control plane (SQLite in a temp dir, a temp admin) holds the proposal; a
``core.router.Router`` with every control on, in-memory live state and a private usage log
replays each logged call in timestamp order. The budget guard's clock is the call's logged
time, so calendar windows and rate-limit buckets follow the history. A ``ReplayProvider``
answers every call with its LOGGED token usage, so the router reprices it exactly (at the
model it picked, at today's catalog rates).

What is replayed: each logged request (one ``request_id``: retried attempts are one call) that
reached a model - final status ok, not a cache hit, not a sampling skip, priced. Cache hits,
sampling skips, failed, blocked and rate-limited requests keep their logged outcome (their
usage is unknown or zero) and are not counted in the replayed figures. A request whose task
has a proposed policy is routed by it (the policy may pick another model); any other request
asks for the model it asked for (the un-degraded one when the log shows a degrade).

Spend logged in a budget's window before ``start`` is carried in, so a monthly budget replayed
from mid-month starts where it really stood. A replayed call reserves its real size,
``max_cost`` of its logged prompt and output at the model it asks for. Its prompt text has the
logged prompt tokens up to ``PROMPT_TOKENS`` (counting every prompt token would dominate the
run time) and ``max_tokens`` carries the rest of the prompt's price: USD reservations are
exact, token reservations of long prompts are smaller. Prompts in a long-context price tier are
sent whole, so the tier price applies. Settled spend is always exact. Replays longer than
``max_calls`` stop there and say so in ``note``.
"""

from core.replay._calls import PROMPT_TOKENS, LoggedCall, carry_in, logged_calls, request_for
from core.replay._result import ReplayResult, by_group
from core.replay._run import MAX_CALLS, ReplayProvider, replay

__all__ = [
    "MAX_CALLS",
    "PROMPT_TOKENS",
    "LoggedCall",
    "ReplayProvider",
    "ReplayResult",
    "by_group",
    "carry_in",
    "logged_calls",
    "replay",
    "request_for",
]
