"""Sign-in against the control plane's users; the signed-in Actor lives in session state.

On first start ``ensure_admin`` creates ``admin``: with COSTLINE_ADMIN_PASSWORD when set, else
a random one-time password printed to this process's stdout (the terminal running streamlit).
Hiding pages is only convenience: every write passes the Actor to core, which checks the role.
"""

from __future__ import annotations

import streamlit as st

from console import session
from core.control import (
    ROLES,
    AccountLocked,
    Actor,
    ControlPlane,
    LoginFailed,
    authenticate,
    control_url,
    ensure_admin,
)
from core.pricing import load_catalog

ACTOR_KEY = "actor"
RANK = {role: i for i, role in enumerate(ROLES)}  # viewer < engineer < admin


@st.cache_resource(show_spinner=False)
def _plane(url: str) -> ControlPlane:
    catalog = load_catalog()
    planes: list[ControlPlane] = []

    def model_exists(model: str) -> bool:  # the catalog, or a model priced by an override
        return catalog.has(model) or any(o.model == model for o in planes[0].price_overrides())

    plane = ControlPlane(url, model_exists=model_exists)
    planes.append(plane)
    password = ensure_admin(plane)
    if password:
        print(
            "\nCostline first start: sign in as 'admin' with this one-time password:\n"
            f"    {password}\nChange it on the Admin page.\n",
            flush=True,
        )
    return plane


def plane() -> ControlPlane:
    """The control plane of this COSTLINE_HOME / COSTLINE_CONTROL_URL (one per process)."""
    return _plane(control_url())


def may(actor: Actor | None, role: str) -> bool:
    """Has ``actor`` at least ``role`` (viewer < engineer < admin)?"""
    return actor is not None and RANK.get(actor.role, -1) >= RANK[role]


def current_actor() -> Actor | None:
    """The signed-in Actor, re-read from the users table (a disabled user is signed out,
    a changed role takes effect on the next rerun)."""
    actor: Actor | None = st.session_state.get(ACTOR_KEY)
    if actor is None:
        actor = _from_cookie()
    if actor is None:
        return None
    user = next((u for u in plane().users() if u.username == actor.username), None)
    if user is None or user.disabled:
        sign_out()
        return None
    if user.role != actor.role:
        actor = Actor(user.username, user.role)  # type: ignore[arg-type]
        st.session_state[ACTOR_KEY] = actor
    return actor


def _from_cookie() -> Actor | None:
    """A reload: the user of a valid session cookie (see console/session.py)."""
    username = session.from_cookie()
    user = next((u for u in plane().users() if u.username == username), None)
    if user is None or user.disabled:
        return None
    actor = Actor(user.username, user.role)  # type: ignore[arg-type]
    st.session_state[ACTOR_KEY] = actor
    return actor


def sign_out() -> None:
    for key in list(st.session_state.keys()):
        del st.session_state[key]
    session.forget()


def sign_in_page() -> None:
    st.title("Costline")
    st.caption("LLM cost router and spend console")
    with st.form("sign_in"):
        username = st.text_input("Username", key="login_user")
        password = st.text_input("Password", type="password", key="login_password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if not submitted:
        return
    try:
        actor = authenticate(plane(), username.strip(), password)
    except AccountLocked as exc:
        st.error(f"Account locked: {exc}")
    except LoginFailed:
        st.error("Invalid username or password.")
    else:
        st.session_state[ACTOR_KEY] = actor
        session.remember(actor.username)
        st.rerun()
