"""API keys: the gateway's virtual keys (engineer, admin). A new key's secret is shown once."""

from __future__ import annotations

import streamlit as st

from console import auth, chrome, forms, pickers
from console.commands import keys as commands
from console.frames.display import readable
from console.frames.keys import keys_frame
from console.inputs.keys import FIELDS, LABELS
from console.queries import keys as queries
from console.queries import usage
from console.queries.pricing import catalog
from console.sidebar import current_selection
from core import clock
from core.control import PERIODS, Actor
from core.errors import ConfigError

SECRET_KEY = "keys_new_secret"


def main() -> None:
    actor = auth.current_actor()
    assert actor is not None
    st.title("API keys")
    st.caption(
        "Keys for `costline gateway` (OpenAI/Anthropic-compatible, `base_url=http://host:4000/v1`)."
        " Only a keyed hash is stored; a revoked or expired key is refused within seconds."
    )
    forms.flash()
    show_new_secret()
    keys_table()
    create_form(actor)
    revoke_form(actor)


def show_new_secret() -> None:
    secret = st.session_state.pop(SECRET_KEY, None)
    if secret:
        st.warning("Copy this secret now: it is not stored and will not be shown again.")
        st.code(secret, language=None)


def keys_table() -> None:
    plane = auth.plane()
    keys = plane.virtual_keys()
    if not keys:
        st.info("No keys yet: create one below (or `costline keys create --name NAME`).")
        return
    sel = current_selection()
    spend = queries.spend_by_key(usage.home(), usage.version(), sel.scope)
    shown = {k: sel.money.fmt(v) for k, v in spend.items()}
    frame = keys_frame(keys, plane.budgets(), plane.rate_limits(), shown, clock.now())
    chrome.table(readable(frame, sel.scope.tz), width="stretch")  # local times, blanks
    st.caption(
        "Spend is over the sidebar's time range; budgets and limits are on Budgets and Routing."
    )


def create_form(actor: Actor) -> None:
    with st.form("keys_create"):
        st.subheader("Create a key")
        a, b, c, d = st.columns(4)
        a.text_input("Name", key="keys_name")
        for col, dim in ((b, "org"), (c, "project"), (d, "user")):
            with col:  # values from the log; a new one can be typed
                pickers.pick(f"{dim.capitalize()} (bound)", pickers.logged(dim), f"keys_{dim}")
        st.multiselect("Models (empty: all)", catalog().models(), key="keys_models")
        a, b, c, d, e = st.columns(5)
        a.text_input("Budget USD", key="keys_budget_usd", placeholder="none")
        b.selectbox("Per", PERIODS, index=PERIODS.index("month"), key="keys_period")
        c.text_input("Requests / min", key="keys_rpm", placeholder="no limit")
        d.text_input("Tokens / min", key="keys_tpm", placeholder="no limit")
        e.date_input("Expires after", value=None, key="keys_expires")
        forms.field_error("keys_create", *FIELDS)
        forms.form_error("keys_create", FIELDS)
        st.form_submit_button("Create key", on_click=_create, args=(actor,))


def _create(actor: Actor) -> None:
    values = forms.values("keys", FIELDS)

    def write() -> None:
        try:
            issued = commands.create_key(actor, values)
        except ConfigError as exc:  # in the form's words: 'Budget USD: not an amount'
            field = exc.field or ""
            raise ConfigError(forms.labelled(str(exc), field, LABELS), field=field) from None
        st.session_state[SECRET_KEY] = issued.secret

    forms.submit("keys_create", f"Created key {values.get('name')!r}.", write)


def revoke_form(actor: Actor) -> None:
    active = [k.name for k in auth.plane().virtual_keys() if k.status(clock.now()) == "active"]
    if not active:
        return
    st.subheader("Revoke a key")
    name = st.selectbox("Key", active, key="keys_revoke_name")
    if forms.ask("keys", "revoke", name, "Revoke"):
        forms.confirm(
            "keys",
            "revoke",
            name,
            f"Revoke {name!r}? Running gateways refuse it within seconds; this cannot be undone.",
            f"Revoked {name!r}.",
            lambda: commands.revoke_key(actor, name),
        )


main()
