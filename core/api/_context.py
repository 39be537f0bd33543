"""What every handler reaches: the control plane, the usage reader, the price catalog."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from core.control import ControlPlane
from core.pricing import Catalog, load_catalog
from core.settings import costline_home
from core.usage import Reader


class Context:
    """Shared by all requests of one app. ``plane``/``reader`` may be injected (tests)."""

    def __init__(
        self,
        home: Path | None = None,
        *,
        plane: ControlPlane | None = None,
        reader: Reader | None = None,
        state: Any = None,
    ) -> None:
        self.home = home if home is not None else costline_home()
        self._own = plane is None, reader is None
        self.base_catalog: Catalog = load_catalog()
        self.plane = plane or ControlPlane(model_exists=self.base_catalog.has)
        self.reader = reader or Reader(self.home)
        self._catalog: tuple[int, Catalog] | None = None
        self._lock = threading.Lock()
        self._state: Any = state

    def state(self) -> Any:
        """Live state (budget windows, rate buckets): given, else from REDIS_URL/memory."""
        with self._lock:
            if self._state is None:
                from core.state import make_state

                self._state = make_state()
            return self._state

    def tz(self) -> str:
        return str(self.plane.get_setting("timezone"))

    def catalog(self) -> Catalog:
        """The catalog in force (shipped + overrides), rebuilt when the plane changes."""
        from core.pricing.overrides import catalog_in_force

        version = self.plane.version()
        with self._lock:
            if self._catalog is None or self._catalog[0] != version:
                self._catalog = (version, catalog_in_force(self.plane, self.base_catalog))
            return self._catalog[1]

    def canonical(self, model: str) -> str:
        cat = self.catalog()
        return cat.canonical(model) if cat.has(model) else model

    def close(self) -> None:
        own_plane, own_reader = self._own
        if own_reader:
            self.reader.close()
        if own_plane:
            self.plane.close()
