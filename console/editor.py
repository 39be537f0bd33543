"""The entity editor every control page uses: pick an entity (or a new one), prefill a form
with its values, save (errors under the field they name, nothing stored), delete after a
confirmation, and say the result once at the top (``forms.flash``).

A page describes its entity once (``Entity``) and draws only its own widgets::

    POLICY = Entity("rt_pol", "Policy", "New policy", inputs.POLICY_FIELDS, ...)

    edit = editor.pick(POLICY, policies)
    with edit.form():
        st.text_input("Task", key=edit.key("task"), disabled=edit.current is not None)
        edit.error("task")
    edit.delete_button(f"Delete the policy for {edit.name}?", f"Policy for {edit.name} deleted.")

Session keys: ``{prefix}_pick`` (the choice), ``{prefix}_{slug}_{field}`` (the widgets; slug
is ``new`` or the entity's name), form ``{prefix}_form_{slug}``, delete ``{prefix}_delete_{slug}``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import streamlit as st

from console import forms
from core.errors import CostlineError

T = TypeVar("T")
NEW = "__new__"


@dataclass(frozen=True)
class Entity(Generic[T]):
    """How to edit one kind of entity. ``values(None)`` gives a new entity's widget values
    (and so the form's fields); ``save(values, new)`` and ``delete(name)`` are the writes
    (commands bound to the Actor); ``fields`` are the names its errors may carry."""

    prefix: str
    label: str  # the picker's label
    new_label: str
    fields: tuple[str, ...]
    values: Callable[[T | None], dict[str, Any]]
    name: Callable[[T], str]
    save: Callable[[Mapping[str, Any], bool], T]
    delete: Callable[[str], object]
    saved: str  # the flash after a save
    title: Callable[[T], str] | None = None  # the picker's text of an entity (default: name)
    save_label: str = "Save"
    delete_label: str = "Delete"
    labels: Mapping[str, str] | None = None  # field -> the form's label, for error messages
    check: Callable[[Mapping[str, Any]], object] | None = None  # validate only, no write
    filler: Mapping[str, Any] | None = None  # valid stand-ins, to find every bad field


@dataclass(frozen=True)
class Editing(Generic[T]):
    """The picked entity (None: a new one) and its form's keys."""

    entity: Entity[T]
    current: T | None
    slug: str

    @property
    def name(self) -> str:
        return "" if self.current is None else self.entity.name(self.current)

    @property
    def prefix(self) -> str:
        return f"{self.entity.prefix}_{self.slug}"

    @property
    def form_key(self) -> str:
        return f"{self.entity.prefix}_form_{self.slug}"

    def key(self, field: str) -> str:
        return f"{self.prefix}_{field}"

    def error(self, *fields: str) -> None:
        """The save error naming any of ``fields``, under the widget just drawn."""
        forms.field_error(self.form_key, *fields)

    @contextmanager
    def form(self) -> Iterator[Editing[T]]:
        """``st.form`` with an error that names no field on top and the Save button below."""
        with st.form(self.form_key):
            forms.form_error(self.form_key, self.entity.fields)
            yield self
            st.form_submit_button(
                self.entity.save_label,
                type="primary",
                on_click=forms.submit,
                args=(self.form_key, self.entity.saved, self._save),
            )

    def delete_button(self, question: str, done: str) -> None:
        """Delete, after ``question`` is confirmed (nothing for a new entity)."""
        if self.current is None:
            return
        prefix, name = self.entity.prefix, self.name
        if forms.ask(prefix, "delete", self.slug, self.entity.delete_label):
            forms.confirm(
                prefix,
                "delete",
                self.slug,
                question,
                done,
                lambda: self.entity.delete(name),
            )

    def _save(self) -> None:
        spec = self.entity
        values = forms.values(self.prefix, tuple(spec.values(None)))
        try:
            saved = spec.save(values, self.current is None)
        except CostlineError as exc:
            raise forms.FormErrors(every_error(spec, values, exc)) from None
        if self.current is None:  # the new entity's form starts empty again; edit what was made
            for key in [k for k in st.session_state if str(k).startswith(self.prefix + "_")]:
                del st.session_state[key]
            st.session_state[f"{spec.prefix}_pick"] = spec.name(saved)
        else:  # show what was stored (defaults filled in, numbers normalised)
            for field, value in spec.values(saved).items():
                st.session_state[self.key(field)] = value


def every_error(
    spec: Entity[T], values: Mapping[str, Any], first: CostlineError
) -> list[tuple[str, str]]:
    """The first error and every other field's: each bad field is replaced by a valid
    stand-in (``filler``) and the rest checked again (``check``), in the form's words."""
    labels = spec.labels or {}
    field = getattr(first, "field", None) or ""
    found = [(field, forms.labelled(str(first), field, labels))]
    if spec.check is None or spec.filler is None:
        return found
    trial = dict(values)
    for _ in range(len(spec.fields)):
        key = field.split(".")[0]
        if key not in spec.filler or trial.get(key) == spec.filler[key]:
            break
        trial[key] = spec.filler[key]
        try:
            spec.check(trial)
        except CostlineError as exc:
            field = getattr(exc, "field", None) or ""
            if any(f == field for f, _ in found):
                break
            found.append((field, forms.labelled(str(exc), field, labels)))
        else:
            break
    return found


def pick(entity: Entity[T], entities: Sequence[T]) -> Editing[T]:
    """The picker (a vanished choice falls back to a new entity) and the prefilled values."""
    by_name = {entity.name(e): e for e in entities}
    pick = f"{entity.prefix}_pick"
    if st.session_state.get(pick) not in (NEW, *by_name):
        st.session_state[pick] = NEW
    title = entity.title or entity.name
    chosen: str = st.selectbox(
        entity.label,
        [NEW, *by_name],
        key=pick,
        format_func=lambda n: entity.new_label if n == NEW else title(by_name[n]),
    )
    current = by_name.get(chosen)
    edit = Editing(entity, current, "new" if current is None else chosen)
    for field, value in entity.values(current).items():
        st.session_state.setdefault(edit.key(field), value)
    return edit
