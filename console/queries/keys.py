"""The Keys page's reads: spend per virtual key in the selected range."""

from __future__ import annotations

from console.queries.usage import cached, reader_at
from console.selection import Scope


@cached
def spend_by_key(home: str, version: str, scope: Scope) -> dict[str, int]:
    """Picodollars per key name (calls without a key are left out)."""
    frame = reader_at(home).spend_by(["key"], None, scope.filters(key=None))
    return {str(k): int(c) for k, c in zip(frame["key"], frame["cost_picousd"], strict=True) if k}
