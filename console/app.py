"""Costline console: the st.navigation router and the frame around every page.

Run it with ``costline console`` (or ``streamlit run console/app.py``). Adding a page is one
file in ``console/app_pages/`` and one line in ``PAGES``: a registered page whose file does
not exist yet is left out, and a role below the page's ``role`` does not see it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `streamlit run console/app.py` without an installed package
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from console import auth, session  # noqa: E402

PAGE_DIR = Path(__file__).parent / "app_pages"


class PageSpec(NamedTuple):
    file: str  # in console/app_pages/
    title: str
    icon: str
    section: str
    role: str  # lowest role that sees the page


PAGES = [
    PageSpec("overview.py", "Overview", ":material/dashboard:", "Spend", "viewer"),
    PageSpec("requests.py", "Requests", ":material/list_alt:", "Spend", "viewer"),
    PageSpec("forecast.py", "Forecast", ":material/trending_up:", "Spend", "viewer"),
    PageSpec("budgets.py", "Budgets", ":material/savings:", "Controls", "viewer"),
    PageSpec("routing.py", "Routing & Sampling", ":material/alt_route:", "Controls", "viewer"),
    PageSpec("pricing.py", "Pricing", ":material/sell:", "Controls", "viewer"),
    PageSpec("alerts.py", "Alerts", ":material/notifications:", "Controls", "viewer"),
    PageSpec("keys.py", "API keys", ":material/key:", "Controls", "engineer"),
    PageSpec("playground.py", "Playground", ":material/science:", "Controls", "engineer"),
    PageSpec("import_export.py", "Import/Export", ":material/swap_vert:", "Data", "viewer"),
    PageSpec("admin.py", "Admin", ":material/admin_panel_settings:", "Data", "admin"),
]


def pages_for(role: str) -> dict[str, list[st.Page]]:
    """The navigation a role sees, by section, in PAGES order."""
    nav: dict[str, list[st.Page]] = {}
    for spec in PAGES:
        path = PAGE_DIR / spec.file
        if path.exists() and auth.RANK.get(role, -1) >= auth.RANK[spec.role]:
            page = st.Page(path, title=spec.title, icon=spec.icon, default=not nav)
            nav.setdefault(spec.section, []).append(page)
    return nav


def main() -> None:
    st.set_page_config(page_title="Costline", page_icon=":material/payments:", layout="wide")
    auth.plane()  # on first start this creates 'admin' and prints its one-time password
    actor = auth.current_actor()
    session.flush()  # set or delete the session cookie after sign-in / sign-out
    if actor is None:
        st.navigation(
            [st.Page(auth.sign_in_page, title="Sign in", icon=":material/login:")],
            position="hidden",
        ).run()
        return
    if auth.must_change_password(actor):
        page = st.Page(auth.change_password_page, title="New password", icon=":material/key:")
        st.navigation([page], position="hidden").run()
        return
    # imported once signed in: the sign-in page (the first load) skips their ~0.9 s of
    # imports (the demo loader, the usage commands, the sidebar's queries)
    from console import chrome, sidebar

    navigation = st.navigation(pages_for(actor.role), expanded=True)
    sidebar.build(actor)
    chrome.demo_state(actor)
    chrome.quarantine_state(actor)
    navigation.run()


# Streamlit runs this file as __main__; importing it (for PAGES) does nothing
if __name__ == "__main__":
    main()
