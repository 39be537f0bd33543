"""A signed session cookie, so a reload (F5) or a new tab keeps the user signed in.

After sign-in the browser gets ``costline_session = <username>.<expiry>.<hmac>`` (SameSite
Strict, ``max-age`` = the expiry). A new Streamlit session reads it from
``st.context.cookies`` (the cookies of the page load), checks the HMAC and the expiry, and
signs the user in again; ``auth.current_actor`` then re-reads the users table as on every
run, so a disabled user is still signed out. Sign out deletes the cookie.

Streamlit has no API to set a cookie, so ``st.html`` runs one line of script in the page
(``unsafe_allow_javascript``; no iframe) to set or delete it.

The HMAC key: ``COSTLINE_SESSION_SECRET``, else a random key created once in
``$COSTLINE_HOME/session.key`` (mode 0600). Changing it signs everyone out.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from datetime import timedelta
from pathlib import Path

import streamlit as st

from core import clock
from core.settings import Settings

COOKIE = "costline_session"
LIFETIME = timedelta(hours=12)
PENDING = "session_cookie_pending"  # the script to run on the next render
SIGNED_OUT = "session_signed_out"  # this tab signed out: ignore the page load's cookie


def _key() -> bytes:
    env = os.environ.get("COSTLINE_SESSION_SECRET")
    if env:
        return env.encode()
    path = Path(Settings.from_env().home) / "session.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    return path.read_text().strip().encode()


def _mac(payload: str) -> str:
    return hmac.new(_key(), payload.encode(), hashlib.sha256).hexdigest()


def token(username: str, lifetime: timedelta = LIFETIME) -> str:
    """``<base64 username>.<expiry unix seconds>.<hmac-sha256>``."""
    name = base64.urlsafe_b64encode(username.encode()).decode().rstrip("=")
    expiry = int(clock.timestamp() + lifetime.total_seconds())
    payload = f"{name}.{expiry}"
    return f"{payload}.{_mac(payload)}"


def username_of(value: str | None) -> str | None:
    """The username a cookie value vouches for (None: missing, forged or expired)."""
    parts = (value or "").split(".")
    if len(parts) != 3:
        return None
    name, expiry, mac = parts
    if not hmac.compare_digest(mac, _mac(f"{name}.{expiry}")):
        return None
    if not expiry.isdigit() or int(expiry) <= clock.timestamp():
        return None
    try:
        return base64.urlsafe_b64decode(name + "=" * (-len(name) % 4)).decode()
    except ValueError:
        return None


def from_cookie() -> str | None:
    """The username of this page load's session cookie, unless this tab signed out."""
    if st.session_state.get(SIGNED_OUT):
        return None
    try:
        value = st.context.cookies.get(COOKIE)
    except (AttributeError, RuntimeError):
        return None
    return username_of(value)


def remember(username: str) -> None:
    """Set the cookie on the next render (the sign-in run ends with a rerun)."""
    value = token(username)
    age = int(LIFETIME.total_seconds())
    st.session_state.pop(SIGNED_OUT, None)
    st.session_state[PENDING] = f"{COOKIE}={value}; max-age={age}; path=/; SameSite=Strict"


def forget() -> None:
    """Delete the cookie on the next render; this tab no longer trusts the page load's."""
    st.session_state[SIGNED_OUT] = True
    st.session_state[PENDING] = f"{COOKIE}=; max-age=0; path=/; SameSite=Strict"


def flush() -> None:
    """Run the pending cookie change in the browser (call once per run, any page)."""
    cookie = st.session_state.pop(PENDING, None)
    if cookie is None:
        return
    secure = "; Secure" if _https() else ""
    script = f"<script>document.cookie = {json.dumps(cookie + secure)};</script>"
    st.html(script, unsafe_allow_javascript=True)


def _https() -> bool:
    try:
        return str(st.context.headers.get("X-Forwarded-Proto", "")).lower() == "https"
    except (AttributeError, RuntimeError):
        return False
