"""From checked string columns to usage-event columns: token classes, prices, the table."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from core.export import unescape_cells
from core.importer import _events
from core.importer._formats import NUMBER_FIELDS, plain_numbers
from core.importer._keys import row_keys
from core.importer._parse import Checker, clean, finish, ints, signed_cost, text, timestamps
from core.importer._pricing import COST_COLUMNS, TOKEN_CLASSES, price_columns
from core.pricing import FLAG_OVER_CONTEXT, Catalog
from core.usage import SCHEMA

US_PER_DAY = 86_400_000_000
PART_FIELDS = {  # field -> SCHEMA column: the cost of each token class
    "cost_input": "cost_input_picousd",
    "cost_cached_input": "cost_cached_input_picousd",
    "cost_cache_write": "cost_cache_write_picousd",
    "cost_output": "cost_output_picousd",
    "cost_reasoning": "cost_reasoning_picousd",
}
NAME_FIELDS = ("org", "user", "project", "task")
TEXT_FIELDS = (
    "model",
    "provider",
    "request_id",
    *NAME_FIELDS,
    *_events.TEXTS,
    "status",
    "criticality",
    "tags",
)
_TOKEN_FIELDS = (
    "input_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
)  # CSV fields, in TOKEN_CLASSES order
I64 = npt.NDArray[np.int64]


def exact_sum(values: I64) -> int:
    """Exact sum of an int64 column (a plain np.sum wraps around past 2**63)."""
    v = np.asarray(values, np.int64)
    return (int(np.sum(v >> 32)) << 32) + int(np.sum(v & 0xFFFFFFFF))


@dataclass
class Rows:
    keep: npt.NDArray[np.bool_]  # rows imported
    blank: npt.NDArray[np.bool_]
    reasons: dict[int, list[str]]  # row index -> problems
    columns: dict[str, pa.Array]  # the kept rows, by SCHEMA column name
    cost_total: int  # pUSD
    unpriced: dict[str, int]  # model -> rows
    ids: pa.Array  # the kept rows' keys (their request ids), see _keys
    nth: npt.NDArray[np.int64]  # earlier kept rows with the same key
    given_ids: bool = False  # the file maps request ids

    def drop(self, mask: npt.NDArray[np.bool_]) -> Rows:
        """The same rows without the kept rows in ``mask`` (duplicates)."""
        if not mask.any():
            return self
        stay = pa.array(~mask)
        columns = {k: v.filter(stay) for k, v in self.columns.items()}
        keep = self.keep.copy()
        keep[np.nonzero(self.keep)[0][mask]] = False
        unpriced_rows = columns["unpriced"].to_numpy(zero_copy_only=False).astype(bool)
        counts = _unpriced_counts(columns["model"], unpriced_rows)
        total = exact_sum(columns["cost_picousd"].to_numpy(zero_copy_only=False))
        return Rows(
            keep,
            self.blank,
            self.reasons,
            columns,
            total,
            counts,
            self.ids.filter(stay),
            self.nth[~mask],
            self.given_ids,
        )


def _unpriced_counts(models: pa.Array, unpriced: npt.NDArray[np.bool_]) -> dict[str, int]:
    """Model -> rows, of the unpriced rows."""
    if not unpriced.any():
        return {}
    vc = pc.value_counts(models.filter(pa.array(unpriced)))
    return dict(zip(vc.field(0).to_pylist(), vc.field(1).to_pylist(), strict=True))


def _dictionary(col: pa.Array) -> tuple[I64, list[str]]:
    enc = pc.dictionary_encode(col)
    codes: I64 = enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    return codes, enc.dictionary.to_pylist()


def parse_rows(
    table: pa.Table,
    fields: dict[str, str],
    required: Sequence[str],
    inclusive: bool,
    catalog: Catalog,
    now: datetime,
    *,
    decimal: str | None = None,
    date_order: str | None = None,
) -> Rows:
    n = table.num_rows
    ck = Checker(n)
    col = {f: clean(table[c]) for f, c in fields.items()}
    for f in TEXT_FIELDS:  # OWASP-escaped cells ("'=x", as Costline's own export writes
        if f in col:  # them) are read back as "=x": the same values and the same keys
            col[f] = unescape_cells(col[f])
    for f in NUMBER_FIELDS:
        if f in col:
            col[f] = _plain(ck, col[f], fields[f], decimal)
    us = timestamps(ck, col["timestamp"], now, date_order)
    ck.flag(pc.equal(col["model"], ""), lambda i, v: f"{fields['model']} is empty")
    tok = {
        f: ints(ck, col[f], fields[f], f in required) if f in col else np.zeros(n, np.int64)
        for f in _TOKEN_FIELDS
    }
    if inclusive:
        parts = tok["cached_tokens"] + tok["cache_write_tokens"]
        what = " + ".join(fields[f] for f in ("cached_tokens", "cache_write_tokens") if f in col)
        inp, out, reasoning = tok["input_tokens"], tok["output_tokens"], tok["reasoning_tokens"]
        ck.flag(parts > inp, lambda i, v: f"{what} {parts[i]} > {fields['input_tokens']} {inp[i]}")
        ck.flag(
            reasoning > out,
            lambda i, v: (
                f"{fields.get('reasoning_tokens')} {reasoning[i]}"
                f" > {fields['output_tokens']} {out[i]}"
            ),
        )
        tok["input_tokens"] = inp - parts
        tok["output_tokens"] = out - reasoning
    # the rows whose costs may be negative (a refund or credit, as Costline's export marks it)
    refund = _marked(ck, col, fields, "refund")
    logged_unpriced = _marked(ck, col, fields, "unpriced")
    parts_given = {  # the cost of a token class, as the file states it (Costline's export)
        c: signed_cost(ck, col[f], fields[f], fields[f], refund)
        for f, c in PART_FIELDS.items()
        if f in col
    }
    given_pico, given = (
        signed_cost(ck, col["cost"], "cost", fields["cost"], refund)
        if "cost" in col
        else (np.zeros(n, np.int64), np.zeros(n, bool))
    )
    event_cols = _events.parse(ck, col, fields)
    checked = finish(ck, list(col.values()))
    codes, names = _dictionary(col["model"])
    pcodes, pnames = _priced_as(col) if "provider" in col else (codes, names)
    idx = np.nonzero(checked.keep)[0]
    classes = {c: tok[f][idx] for c, f in zip(TOKEN_CLASSES, _TOKEN_FIELDS, strict=True)}
    day = (us[idx] // US_PER_DAY).astype("datetime64[D]")
    priced = price_columns(catalog, pcodes[idx], pnames, day, classes)
    g = given[idx]
    over = priced.overflow & ~g
    reasons = dict(checked.reasons)
    for i in idx[over].tolist():
        reasons.setdefault(i, []).append("tokens too many to price in int64 picodollars")
    sel = ~over
    idx, g = idx[sel], g[sel]
    stated = g  # the cost cells as the file states them (part of the row's key)
    # "$0" for a model the catalog does not know, with tokens: the tool that wrote it could
    # not price the call either (LiteLLM logs spend 0 then); its cost is unknown: unpriced
    used = sum((v[sel] for v in classes.values()), np.zeros(len(idx), np.int64)) > 0
    g = g & ~(priced.unpriced[sel] & used & (given_pico[idx] == 0))
    keep = np.zeros(n, bool)
    keep[idx] = True
    comps = {c: v[sel] for c, v in priced.costs.items()}
    # a call logged unpriced, without a cost (Costline's export): still unknown, even where
    # the catalog knows its model now (pricing it would change the restored log's totals)
    unknown = logged_unpriced[idx] & ~g if logged_unpriced is not None else np.zeros_like(g)
    if unknown.any():
        comps = {c: np.where(unknown, 0, v) for c, v in comps.items()}
    total = np.where(g, given_pico[idx], sum(comps.values(), np.zeros(len(idx), np.int64)))
    unpriced = (priced.unpriced[sel] | unknown) & ~g
    everything = len(idx) == n
    taken = pa.array(idx)

    def pick(a: pa.Array) -> pa.Array:
        return a if everything else a.take(taken)

    model_codes = codes[idx]
    name_cols = {f: text(pick(col[f])) for f in NAME_FIELDS if f in col}
    given_provider = text(pick(col["provider"])) if "provider" in col else None
    strings: dict[str, pa.Array | None] = {
        "model": pick(col["model"]),
        "provider": given_provider,
        **name_cols,
    }
    key_ints = {
        "ts": us[idx],
        **{c: v[sel] for c, v in classes.items()},
        # -1: no cost given; a negative cost (a refund) -c is -c - 1, never -1
        "given_cost": np.where(stated, _signed_key(given_pico[idx]), -1),
    }
    keys = row_keys(
        {k: v for k, v in strings.items() if v is not None},
        key_ints,
        pick(col["request_id"]) if "request_id" in col else None,
    )
    columns: dict[str, pa.Array] = {
        "ts": pa.array(us[idx], pa.timestamp("us", tz="UTC")),
        "model": pc.coalesce(
            _own_names(catalog, pcodes[idx], pnames),  # the entry the row is priced at
            _own_names(catalog, model_codes, names),  # groq's 'GPT-4o': still gpt-4o
            pick(col["model"]),
        ),
        "provider": _providers(
            catalog, pick(col["provider"]) if "provider" in col else None, model_codes, names
        ),
        "cost_picousd": pa.array(total, pa.int64()),
        "unpriced": pa.array(unpriced),
        **{c: pa.array(v[sel]) for c, v in classes.items()},
        **{c: _part(comps[c], g, parts_given.get(c), idx) for c in COST_COLUMNS},
        "cache_write_1h_tokens": pa.array(np.zeros(len(idx), np.int64)),
        "price_flags": _flags(priced.over_context[sel]),
    }
    columns.update(name_cols)
    columns.update({k: pick(v) for k, v in event_cols.items()})  # after: never in the key
    return Rows(
        keep,
        checked.blank,
        reasons,
        columns,
        exact_sum(total),
        _unpriced_counts(columns["model"], unpriced),  # by the names stored
        keys.ids,
        keys.nth,
        keys.given,
    )


def _marked(
    ck: Checker, col: dict[str, pa.Array], fields: dict[str, str], field: str
) -> npt.NDArray[np.bool_] | None:
    """Which rows a true/false ``field`` (refund, unpriced) marks (None: not mapped)."""
    if field not in col:
        return None
    marked = _events.bools(ck, col[field], fields[field], False)
    out: npt.NDArray[np.bool_] = marked.to_numpy(zero_copy_only=False).astype(bool)
    return out


def _signed_key(pico: I64) -> I64:
    """A given cost as hashed into a row's key: as it is, a negative one less one (so no
    refund hashes as the -1 of a row without a cost; non-negative costs keep their keys)."""
    out: I64 = np.where(pico < 0, pico - 1, pico)
    return out


def _part(
    priced: I64,
    given: npt.NDArray[np.bool_],
    stated: tuple[I64, npt.NDArray[np.bool_]] | None,
    idx: I64,
) -> pa.Array:
    """A token class's cost column: the catalog's where the row's cost is priced, else the
    file's cell for it (Costline's export states each class), else null (unknown)."""
    if stated is None:
        return pa.array(priced, pa.int64(), mask=given)
    pico, has = stated[0][idx], stated[1][idx]
    return pa.array(np.where(given, pico, priced), pa.int64(), mask=given & ~has)


def _priced_as(col: dict[str, pa.Array]) -> tuple[I64, list[str]]:
    """The catalog name each row is priced under: ``provider/model`` when the row names its
    provider (the same entry a call to ``provider/model`` is priced at: groq's ``gpt-4o`` is
    unpriced, never OpenAI's rate), else the model. Worked out once per distinct pair."""
    pair = pc.binary_join_element_wise(col["provider"], col["model"], "\x1f")
    codes, pairs = _dictionary(pair)
    names: list[str] = []
    for p in pairs:
        provider, model = p.split("\x1f", 1)
        prefix = provider.strip().lower() + "/"
        given = bool(provider.strip()) and not model.lower().startswith(prefix)
        names.append(prefix + model if given else model)
    return codes, names


def _plain(ck: Checker, raw: pa.Array, column: str, decimal: str | None) -> pa.Array:
    """Number cells in the answered decimal format as plain "1234.56" text."""
    col, unfit = plain_numbers(raw, decimal)

    def why(i: int, v: object) -> str:
        return f"{column} {v!r} does not read with {decimal!r} as the decimal mark"

    ck.flag(unfit, why, raw)
    return col


def _flags(over: npt.NDArray[np.bool_]) -> pa.Array:
    """price_flags per row: ["over_context_window"] where the prompt exceeds the window."""
    offsets = np.concatenate([[0], np.cumsum(over)]).astype(np.int32)
    values = pa.array([FLAG_OVER_CONTEXT] * int(over.sum()), pa.string())
    return pa.ListArray.from_arrays(pa.array(offsets), values)


def _own_names(catalog: Catalog, codes: I64, names: list[str]) -> pa.Array:
    """The catalog's own name of ``names[codes[i]]`` where the catalog knows it, without its
    provider prefix ('GPT-4o-mini' and 'openai/gpt-4o-mini' are both 'gpt-4o-mini'); else
    null. Only stored: a row's key keeps the model as written (earlier imports match)."""
    own: list[str | None] = []
    for m in names:
        if not catalog.has(m):
            own.append(None)
            continue
        ref, provider = catalog.canonical(m), catalog.provider_of(m)
        own.append(ref.removeprefix(provider + "/"))
    return pa.array(own, pa.string()).take(pa.array(codes))


def _providers(catalog: Catalog, given: pa.Array | None, codes: I64, names: list[str]) -> pa.Array:
    """The given provider, else the catalog's, else the prefix of 'provider/model';
    lower-case ('OpenAI' is 'openai', as the catalog and the gateway name it)."""
    derived = [
        catalog.provider_of(m)
        if catalog.has(m)
        else (m.split("/", 1)[0] if "/" in m else "unknown")
        for m in names
    ]
    from_model = pa.array(derived, pa.string()).take(pa.array(codes))
    if given is None:
        return pc.utf8_lower(from_model)
    return pc.utf8_lower(pc.coalesce(text(given), from_model))


def build_table(
    columns: dict[str, pa.Array], request_ids: pa.Array, source: str, metadata: str
) -> pa.Table:
    """Usage-event table (SCHEMA) of imported rows. The event fields the file does not map:
    status ok, attempt 1, no tags, latency unknown (see _fields.EVENT_FIELDS)."""
    n = len(request_ids)
    const = {
        "request_id": request_ids,
        "tags": pa.ListArray.from_arrays(
            pa.array(np.zeros(n + 1, np.int32)), pa.array([], pa.string())
        ),
        "status": pa.repeat(pa.scalar("ok"), n),
        "attempt": pa.repeat(pa.scalar(1, pa.int32()), n),
        "usage_estimated": pa.repeat(pa.scalar(False), n),
        "saved_picousd": pa.repeat(pa.scalar(0, pa.int64()), n),
        "cache_hit": pa.repeat(pa.scalar(False), n),
        "ai_called": pa.repeat(pa.scalar(True), n),
        "degraded": pa.repeat(pa.scalar(False), n),
        "criticality": pa.repeat(pa.scalar("normal"), n),
        "source": pa.repeat(pa.scalar(source), n),
        "metadata": pa.repeat(pa.scalar(metadata), n),
    }
    merged = {**const, **columns}
    if "metadata" in columns:  # the file's metadata, with the import's id
        merged["metadata"] = with_import(columns["metadata"], metadata)
    arrays = [
        merged[f.name].cast(f.type) if f.name in merged else pa.nulls(n, f.type) for f in SCHEMA
    ]
    return pa.Table.from_arrays(arrays, schema=SCHEMA)


def with_import(given: pa.Array, metadata: str) -> pa.Array:
    """Each row's given metadata (JSON object text, or null) with the import's keys set."""
    enc = pc.dictionary_encode(given)
    ours = json.loads(metadata)
    texts = [json.dumps({**json.loads(v), **ours}) for v in enc.dictionary.to_pylist()]
    merged = pa.array(texts, pa.string()).take(enc.indices)
    return pc.fill_null(merged, metadata)
