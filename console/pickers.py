"""Pickers for models, providers and scope values: a select box (or, for several values in
order, a multiselect) listing what the catalog and the usage log know, where a new value can
still be typed (a model priced tomorrow, a project that has not called yet). Empty ("—")
means none."""

from __future__ import annotations

from collections.abc import Iterable

import streamlit as st

from console.queries import usage
from console.queries.pricing import catalog
from core.settings import Settings

NONE = "—"


def pick(label: str, options: Iterable[str], key: str, help: str | None = None) -> str:
    """A select box over ``options`` (plus the value the key holds), free entry allowed."""
    current = str(st.session_state.get(key) or "")
    choices = list(dict.fromkeys(["", *([current] if current else []), *options]))
    value = st.selectbox(
        label,
        choices,
        key=key,
        help=help,
        accept_new_options=True,
        format_func=lambda v: v or NONE,
    )
    return str(value or "").strip()


def pick_many(label: str, options: Iterable[str], key: str, help: str | None = None) -> list[str]:
    """A multiselect over ``options`` (plus the values the key holds) in the order picked,
    free entry allowed (a model priced tomorrow)."""
    current = [str(v) for v in st.session_state.get(key) or []]
    choices = list(dict.fromkeys([*current, *options]))
    values = st.multiselect(label, choices, key=key, help=help, accept_new_options=True)
    return [str(v).strip() for v in values if str(v).strip()]


def models() -> list[str]:
    """Catalog models (with price overrides), then models seen in the log but not priced."""
    known = sorted(catalog().models())
    logged = usage.filter_options(usage.home(), usage.version()).get("model", [])
    return known + [m for m in logged if m not in set(known)]


def providers() -> list[str]:
    cat = catalog()
    configured = Settings.from_env().providers
    return sorted({*configured, *(cat.provider_of(m) for m in cat.models())})


def logged(dimension: str) -> list[str]:
    """The values logged for one dimension (org, project, user, task, …)."""
    return list(usage.filter_options(usage.home(), usage.version()).get(dimension, []))


def scope_values(scope: str | None) -> list[str]:
    """Values logged for ``scope`` (org, project, user, task, model, provider, key, tag)
    first, then those of the other scopes, the catalog's models and the providers (a form
    sees a changed scope only once saved, so every value stays at hand)."""
    logged = usage.filter_options(usage.home(), usage.version())
    own = logged.get(str(scope), []) if scope else []
    others = [v for dim, values in logged.items() if dim != scope for v in values]
    return list(dict.fromkeys([*own, *others, *models(), *providers()]))
