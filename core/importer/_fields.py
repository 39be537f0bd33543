"""The fields a usage CSV maps to, and the header names suggested for each.

Header names are compared normalised ("Prompt Tokens", "promptTokens", "prompt-tokens" ->
"prompt_tokens"). Token columns are suggested in their common spellings: input, prompt or
context; output, completion, generated or generation; with or without ``n_``/``num_``,
``_tokens``, ``_count``, ``_total`` (``ContextTokens``, ``n_generated_tokens_total``).
"""

from __future__ import annotations

from core.importer._csv import suggest


def _token_names(*bases: str) -> tuple[str, ...]:
    out: list[str] = []
    for b in bases:
        out += [
            f"{b}_tokens",
            f"n_{b}_tokens",
            f"num_{b}_tokens",
            f"{b}_token_count",
            f"{b}_tokens_count",
            f"{b}_tokens_total",
            f"n_{b}_tokens_total",
            f"total_{b}_tokens",
            f"tokens_{b}",
            f"{b}_toks",
            f"n_{b}",
        ]
    return tuple(dict.fromkeys(out))


REQUIRED: tuple[str, ...] = ("timestamp", "model", "input_tokens", "output_tokens")
SYNONYMS: dict[str, tuple[str, ...]] = {  # normalised header names, best first
    "timestamp": (
        "timestamp",
        "ts",
        "time",
        "datetime",
        "date_time",
        "created_at",
        "created",
        "start_time",
        "request_time",
        "time_stamp",
        "date",
        "day",
        "usage_date",
    ),
    "model": ("model", "model_name", "model_id", "llm_model", "engine", "deployment"),
    "input_tokens": (
        *_token_names("input", "prompt", "context"),
        "tokens_in",
        "input",
    ),
    "output_tokens": (
        *_token_names("output", "completion", "generated", "generation"),
        "tokens_out",
        "output",
    ),
    "cached_tokens": (
        "cached_tokens",
        "cached_input_tokens",
        "cache_read_input_tokens",
        "cache_read_tokens",
        "prompt_cached_tokens",
        "input_cached_tokens",
    ),
    "cache_write_tokens": (
        "cache_write_tokens",
        "cache_creation_input_tokens",
        "cache_creation_tokens",
    ),
    "reasoning_tokens": (
        "reasoning_tokens",
        "completion_reasoning_tokens",
        "output_reasoning_tokens",
    ),
    "cost": (
        "cost",
        "cost_usd",
        "total_cost",
        "total_cost_usd",
        "cost_in_usd",
        "spend",
        "spend_usd",
        "amount",
        "amount_usd",
        "usd",
    ),
    "org": (
        "org",
        "organization",
        "organisation",
        "org_id",
        "org_name",
        "organization_id",
        "team",
        "team_id",
        "tenant",
        "customer",
    ),
    "user": ("user", "user_id", "username", "user_name", "user_email", "email", "end_user"),
    "project": ("project", "project_id", "project_name", "application", "app", "workspace"),
    "task": ("task", "feature", "use_case", "usecase", "agent", "operation", "endpoint"),
    "provider": ("provider", "vendor", "llm_provider", "custom_llm_provider", "api_provider"),
    # a bare "id" is not suggested: row numbers would make two files' rows look the same
    "request_id": (
        "request_id",
        "call_id",
        "generation_id",
        "completion_id",
        "response_id",
        "chatcmpl_id",
    ),
}
# The rest of a usage event, as Costline's own export names its columns: what a report reads
# besides the usage (status and error, tags, flags, latency, metadata). Suggested only for a
# file whose header is Costline's own export (EXPORT_HINT): elsewhere "status" or "tags" may
# mean something else. A field left unmapped (or an empty cell) takes the value an imported
# row always had: status ok, attempt 1, no tags, flags false (ai_called true), criticality
# normal, $0 saved; the other fields stay empty.
EVENT_FIELDS: dict[str, str] = {  # field -> Costline's export header
    "status": "status",
    "error_type": "error_type",
    "error_message": "error_message",
    "tags": "tags",
    "app": "app",
    "requested_model": "requested_model",
    "attempt": "attempt",
    "usage_estimated": "usage_estimated",
    "saved": "saved_usd",
    "cost_input": "cost_input_usd",
    "cost_cached_input": "cost_cached_input_usd",
    "cost_cache_write": "cost_cache_write_usd",
    "cost_output": "cost_output_usd",
    "cost_reasoning": "cost_reasoning_usd",
    "cache_hit": "cache_hit",
    "ai_called": "ai_called",
    "degraded": "degraded",
    "route_reason": "route_reason",
    "criticality": "criticality",
    "latency_ms": "latency_ms",
    "ttft_ms": "ttft_ms",
    "metadata": "metadata",
    "key": "key",
    "cache_write_1h_tokens": "cache_write_1h_tokens",
    # not stored: true/false, the rows whose cost may be negative (a refund or credit)
    "refund": "refund",
    # true: a call logged unpriced; without a cost it stays unpriced (not the catalog's)
    "unpriced": "unpriced",
}
EXPORT_HINT = frozenset(
    {"request_id", "ts", "cached_input_tokens", "cache_write_tokens", "status", "cost_usd"}
)
FIELDS: tuple[str, ...] = (*SYNONYMS, *EVENT_FIELDS)


def suggest_mapping(columns: list[str] | tuple[str, ...]) -> dict[str, str]:
    out = suggest(columns, SYNONYMS)
    exact = {c.lower(): c for c in reversed(columns)}
    if exact.keys() >= EXPORT_HINT:  # Costline's own export: its event columns too
        used = set(out.values())
        for f, header in EVENT_FIELDS.items():
            col = exact.get(header)
            if col is not None and col not in used:
                out[f] = col
    return out
