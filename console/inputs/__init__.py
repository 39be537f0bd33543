"""What the user typed <-> core's entities, pure code (no Streamlit, no writes).

``*_values`` turn an entity (or None, for a new one) into an editor's widget values; ``parse_*``
turn widget or table values back into an entity, raising ConfigError that names the field when
a value is not even of the right kind. Everything else is core's validation, at save time.
One module per editor page (``budgets``, ``routing``, ``pricing``, ``playground``, ``admin``)
plus ``text``, the shared readers of typed text.
"""
