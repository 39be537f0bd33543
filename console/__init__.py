"""Costline's Streamlit console. Pages call core only through the small modules below.

app.py          the st.navigation router: sign-in, the pages a role sees, sidebar and chrome
app_pages/      one file per page; its main() reads like a description of the UI
auth.py         sign-in, the control plane of this process, role checks for the UI
sidebar.py      the shared sidebar; pages read its choice with current_selection()
selection.py    what the sidebar selected: Scope (range, filters), Money (display currency)
chrome.py       the page chrome around every page: empty-log offer, demo-data banner
forms.py        form plumbing: errors under their field, confirmations, the flash message
editor.py       the entity editor: pick, prefill, save, delete after confirming, flash
queries/        read-only: DataFrames and dataclasses from core (st.cache_data, by page)
commands/       every write; each passes the signed-in Actor to core (role check + audit)
inputs/         pure: typed widget values <-> core entities, ConfigError naming the field
frames/         pure: DataFrame shaping for display (display currency, labels), by page
charts/         pure: DataFrames -> alt.Chart, one shared style

Pages import a package's page module under the package's name, e.g. in budgets.py:
``from console.queries import budgets as queries`` and ``queries.utilisation(...)``.
"""
