"""The price catalog: which rates apply to a model on a day, for a prompt size.

A model's rows are grouped into versions (same ``effective_from``); a version is a complete
price sheet with a base tier (``above_prompt_tokens == 0``) and optional long-context tiers.
``lookup`` picks the latest version in effect on the day (the earliest one for days before
it), then the highest tier whose threshold the prompt exceeds.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import core
from core import clock
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
    now = clock.timestamp()
    if not _today[0] - 86400 <= now < _today[0]:  # a pinned clock may also go back
        days = int(now // 86400)
        _today = ((days + 1) * 86400.0, _EPOCH + timedelta(days=days))
    return _today[1]


class _Model:
    __slots__ = ("name", "provider", "versions", "single", "ref")

    def __init__(self, name: str, provider: str, rows: list[PriceRow]):
        by_day: dict[date, list[PriceRow]] = {}
        for r in rows:
            by_day.setdefault(r.effective_from, []).append(r)
        versions: list[tuple[date, Tiers]] = []
        for day in sorted(by_day):
            tiers = tuple(sorted(by_day[day], key=lambda r: r.above_prompt_tokens))
            if tiers[0].above_prompt_tokens != 0:
                raise ConfigError(
                    f"{provider}/{name}: prices from {day} have no base tier"
                    " (above_prompt_tokens 0)",
                    field="above_prompt_tokens",
                )
            versions.append((day, tiers))
        self.name = name
        self.provider = provider
        self.versions = tuple(versions)
        self.single = versions[0][1] if len(versions) == 1 else None
        self.ref = name  # the name that resolves back to this entry (set by Catalog)

    def tiers_on(self, at: date | None) -> Tiers:
        if self.single is not None:
            return self.single
        when = utc_today() if at is None else at.date() if isinstance(at, datetime) else at
        for day, tiers in reversed(self.versions):
            if day <= when:
                return tiers
        return self.versions[0][1]


class Catalog:
    """Prices of every known (provider, model). Build with ``load_catalog()`` or
    ``Catalog(rows)``.

    One model name may be listed under several providers (OpenAI's and Azure's
    ``gpt-4o-mini``). A bare name means its default provider's entry: the provider it was
    listed under first (``defaults`` wins; ``with_rows`` keeps the base catalog's defaults).
    ``provider/model`` names one provider's entry. Resolution of a name, first match wins:

        1. ``p/rest`` where ``p`` is a provider of the catalog with a model or alias ``rest``
        2. the bare name or alias (its default provider's entry)
        3. ``p/rest`` where ``p`` is a catalog provider without ``rest``: unpriced (never
           another provider's rate)
        4. otherwise an unknown ``x/`` prefix is dropped and the rest resolved again
           ("openrouter/openai/gpt-4o" -> "openai/gpt-4o")
    """

    def __init__(
        self,
        rows: Iterable[PriceRow],
        *,
        strict: bool = True,
        defaults: Mapping[str, str] | None = None,
    ):
        """``strict``: an alias equal to another model's name (same provider) is an error;
        otherwise the model's own name wins (used when overrides are layered on)."""
        given = list(rows)
        first: dict[str, str] = {}
        for r in given:
            first.setdefault(r.model.lower(), r.provider)
        self._defaults = {
            k: (defaults[k] if defaults and k in defaults else p) for k, p in first.items()
        }
        self._rows = sorted(
            given,
            key=lambda r: (r.model.lower(), r.provider, r.effective_from, r.above_prompt_tokens),
        )
        grouped: dict[tuple[str, str], list[PriceRow]] = {}
        for r in self._rows:
            grouped.setdefault((r.provider, r.model.lower()), []).append(r)
        self._providers = frozenset(p for p, _ in grouped)
        self._scoped: dict[tuple[str, str], _Model] = {}
        self._index: dict[str, _Model] = {}
        entries: list[_Model] = []
        for (provider, key), rows_ in grouped.items():
            m = _Model(rows_[-1].model, provider, rows_)
            entries.append(m)
            self._scoped[(provider, key)] = m
            if self._defaults.get(key) == provider:
                self._index[key] = m
            elif key not in self._defaults:  # a default given for a name no longer listed
                self._index.setdefault(key, m)
        bare: dict[str, tuple[bool, _Model]] = {}  # alias -> (claimed by a default, model)
        for (provider, key), rows_ in grouped.items():
            m = self._scoped[(provider, key)]
            default = self._index.get(key) is m
            for alias in sorted({a.lower() for r in rows_ for a in r.aliases} - {key}):
                if (provider, alias) in grouped:
                    if strict:
                        raise ConfigError(
                            f"alias {alias!r} of {key} is also a model name", field="aliases"
                        )
                    continue
                other = self._scoped.setdefault((provider, alias), m)
                if other is not m:
                    raise ConfigError(
                        f"alias {alias!r} is used by {other.name} and {key}", field="aliases"
                    )
                if alias in first:
                    continue  # another provider's model of that name beats an alias
                held = bare.get(alias)
                if held is None or (default and not held[0]):
                    bare[alias] = (default, m)
                elif default and held[0]:
                    raise ConfigError(
                        f"alias {alias!r} is used by {held[1].name} and {key}", field="aliases"
                    )
        for alias, (_, m) in bare.items():
            self._index[alias] = m
        self._memo: dict[str, _Model] = {}
        for m in entries:
            if self._resolve(m.name) is not m:
                m.ref = f"{m.provider}/{m.name}"

    # -- lookups -------------------------------------------------------------------------
    def _resolve(self, model: str) -> _Model | None:
        key = model.strip().lower()
        while True:
            head, sep, rest = key.partition("/")
            known = bool(sep) and head in self._providers
            if known:
                m = self._scoped.get((head, rest))
                if m is not None:
                    return m
            m = self._index.get(key)
            if m is not None or not sep or known:
                return m
            key = rest

    def _find(self, model: str) -> _Model:
        m = self._memo.get(model)
        if m is not None:
            return m
        m = self._resolve(model)
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
        return len({id(m) for m in self._scoped.values()})

    def canonical(self, model: str) -> str:
        """The catalog's own name for ``model`` (resolves aliases and provider prefixes):
        the bare name for a default provider's entry, ``provider/name`` for another's."""
        return self._find(model).ref

    def provider_of(self, model: str) -> str:
        return self._find(model).provider

    def name_under(self, provider: str, model: str) -> str | None:
        """The catalog name of ``model`` (a name or alias) under ``provider``, else None."""
        m = self._scoped.get((provider, model.strip().lower()))
        return None if m is None else m.name

    def providers(self) -> list[str]:
        return sorted(self._providers)

    def default_provider(self, model: str) -> str | None:
        """The provider a bare ``model`` name means (None: not a model name here)."""
        return self._defaults.get(model.strip().lower())

    def context_window(self, model: str) -> int:
        return self.lookup(model).context_window

    def max_output(self, model: str) -> int:
        return self.lookup(model).max_output_tokens

    def quality(self, model: str) -> int:
        return self.lookup(model).quality

    def models(self) -> list[str]:
        """Every entry's canonical name (``provider/name`` for non-default providers)."""
        return sorted({m.ref for m in self._scoped.values()})

    def rows(self) -> list[PriceRow]:
        return list(self._rows)

    # -- layering and display ------------------------------------------------------------
    def with_rows(self, rows: Iterable[PriceRow]) -> Catalog:
        """A new catalog with ``rows`` layered on top: a row with the same provider, model,
        effective_from and tier replaces the old one; a later effective_from wins from its
        day on; a row of another provider is that provider's own entry. The base catalog's
        default providers stay the defaults. Use it for overrides, negotiated rates and
        self-hosted cost per token."""

        def key(r: PriceRow) -> tuple[str, str, date, int]:
            return (r.provider, r.model.lower(), r.effective_from, r.above_prompt_tokens)

        merged = {key(r): r for r in self._rows}
        for r in rows:
            merged[key(r)] = r
        return Catalog(merged.values(), strict=False, defaults=self._defaults)

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
