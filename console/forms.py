"""The editors' shared plumbing. A form's save runs in its submit button's callback
(``submit``), so a CostlineError is known before the form is drawn again and shows under the
field it names (``field_error``), with nothing stored. A write outside a form (a button)
goes through ``write_now``; one that needs a second click (delete, reset) goes through ``ask``
and ``confirm``. Either way a success is said once, at the top (``flash``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import streamlit as st

from core.errors import CostlineError

ERRORS_KEY = "ctl_errors"
FLASH_KEY = "ctl_flash"
CONFIRM_KEY = "ctl_confirm"  # the key of the one action waiting for confirmation


class FormErrors(CostlineError):
    """Every field's problem at once: ``errors`` is a list of (field, message)."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(m for _, m in errors))
        self.errors = errors


def submit(form: str, done: str, write: Callable[[], Any]) -> None:
    """Run ``write`` (a submit button's callback): on success say ``done`` at the top; on a
    CostlineError keep it for ``field_error`` (nothing was stored)."""
    errors = st.session_state.setdefault(ERRORS_KEY, {})
    errors.pop(form, None)
    try:
        write()
    except FormErrors as exc:
        errors[form] = list(exc.errors)
    except CostlineError as exc:
        errors[form] = [(getattr(exc, "field", None) or "", str(exc))]
    else:
        st.session_state[FLASH_KEY] = done


def _errors(form: str) -> list[tuple[str, str]]:
    got = st.session_state.get(ERRORS_KEY, {}).get(form) or []
    return [got] if isinstance(got, tuple) else list(got)


def _names(field: str, fields: tuple[str, ...]) -> bool:
    return any(field == f or field.startswith(f + ".") for f in fields)


def field_error(form: str, *fields: str) -> None:
    """The errors of ``form`` under the widget of any of ``fields`` (e.g. 'params' matches
    'params.interval_s')."""
    for field, message in _errors(form):
        if _names(field, fields):
            st.error(message, icon=":material/error:")


def form_error(form: str, fields: tuple[str, ...]) -> None:
    """Errors of ``form`` that name no field shown in it (e.g. PermissionDenied), and how
    many fields need fixing when there are several."""
    found = _errors(form)
    if len(found) > 1:
        st.error(
            f"{len(found)} fields need fixing: "
            + ", ".join(m.split(":")[0] for _, m in found)
            + ". Nothing was saved.",
            icon=":material/error:",
        )
    for field, message in found:
        if not _names(field, fields):
            st.error(message, icon=":material/error:")


def labelled(message: str, field: str, labels: Mapping[str, str]) -> str:
    """A core message in the form's words: 'scope_value: required ... (got None)' ->
    'Scope value: required ...' (a dotted field such as 'weights.cost' by its own label when
    it has one, else by its head's)."""
    for name in (field, field.split(".")[0]):
        label = labels.get(name)
        if name and label and message.startswith(name):
            message = label + message[len(name) :]
            break
    for name, text in labels.items():
        message = message.replace(f"'{name}'", f"'{text}'")
    for empty in (" (got None)", " (got '')"):
        message = message.replace(empty, "")
    return message


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


def ask(
    prefix: str,
    action: str,
    name: str,
    label: str,
    *,
    where: Any = st,
    key_override: str | None = None,
    **kw: Any,
) -> bool:
    """A button ``{prefix}_{action}_{name}`` (or ``key_override``) that only asks (``confirm``
    then does it); True while its question is open."""
    key = f"{prefix}_{action}_{name}"
    where.button(label, key=key_override or key, on_click=_set_confirm, args=(key,), **kw)
    return bool(st.session_state.get(CONFIRM_KEY) == key)


def confirm(
    prefix: str, action: str, name: str, question: str, done: str, write: Callable[[], Any]
) -> None:
    """The open question of ``ask``: Confirm runs ``write`` (as ``submit``, its error shows
    here), Cancel closes it."""
    key = f"{prefix}_{action}_{name}"
    st.warning(question)
    yes, no = st.columns(2)
    yes.button(
        f"Confirm {action}",
        key=f"{prefix}_{action}_yes_{name}",
        type="primary",
        on_click=_confirmed,
        args=(key, done, write),
    )
    no.button("Cancel", key=f"{prefix}_{action}_no_{name}", on_click=_set_confirm, args=(None,))
    form_error(key, ())


def _set_confirm(key: str | None) -> None:
    st.session_state[CONFIRM_KEY] = key


def _confirmed(key: str, done: str, write: Callable[[], Any]) -> None:
    _set_confirm(None)
    submit(key, done, write)
