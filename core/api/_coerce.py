"""JSON bodies to the control plane's frozen dataclasses, and back.

``build(cls, data, base)`` checks every key and value against the dataclass's field types
(unknown key, wrong type: 422 naming the field) and fills the rest from ``base`` (PATCH) or
the defaults (create). Validation of values (ranges, known models) stays in the control
plane, which raises ConfigError with the field; the app maps that to 422 too.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from functools import cache
from typing import Any, TypeVar, Union

from core.api._http import ApiError, Schema
from core.control import Weights

T = TypeVar("T")


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _bad(name: str, what: str, value: object) -> ApiError:
    return ApiError(422, f"{name}: must be {what} (got {value!r})", name)


def _value(name: str, tp: Any, value: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _value(name, args[0], value)
    if tp is str:
        if not isinstance(value, str):
            raise _bad(name, "a string", value)
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise _bad(name, "true or false", value)
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _bad(name, "a whole number", value)
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _bad(name, "a number", value)
        return float(value)
    if tp is Decimal:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise _bad(name, "a decimal number (a string such as '12.50')", value)
        try:
            return Decimal(str(value))
        except InvalidOperation:
            raise _bad(name, "a decimal number (a string such as '12.50')", value) from None
    if tp is date:
        try:
            return date.fromisoformat(value)
        except (TypeError, ValueError):
            raise _bad(name, "a date YYYY-MM-DD", value) from None
    if origin is tuple:
        item = typing.get_args(tp)[0]
        if not isinstance(value, list):
            raise _bad(name, "a list", value)
        return tuple(_value(f"{name}[{i}]", item, v) for i, v in enumerate(value))
    if origin in (Mapping, dict) or tp is Mapping:
        if not isinstance(value, dict):
            raise _bad(name, "an object", value)
        vtype = typing.get_args(tp)[1] if typing.get_args(tp) else Any
        return {str(k): _value(f"{name}.{k}", vtype, v) for k, v in value.items()}
    if tp is Weights:
        if not isinstance(value, dict):
            raise _bad(name, "an object with cost, latency, quality", value)
        return build(Weights, value, Weights(), prefix=f"{name}.")
    if tp is Any:
        return value
    raise _bad(name, f"a {tp}", value)


def build(
    cls: type[T],
    data: Mapping[str, Any],
    base: T | None,
    *,
    fixed: Iterable[str] = (),
    prefix: str = "",
) -> T:
    """``cls`` from JSON ``data`` over ``base`` (None: the class defaults). Keys in
    ``fixed`` may not be given (e.g. the id of a PATCH, or server-owned fields)."""
    hints = _hints(cls)  # type: ignore[arg-type]
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    blocked = set(fixed)
    values: dict[str, Any] = {}
    for key, raw in data.items():
        if key not in names or key in blocked:
            raise ApiError(422, f"{prefix}{key}: not a field you can set here", prefix + key)
        if hints[key] is Weights and base is not None and isinstance(raw, dict):
            # a PATCH of weights changes the ones it names (not the others back to defaults)
            values[key] = build(Weights, raw, getattr(base, key), prefix=f"{prefix}{key}.")
            continue
        values[key] = _value(prefix + key, hints[key], raw)
    if base is not None:
        return dataclasses.replace(base, **values)  # type: ignore[type-var]
    missing = [
        n
        for n, f in zip(names, dataclasses.fields(cls), strict=True)  # type: ignore[arg-type]
        if f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
        and n not in values
    ]
    if missing:
        raise ApiError(422, f"{prefix}{missing[0]}: required", prefix + missing[0])
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise ApiError(422, str(exc)) from None


def to_json(value: Any) -> Any:
    """A dataclass (or list of them) as JSON: Decimal as exact strings, dates as ISO."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, Decimal):
        return f"{value:f}"
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def schema_of(cls: type, *, money: Iterable[str] = ()) -> Schema:
    """An OpenAPI object schema from a dataclass's field types."""
    hints = _hints(cls)
    money_fields = set(money)
    props: dict[str, Schema] = {}
    for f in dataclasses.fields(cls):
        props[f.name] = _schema(hints[f.name], f.name in money_fields)
    return {"type": "object", "properties": props}


def _schema(tp: Any, money: bool) -> Schema:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return {**_schema(args[0], money), "nullable": True}
    if tp is Decimal:
        return {"type": "string", "description": "exact decimal" + (" USD" if money else "")}
    simple = {str: "string", bool: "boolean", int: "integer", float: "number"}
    if tp in simple:
        return {"type": simple[tp]}
    if tp is date:
        return {"type": "string", "format": "date"}
    if tp is datetime:
        return {"type": "string", "format": "date-time"}
    if origin is tuple:
        return {"type": "array", "items": _schema(typing.get_args(tp)[0], False)}
    if tp is Weights:
        return schema_of(Weights)
    return {"type": "object"}
