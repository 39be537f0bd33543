"""Events under construction: a dict of equally long numpy columns."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

Columns = dict[str, npt.NDArray[Any]]


def row_count(c: Columns) -> int:
    return len(next(iter(c.values()))) if c else 0


def append_rows(c: Columns, rows: Columns) -> None:
    """Append ``rows``; columns it lacks get zeros (False, 0) of the column's type."""
    n = row_count(rows)
    for k, v in c.items():
        add = rows[k] if k in rows else np.zeros(n, v.dtype)
        c[k] = np.concatenate([v, np.asarray(add, v.dtype)])
