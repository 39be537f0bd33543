"""Sign-in against the control plane's users; the signed-in Actor lives in session state.

On first start ``ensure_admin`` creates ``admin``: with COSTLINE_ADMIN_PASSWORD when set, else
a random one-time password printed to this process's stdout (the terminal running streamlit),
which must be changed at the first sign-in (``change_password_page`` comes before any page).
Failed sign-ins are throttled per browser address and username (see core.control.auth).
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
from core.errors import ConfigError
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
            f"    {password}\nYou will be asked to choose a new one.\n",
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
        actor = authenticate(plane(), username.strip(), password, client=client())
    except AccountLocked as exc:
        st.error(f"Account locked: {exc}")
    except LoginFailed:
        st.error("Invalid username or password.")
    else:
        st.session_state[ACTOR_KEY] = actor
        session.remember(actor.username)
        st.rerun()


def client() -> str:
    """Who is signing in, for throttling: the browser's address when Streamlit knows it."""
    ip = getattr(st.context, "ip_address", None)
    return f"ip:{ip}" if isinstance(ip, str) and ip else "console"


def must_change_password(actor: Actor) -> bool:
    return plane().must_change_password(actor.username)


def change_password_page() -> None:
    """Shown instead of every page until a must-change password is replaced."""
    actor: Actor = st.session_state[ACTOR_KEY]
    st.title("Choose a new password")
    st.info(f"Signed in as {actor.username}: choose your own password before you continue.")
    with st.form("change_password"):
        current = st.text_input("Current password", type="password", key="pw_current")
        new = st.text_input("New password (at least 8 characters)", type="password", key="pw_new")
        again = st.text_input("New password again", type="password", key="pw_again")
        submitted = st.form_submit_button("Change password", type="primary")
    if not submitted:
        return
    if new != again:
        st.error("The two new passwords differ.")
        return
    try:
        plane().change_own_password(actor.username, current, new, client=client())
    except AccountLocked as exc:
        st.error(f"Account locked: {exc}")
    except LoginFailed:
        st.error("The current password is wrong.")
    except ConfigError as exc:
        st.error(str(exc))
    else:
        st.rerun()
