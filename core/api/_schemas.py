"""Small JSON-schema builders for the OpenAPI document (OpenAPI 3.0 dialect)."""

from __future__ import annotations

from typing import Any

from core.api._http import Schema

MONEY: Schema = {
    "type": "string",
    "pattern": r"^-?\d+(\.\d+)?$",
    "description": "exact decimal amount of USD, e.g. '12.3456'",
}
_TYPES: dict[str, Schema] = {
    "string": {"type": "string"},
    "integer": {"type": "integer"},
    "number": {"type": "number"},
    "boolean": {"type": "boolean"},
    "object": {"type": "object"},
    "array": {"type": "array", "items": {}},
    "money": MONEY,
    "datetime": {"type": "string", "format": "date-time"},
    "date": {"type": "string", "format": "date"},
    "strings": {"type": "array", "items": {"type": "string"}},
    "integers": {"type": "array", "items": {"type": "integer"}},
}


def field(kind: str | Schema, nullable: bool = False, **extra: Any) -> Schema:
    schema = dict(_TYPES[kind]) if isinstance(kind, str) else dict(kind)
    if nullable:
        schema["nullable"] = True
    schema.update(extra)
    return schema


def obj(required: tuple[str, ...] = (), **fields: str | Schema) -> Schema:
    """An object with these properties (a kind name or a schema each)."""
    schema: Schema = {
        "type": "object",
        "properties": {k: field(v) for k, v in fields.items()},
    }
    if required:
        schema["required"] = list(required)
    return schema


def page_of(item: Schema) -> Schema:
    return obj(
        data={"type": "array", "items": item},
        next_cursor=field("string", nullable=True),
        note=field("string", nullable=True),
    )


def list_of(item: Schema) -> Schema:
    return obj(data={"type": "array", "items": item})
