"""The price catalog: which rates apply to a model on a day, for a prompt size.

A model's rows are grouped into versions (same ``effective_from``); a version is a complete
price sheet with a base tier (``above_prompt_tokens == 0``) and optional long-context tiers.
``lookup`` picks the latest version in effect on the day (the earliest one for days before
it), then the highest tier whose threshold the prompt exceeds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import core
from core.errors import ConfigError, UnpricedModel
from core.pricing.csvfile import COLUMNS, read_prices_csv
from core.pricing.rows import RATE_FIELDS, PriceRow

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Catalog", "default_catalog_path", "load_catalog"]

Tiers = tuple[PriceRow, ...]
_EPOCH = date(1970, 1, 1)
_today: tuple[float, date] = (0.0, _EPOCH)  # (valid until, UTC date)


def utc_today() -> date:
    """Today's date in UTC (price changes take effect on UTC days); cached until midnight."""
    global _today
    now = time.time()
    if now >= _today[0]:
        days = int(now // 86400)
        _today = ((days + 1) * 86400.0, _EPOCH + timedelta(days=days))
    return _today[1]


class _Model:
    __slots__ = ("name", "versions", "single")

    def __init__(self, name: str, rows: list[PriceRow]):
        by_day: dict[date, list[PriceRow]] = {}
        for r in rows:
            by_day.setdefault(r.effective_from, []).append(r)
        versions: list[tuple[date, Tiers]] = []
        for day in sorted(by_day):
            tiers = tuple(sorted(by_day[day], key=lambda r: r.above_prompt_tokens))
            if tiers[0].above_prompt_tokens != 0:
                raise ConfigError(
                    f"{name}: prices from {day} have no base tier (above_prompt_tokens 0)",
                    field="above_prompt_tokens",
                )
            versions.append((day, tiers))
        self.name = name
        self.versions = tuple(versions)
        self.single = versions[0][1] if len(versions) == 1 else None

    def tiers_on(self, at: date | None) -> Tiers:
        if self.single is not None:
            return self.single
        when = utc_today() if at is None else at.date() if isinstance(at, datetime) else at
        for day, tiers in reversed(self.versions):
            if day <= when:
                return tiers
        return self.versions[0][1]


class Catalog:
    """Prices of every known model. Build with ``load_catalog()`` or ``Catalog(rows)``."""

    def __init__(self, rows: Iterable[PriceRow], *, strict: bool = True):
        """``strict``: an alias equal to another model's name is an error; otherwise the
        model's own name wins (used when overrides are layered on with ``with_rows``)."""
        self._rows = sorted(
            rows, key=lambda r: (r.model.lower(), r.effective_from, r.above_prompt_tokens)
        )
        grouped: dict[str, list[PriceRow]] = {}
        for r in self._rows:
            grouped.setdefault(r.model.lower(), []).append(r)
        self._index: dict[str, _Model] = {}
        for key, rows_ in grouped.items():
            providers = {r.provider for r in rows_}
            if len(providers) > 1:
                raise ConfigError(
                    f"{rows_[0].model}: rows under providers {sorted(providers)}", field="provider"
                )
            self._index[key] = _Model(rows_[-1].model, rows_)
        aliases: dict[str, str] = {}
        for key, rows_ in grouped.items():
            for alias in {a.lower() for r in rows_ for a in r.aliases} - {key}:
                if alias in grouped:
                    if strict:
                        raise ConfigError(
                            f"alias {alias!r} of {key} is also a model name", field="aliases"
                        )
                    continue
                if aliases.setdefault(alias, key) != key:
                    raise ConfigError(
                        f"alias {alias!r} is used by {aliases[alias]} and {key}", field="aliases"
                    )
        for alias, key in aliases.items():
            self._index[alias] = self._index[key]
        self._memo: dict[str, _Model] = {}

    # -- lookups -------------------------------------------------------------------------
    def _find(self, model: str) -> _Model:
        m = self._memo.get(model)
        if m is not None:
            return m
        key = model.strip().lower()
        m = self._index.get(key)
        while m is None and "/" in key:  # "openai/gpt-4o", "groq/openai/gpt-oss-120b"
            key = key.split("/", 1)[1]
            m = self._index.get(key)
        if m is None:
            raise UnpricedModel(f"model {model!r} is not in the price catalog", model=model)
        if len(self._memo) < 8192:
            self._memo[model] = m
        return m

    def lookup(self, model: str, at: date | None = None, prompt_tokens: int = 0) -> PriceRow:
        """Rates for ``model`` on day ``at`` (default: today, UTC) for a prompt of this size."""
        m = self._memo.get(model) or self._find(model)
        tiers = m.single if m.single is not None else m.tiers_on(at)
        row = tiers[0]
        if len(tiers) == 1:
            return row
        for tier in tiers[1:]:
            if prompt_tokens > tier.above_prompt_tokens:
                row = tier
            else:
                break
        return row

    def has(self, model: str) -> bool:
        try:
            self._find(model)
        except UnpricedModel:
            return False
        return True

    def __contains__(self, model: object) -> bool:
        return isinstance(model, str) and self.has(model)

    def __len__(self) -> int:
        return len({id(m) for m in self._index.values()})

    def canonical(self, model: str) -> str:
        """The catalog's own name for ``model`` (resolves aliases and provider prefixes)."""
        return self._find(model).name

    def provider_of(self, model: str) -> str:
        return self.lookup(model).provider

    def context_window(self, model: str) -> int:
        return self.lookup(model).context_window

    def max_output(self, model: str) -> int:
        return self.lookup(model).max_output_tokens

    def quality(self, model: str) -> int:
        return self.lookup(model).quality

    def models(self) -> list[str]:
        return sorted({m.name for m in self._index.values()})

    def rows(self) -> list[PriceRow]:
        return list(self._rows)

    # -- layering and display ------------------------------------------------------------
    def with_rows(self, rows: Iterable[PriceRow]) -> Catalog:
        """A new catalog with ``rows`` layered on top: a row with the same model,
        effective_from and tier replaces the old one; a later effective_from wins from its
        day on. Use it for overrides, negotiated rates and self-hosted cost per token."""
        merged = {(r.model.lower(), r.effective_from, r.above_prompt_tokens): r for r in self._rows}
        for r in rows:
            merged[(r.model.lower(), r.effective_from, r.above_prompt_tokens)] = r
        return Catalog(merged.values(), strict=False)

    def to_frame(self) -> pd.DataFrame:
        """All rows as a DataFrame; rates in USD per 1M tokens as exact Decimals."""
        import pandas as pd

        records = []
        for r in self._rows:
            rec: dict[str, object] = {c: getattr(r, c) for c in COLUMNS if c not in RATE_FIELDS}
            rec.update({name: r.usd(name) for name in RATE_FIELDS})
            rec["aliases"] = ";".join(r.aliases)
            records.append(rec)
        return pd.DataFrame.from_records(records, columns=list(COLUMNS))


def default_catalog_path() -> Path:
    return Path(core.__file__).resolve().parents[1] / "data" / "prices.csv"


_default: Catalog | None = None
_default_lock = threading.Lock()


def load_catalog(path: Path | None = None) -> Catalog:
    """Load a catalog CSV; the shipped default (data/prices.csv) is loaded once per process."""
    global _default
    if path is not None:
        return Catalog(read_prices_csv(Path(path)))
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Catalog(read_prices_csv(default_catalog_path()))
    return _default
