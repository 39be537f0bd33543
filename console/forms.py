"""The editors' shared plumbing. A form's save runs in its submit button's callback
(``submit``), so a CostlineError is known before the form is drawn again and shows under the
field it names (``field_error``), with nothing stored. A write outside a form (a button)
goes through ``write_now``. Either way a success is said once, at the top (``flash``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

from core.errors import CostlineError

ERRORS_KEY = "ctl_errors"
FLASH_KEY = "ctl_flash"


def submit(form: str, done: str, write: Callable[[], Any]) -> None:
    """Run ``write`` (a submit button's callback): on success say ``done`` at the top; on a
    CostlineError keep it for ``field_error`` (nothing was stored)."""
    errors = st.session_state.setdefault(ERRORS_KEY, {})
    errors.pop(form, None)
    try:
        write()
    except CostlineError as exc:
        errors[form] = (getattr(exc, "field", None) or "", str(exc))
    else:
        st.session_state[FLASH_KEY] = done


def field_error(form: str, *fields: str) -> None:
    """The error of ``form`` under the widget of any of ``fields`` (e.g. 'params' matches
    'params.interval_s')."""
    got = st.session_state.get(ERRORS_KEY, {}).get(form)
    if got and any(got[0] == f or got[0].startswith(f + ".") for f in fields):
        st.error(got[1], icon=":material/error:")


def form_error(form: str, fields: tuple[str, ...]) -> None:
    """An error of ``form`` that names no field shown in it (e.g. PermissionDenied)."""
    got = st.session_state.get(ERRORS_KEY, {}).get(form)
    if got and not any(got[0] == f or got[0].startswith(f + ".") for f in fields):
        st.error(got[1], icon=":material/error:")


def flash() -> None:
    message = st.session_state.pop(FLASH_KEY, None)
    if message:
        st.success(message)


def values(prefix: str, fields: tuple[str, ...]) -> dict[str, Any]:
    """The widget values of a form whose keys are ``{prefix}_{field}``."""
    return {f: st.session_state.get(f"{prefix}_{f}") for f in fields}


def write_now(done: str, write: Callable[..., Any], *args: Any) -> None:
    """Run a write; on success rerun (so every table shows it) and say ``done`` at the top;
    on a CostlineError show it here (nothing was stored)."""
    try:
        write(*args)
    except CostlineError as exc:
        st.error(str(exc))
    else:
        st.session_state[FLASH_KEY] = done
        st.rerun()
