"""Pure DataFrame shaping for display (no Streamlit, no I/O): query results in, the tables and
chart frames pages draw out, money converted to the display currency once. One module per
page (``overview``, ``requests``, ``forecast``, ``budgets``, ``routing``, ``pricing``,
``playground``, ``admin``).
"""
