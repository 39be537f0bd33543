"""Read-only functions: DataFrames and dataclasses from core (the usage log, the control plane,
the price catalog, forecasts). Nothing here writes; see ``console.commands`` for that.

One module per page (``overview``, ``requests``, ``forecast``, ``budgets``, ``routing``,
``pricing``, ``playground``) plus ``usage``, the shared reader and the ``cached`` decorator
keyed on ``Reader.data_version()``.
"""
