"""What every handler reaches: the control plane, the usage reader, the price catalog."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.control import ControlPlane
from core.pricing import Catalog, load_catalog
from core.settings import costline_home
from core.usage import Reader


class Context:
    """Shared by all requests of one app. ``plane``/``reader`` may be injected (tests).

    Live state (budget windows, rate-limit buckets): ``gateway_state`` is how the gateway that
    serves this API hands over its Router's state (read per call: the Router is made at
    startup); else ``state`` as given; else ``make_state()`` from REDIS_URL and
    COSTLINE_REDIS_PREFIX, whose in-process part (rate buckets on the embedded default) is this
    API process's own and none of the gateways'."""

    def __init__(
        self,
        home: Path | None = None,
        *,
        plane: ControlPlane | None = None,
        reader: Reader | None = None,
        state: Any = None,
        gateway_state: Callable[[], Any] | None = None,
    ) -> None:
        self.home = home if home is not None else costline_home()
        self._own = plane is None, reader is None
        self.base_catalog: Catalog = load_catalog()
        self.plane = plane or ControlPlane(model_exists=self.base_catalog.has)
        self.reader = reader or Reader(self.home)
        self._catalog: tuple[int, Catalog] | None = None
        self._lock = threading.Lock()
        self._state: Any = state
        self._gateway_state = gateway_state
        self._made = False  # the state is make_state()'s: its process memory serves no caller

    def state(self) -> Any:
        """Live state (budget windows, rate buckets): the gateway's, given, or made."""
        return self.live()[0]

    def live(self) -> tuple[Any, bool]:
        """(live state, whether its in-process part holds the buckets callers are admitted
        against: true for the gateway's Router's state and for a given one)."""
        if self._gateway_state is not None:
            got = self._gateway_state()
            if got is not None:
                return got, True
        with self._lock:
            if self._state is None:
                from core.state import make_state

                self._state = make_state()
                self._made = True
            return self._state, not self._made

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
