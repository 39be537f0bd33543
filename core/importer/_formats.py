"""Number and date formats the file does not say: asked, never guessed.

Two questions can come up in the mapping step, each with a suggestion and the cells that
raised it; ``import_csv`` refuses to run until each one that applies is answered:

    decimal     a number cell holds a comma ("0,001375", "1,234"): is "," the decimal mark
                ("1.234,56") or a thousands separator ("1,234.56")?
    date_order  a date like 05/11/2023: day/month/year or month/day/year?

With an answer the cells are rewritten column-wise to the plain forms the parser reads
("1234.56", "2023-11-05 ..."); a cell that does not fit the answer is a bad row.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

NUMBER_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "cost",
    "saved",
    "cost_input",
    "cost_cached_input",
    "cost_cache_write",
    "cost_output",
    "cost_reasoning",
    "latency_ms",
    "ttft_ms",
)
DECIMALS = {".": "1,234.56: point decimals, comma thousands", ",": "1.234,56: comma decimals"}
DATE_ORDERS = {"dmy": "day/month/year (16/11/2023)", "mdy": "month/day/year (11/16/2023)"}
SLASH_DATE = r"^(?P<a>\d{1,2})[/.\-](?P<b>\d{1,2})[/.\-](?P<y>\d{4}|\d{2})(?:$|[ T])"
# thousands grouping: the first group has no leading zero ("0,001" is never one thousand)
_GROUPED = {
    ".": r"^\$?\s*-?[1-9]\d{0,2}(,\d{3})+(\.\d*)?$",
    ",": r"^\$?\s*-?[1-9]\d{0,2}(\.\d{3})+(,\d*)?$",
}
_EXAMPLES = 3


@dataclass(frozen=True)
class Question:
    field: str  # "decimal" or "date_order": the import_csv argument that answers it
    text: str
    choices: dict[str, str]  # answer -> label
    suggested: str | None  # what the cells point to (None: they fit both)
    reason: str
    examples: list[str] = dataclasses.field(default_factory=list)  # cells that raised it, quoted


def _examples(col: pa.Array, mask: pa.Array) -> list[str]:
    return [repr(v) for v in col.filter(mask).slice(0, _EXAMPLES).to_pylist()]


def _decimal_question(cols: Mapping[str, pa.Array]) -> Question | None:
    with_comma = {f: pc.match_substring(c, ",") for f, c in cols.items()}
    hits = {f: m for f, m in with_comma.items() if pc.any(m).as_py()}
    if not hits:  # a token count like "1.000": one, or a thousand with "." grouping?
        dotted = {
            f: pc.match_substring_regex(c, r"^[1-9]\d{0,2}(\.\d{3})+$")
            for f, c in cols.items()
            if f.endswith("_tokens")
        }
        dots = {f: m for f, m in dotted.items() if pc.any(m).as_py()}
        if not dots:
            return None
        shown = [f"{f} {e}" for f, m in dots.items() for e in _examples(cols[f], m)]
        return Question(
            "decimal",
            'Token counts like 1.000: is "." a thousands separator?',
            dict(DECIMALS),
            ",",
            'whole token counts with "." and three digits: thousands separators',
            shown[:_EXAMPLES],
        )
    examples: list[str] = []
    decimal_like = grouped = 0
    for f, m in hits.items():
        vals = cols[f].filter(m)
        examples += [f"{f} {e}" for e in _examples(cols[f], m)]
        # "0,5", "12,34", "0,001375": a comma that cannot be a thousands separator
        grouped += int(pc.sum(pc.match_substring_regex(vals, _GROUPED["."])).as_py() or 0)
        decimal_like += len(vals) - int(
            pc.sum(pc.match_substring_regex(vals, _GROUPED["."])).as_py() or 0
        )
    if decimal_like and not grouped:
        suggested, reason = ",", "commas not in groups of three digits: decimal commas"
    elif grouped and not decimal_like:
        suggested, reason = ".", "commas group thousands (1,234): thousands separators"
    else:
        suggested, reason = None, "some commas look like decimals, others like thousands"
    return Question(
        "decimal",
        "Numbers hold commas: which character is the decimal mark?",
        dict(DECIMALS),
        suggested,
        reason,
        examples[:_EXAMPLES],
    )


def _date_question(col: pa.Array) -> Question | None:
    found = pc.match_substring_regex(col, SLASH_DATE)
    if not pc.any(found).as_py():
        return None
    parts = pc.extract_regex(col.filter(found), SLASH_DATE)
    first = pc.cast(pc.struct_field(parts, "a"), pa.int32()).to_numpy()
    second = pc.cast(pc.struct_field(parts, "b"), pa.int32()).to_numpy()
    day_first, month_first = bool((first > 12).any()), bool((second > 12).any())
    examples = _examples(col, found)
    if day_first and not month_first:
        suggested, reason = "dmy", "a first number above 12 (a day)"
    elif month_first and not day_first:
        suggested, reason = "mdy", "a second number above 12 (a day)"
    elif day_first:
        suggested, reason = None, "both orders appear: some rows will not read either way"
        shown = col.filter(found)
        examples = (
            _examples(shown, pa.array(first > 12))[:1] + _examples(shown, pa.array(second > 12))[:1]
        )
    else:
        suggested, reason = None, "every date fits both orders"
    return Question(
        "date_order",
        "Dates like 05/11/2023: which comes first?",
        dict(DATE_ORDERS),
        suggested,
        reason,
        examples,
    )


def questions(cols: Mapping[str, pa.Array]) -> list[Question]:
    """The questions the mapped columns (field -> trimmed strings) raise."""
    out: list[Question] = []
    numbers = {f: c for f, c in cols.items() if f in NUMBER_FIELDS}
    q = _decimal_question(numbers)
    if q is not None:
        out.append(q)
    if "timestamp" in cols:
        q = _date_question(cols["timestamp"])
        if q is not None:
            out.append(q)
    return out


def plain_numbers(col: pa.Array, decimal: str | None) -> tuple[pa.Array, np.ndarray]:
    """Cells in the answered format -> "1234.56" text, and which cells do not fit it."""
    sep = "," if decimal != "," else "."
    has_sep = pc.match_substring(col, sep)
    bad = np.zeros(len(col), bool)
    if decimal is None:
        return col, bad
    if pc.any(has_sep).as_py():
        fits = pc.match_substring_regex(col, _GROUPED[decimal])
        bad = (
            pc.fill_null(pc.and_(has_sep, pc.invert(fits)), False)
            .to_numpy(zero_copy_only=False)
            .astype(bool)
        )
        col = pc.replace_substring(col, sep, "")
    if decimal == ",":
        col = pc.replace_substring(col, ",", ".")
    return col, bad


def iso_dates(col: pa.Array, order: str | None) -> pa.Array:
    """dd/mm/yyyy or mm/dd/yyyy (also "." or "-", 2-digit years as 20yy) -> yyyy-mm-dd,
    keeping any time after it; other cells unchanged."""
    if order is None:
        return col
    s = pc.replace_substring_regex(col, r"^(\d)([/.\-])", r"0\1\2")
    s = pc.replace_substring_regex(s, r"^(\d\d[/.\-])(\d)([/.\-])", r"\10\2\3")  # RE2: \1 "0"
    s = pc.replace_substring_regex(s, r"^(\d\d[/.\-]\d\d[/.\-])(\d\d)($|[ T])", r"\120\2\3")
    day, month = (r"\1", r"\2") if order == "dmy" else (r"\2", r"\1")
    return pc.replace_substring_regex(
        s, r"^(\d\d)[/.\-](\d\d)[/.\-](\d{4})", r"\3-" + month + "-" + day
    )
