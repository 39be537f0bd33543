"""The API's plumbing: operations declared as data, one error shape, JSON, ETags.

Each resource module lists ``Op``s (method, path, handler, the schema of its parameters,
body and answer). ``app.py`` turns them into Starlette routes and ``_openapi.py`` into the
OpenAPI document, so the document cannot drift from the routes. Handlers are plain
functions ``handler(call) -> Reply | JSON value`` run in a worker thread (core is sync).

Errors always look like ``{"error": {"type": ..., "message": ..., "field": ...}}``:

    | status | type                  | when                                             |
    |--------|-----------------------|--------------------------------------------------|
    | 400    | bad_request           | a malformed parameter, cursor or JSON body       |
    | 401    | unauthorized          | no token, or an unknown, revoked or expired one  |
    | 403    | forbidden             | the user's current role may not do this          |
    | 404    | not_found             | no such resource (or path)                       |
    | 405    | method_not_allowed    | a path that does not take this method            |
    | 409    | conflict              | create of something that exists; a clash         |
    | 412    | precondition_failed   | ``If-Match`` names a version that is not current |
    | 413    | payload_too_large     | a request body over ``MAX_BODY_BYTES`` (8 MiB)    |
    | 422    | invalid               | a value fails validation (``field`` names it)    |
    | 428    | precondition_required | a write to an existing resource without If-Match |
    | 503    | service_unavailable   | a store the answer needs (Redis) stopped answering |
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import orjson

from core.settings import comma_list

if TYPE_CHECKING:
    from core.api._context import Context
    from core.control import Actor

Json = Any
Schema = dict[str, Any]
MAX_BODY_BYTES = 8 * 2**20  # a request body past this is a 413 (a LiteLLM price file: ~1.5 MB)

ERROR_TYPES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    412: "precondition_failed",
    413: "payload_too_large",
    422: "invalid",
    428: "precondition_required",
    503: "service_unavailable",
}


class ApiError(Exception):
    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field

    def body(self) -> Json:
        return {
            "error": {
                "type": ERROR_TYPES.get(self.status, "error"),
                "message": self.message,
                "field": self.field,
            }
        }


def not_found(what: str, ident: object) -> ApiError:
    return ApiError(404, f"no {what} {ident!r}")


@dataclass(frozen=True)
class Param:
    name: str
    schema: Schema
    description: str = ""
    where: str = "query"  # query | path
    required: bool = False


@dataclass(frozen=True)
class Reply:
    body: Json
    status: int = 200
    etag: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Call:
    """One request as a handler sees it."""

    ctx: Context
    actor: Actor
    query: Mapping[str, list[str]]
    path: Mapping[str, str]
    body: Json
    if_match: str | None
    if_none_match: str | None

    def arg(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None

    def args(self, name: str) -> list[str] | None:
        """Repeated or comma-separated values (``?org=a&org=b`` or ``?org=a,b``)."""
        values = self.query.get(name)
        if not values:
            return None
        return [v for item in values for v in comma_list(item)]


Handler = Callable[[Call], "Reply | Json"]


@dataclass(frozen=True)
class Op:
    method: str
    path: str  # under /api/v1, e.g. "/budgets/{id}"
    handler: Handler
    summary: str
    tag: str
    params: Sequence[Param] = ()
    body: Schema | None = None
    response: Schema | None = None
    entity: str | None = None  # checked with ControlPlane.authorize before the handler
    status: int = 200
    etag: bool = False  # the answer carries an ETag; writes take If-Match
    description: str = ""
    errors: tuple[int, ...] = ()  # statuses it may answer besides the usual ones (OpenAPI)
    also: tuple[int, ...] = ()  # other success statuses, same body (PUT: 201 when it creates)


def dumps(value: Json) -> bytes:
    return orjson.dumps(value, default=_default, option=orjson.OPT_NON_STR_KEYS)


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return f"{value:f}"
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"cannot encode {type(value).__name__}")


def etag_of(value: Json) -> str:
    """A strong ETag of a resource's JSON form."""
    digest = hashlib.sha256(orjson.dumps(value, default=_default, option=orjson.OPT_SORT_KEYS))
    return '"' + digest.hexdigest()[:20] + '"'


def none_match(if_none_match: str | None, etag: str) -> bool:
    """Whether ``If-None-Match`` names ``etag`` (or is ``*``): a GET answers 304 then. The
    comparison is weak, as RFC 9110 asks for this header: ``W/"x"`` matches ``"x"``."""
    if not if_none_match:
        return False
    tags = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
    return "*" in tags or etag.removeprefix("W/") in tags


def check_if_match(call: Call, current: Json | None, *, what: str) -> None:
    """Compare-and-set rule: a write to an existing resource needs ``If-Match`` with its
    current ETag (``*`` matches any existing one); creating one needs no header (or
    ``If-None-Match: *``) and fails with 409 if it exists meanwhile."""
    if current is None:
        if call.if_match not in (None, "*") and call.if_match:
            raise ApiError(412, f"{what} does not exist (If-Match was given)")
        if call.if_match == "*":
            raise ApiError(412, f"{what} does not exist (If-Match: *)")
        return
    if call.if_none_match == "*":
        raise ApiError(409, f"{what} already exists")
    if not call.if_match:
        raise ApiError(428, f"{what} exists: send If-Match with its ETag (from a GET) to change it")
    tags = [t.strip() for t in call.if_match.split(",")]
    if "*" not in tags and etag_of(current) not in tags:
        raise ApiError(412, f"{what} changed since you read it (ETag mismatch): read it again")


# -- money and numbers ---------------------------------------------------------------------


def money(pico: int | None) -> str | None:
    """Integer picodollars as an exact decimal string of dollars ('12.3456', '0')."""
    if pico is None:
        return None
    d = Decimal(int(pico)).scaleb(-12).normalize()
    return f"{d.quantize(Decimal(1)) if d == d.to_integral_value() else d:f}"


def parse_int(call: Call, name: str, default: int, lo: int, hi: int) -> int:
    text = call.arg(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ApiError(400, f"{name}: must be a whole number (got {text!r})", name) from None
    if not lo <= value <= hi:
        raise ApiError(400, f"{name}: must be between {lo} and {hi} (got {value})", name)
    return value


TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off")


def parse_bool(call: Call, name: str, default: bool) -> bool:
    """A boolean query parameter: true/false, 1/0, yes/no, on/off in any case (``True`` as
    Python's requests sends it); anything else is a 400 naming it, never read as the default."""
    text = call.arg(name)
    if text is None:
        return default
    if text.lower() in TRUE:
        return True
    if text.lower() in FALSE:
        return False
    raise ApiError(400, f"{name}: must be true or false (got {text!r})", name)


MAX_ID = 2**63 - 1  # the largest integer the databases store (SQLite, PostgreSQL BIGINT)


def parse_id(text: str) -> int | None:
    """A database id or id cursor as the API wrote it (ASCII digits, at most ``MAX_ID``),
    else None: ``str.isdigit`` also takes '²' and '٣', and a larger number overflows."""
    if not (text.isascii() and text.isdigit()):
        return None
    value = int(text)
    return value if value <= MAX_ID else None


def body_object(call: Call) -> dict[str, Any]:
    if not isinstance(call.body, dict):
        raise ApiError(400, "the request body must be a JSON object", "body")
    return call.body
