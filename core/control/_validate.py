"""Validation of every editable value: a ConfigError whose ``field`` names the bad field.

Each ``validate_*`` returns the normalised value (e.g. money rounded to whole picodollars) or
raises ``ConfigError(message, field=...)``; the message names the field and the value, so the
console can show it next to the input.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import date
from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Decimal, InvalidOperation, localcontext
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from core.errors import ConfigError
from core.names import name_problem
from core.types import CRITICALITIES

from ._models import (
    ALERT_KINDS,
    BUDGET_ACTIONS,
    BUDGET_SCOPES,
    PERIODS,
    PROMPT_CACHE_TTLS,
    RATE_ALGORITHMS,
    RATE_METRICS,
    RATE_SCOPES,
    ROLES,
    ROUTING_STRATEGIES,
    SAMPLING_STRATEGIES,
    Budget,
    CacheSetting,
    ModelScore,
    PriceOverride,
    RateLimit,
    RoutingPolicy,
    SamplingStrategy,
)

ModelExists = Callable[[str], bool]
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,127}$")
PICO_STEP = Decimal("1e-12")
INT64_MAX = 2**63 - 1  # money columns are BIGINT: about 9.2 million USD in picodollars
RATE_DECIMALS = 18  # USD per 1M tokens: 12 decimals of pUSD per token, what the catalog holds
RATE_MAX = Decimal(INT64_MAX).scaleb(-6)  # USD per 1M: the rate column is a BIGINT of pUSD
WIDE = 60  # Decimal digits that hold any valid rate exactly (19 + 18): no context rounding
SAMPLING_PARAMS: Mapping[str, tuple[str, ...]] = {
    "always": (),
    "periodic": ("interval_s",),
    "change_based": ("threshold",),
    "threshold": ("threshold",),
    "adaptive": ("min_interval_s", "max_interval_s"),
}
SAMPLING_OPTIONAL = ("volatility_window", "base_interval_s")


def fail(field: str, problem: str, value: object) -> ConfigError:
    """'field: problem (got 'value')': a Decimal as its text, as it was typed."""
    shown = str(value) if isinstance(value, Decimal) else value
    return ConfigError(f"{field}: {problem} (got {shown!r})", field=field)


def check_id(field: str, value: object) -> str:
    if isinstance(value, str) and (problem := name_problem(value)):
        raise fail(field, problem, value)
    if not isinstance(value, str) or not ID_RE.match(value):
        raise fail(
            field, "must be 1-128 letters, digits or ._:@/- starting with a letter or digit", value
        )
    return value


def check_name(field: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 200:
        raise fail(field, "must be a non-empty text of at most 200 characters", value)
    problem = name_problem(value)
    if problem:
        raise fail(field, problem, value)
    return value.strip()


def check_choice(field: str, value: object, choices: Iterable[str]) -> str:
    options = tuple(choices)
    if value not in options:
        raise fail(field, f"must be one of {', '.join(options)}", value)
    return str(value)


def check_int(field: str, value: object, *, minimum: int = 0, optional: bool = False) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise fail(field, f"must be a whole number >= {minimum}", value)
    if value > INT64_MAX:  # the column is a BIGINT: storing it failed as an internal error
        raise fail(field, f"must be <= {INT64_MAX}", value)
    return value


def check_float(
    field: str,
    value: object,
    *,
    minimum: float = 0.0,
    maximum: float = math.inf,
    strict: bool = False,
    optional: bool = False,
) -> float | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise fail(field, "must be a number", value)
    number = float(value)
    low_ok = number > minimum if strict else number >= minimum
    if math.isnan(number) or math.isinf(number) or not low_ok or number > maximum:
        bound = f"> {minimum}" if strict else f">= {minimum}"
        upper = "" if math.isinf(maximum) else f" and <= {maximum}"
        raise fail(field, f"must be a finite number {bound}{upper}", value)
    return number


def _amount(field: str, value: object, unit: str) -> Decimal:
    """A finite Decimal >= 0 read from ``value`` (never a bool or None)."""
    try:
        if isinstance(value, bool) or value is None:
            raise InvalidOperation
        number = value if isinstance(value, Decimal) else Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise fail(field, f"must be a number of {unit}", value) from None
    if not number.is_finite() or number < 0:
        raise fail(field, "must be a finite amount >= 0", value)
    return number


def check_money(
    field: str, value: object, *, step: Decimal, optional: bool = False, exact: bool = False
) -> Decimal | None:
    """A non-negative finite Decimal; rounded to ``step`` (or rejected when ``exact``)."""
    if value is None and optional:
        return None
    number = _amount(field, value, "USD")
    largest = Decimal(INT64_MAX) * step
    if number > largest:  # before quantize: a huge amount has more digits than it can hold
        raise fail(field, f"must be <= {largest}", value)
    rounded = number.quantize(step, rounding=ROUND_HALF_EVEN)
    if rounded > largest:
        raise fail(field, f"must be <= {largest}", value)
    if exact and rounded != number:
        raise fail(field, f"has more decimals than {step} allows", value)
    if number > 0 and rounded == 0:  # never a silent 0 (a budget of $0 blocks every call)
        raise fail(field, f"is below the smallest amount it can hold ({step:f})", value)
    return tidy(rounded)


def check_rate(field: str, value: object, *, optional: bool = False) -> Decimal | None:
    """A price rate in USD per 1M tokens, kept exactly: any finite decimal >= 0 with at most
    ``RATE_DECIMALS`` decimals (the catalog's limit, 10**-24 USD per token) and at most
    ``RATE_MAX`` (what the BIGINT column holds). Never rounded: a finer rate is refused."""
    if value is None and optional:
        return None
    number = _amount(field, value, "USD per 1M tokens")
    if number > RATE_MAX:
        raise fail(field, f"must be <= {RATE_MAX}", value)
    sign, digits, exponent = number.as_tuple()
    trailing = len(digits) - len("".join(map(str, digits)).rstrip("0"))
    if number and -(int(exponent) + trailing) > RATE_DECIMALS:  # no big numbers: a tuple
        raise fail(
            field,
            f"has more than {RATE_DECIMALS} decimals (finer than 10**-24 USD per token)",
            value,
        )
    with localcontext(prec=WIDE):
        return tidy(number + 0)  # + 0: -0 and 0E-30 are 0


def tidy(d: Decimal) -> Decimal:
    """Drop trailing zeros without switching to exponent form: 5.000 -> 5, 1E+2 -> 100."""
    d = d.normalize()
    return d.quantize(Decimal(1)) if d == d.to_integral_value() else d


def check_timezone(field: str, value: object) -> str:
    try:
        if not isinstance(value, str) or not value:
            raise ValueError
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise fail(
            field, "must be an IANA time zone such as 'UTC' or 'Europe/Paris'", value
        ) from None
    return value


def check_url(field: str, value: object, *, optional: bool = True) -> str | None:
    if value in (None, "") and optional:
        return None
    parts = urlsplit(value) if isinstance(value, str) else None
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or any(c.isspace() for c in str(value))
    ):
        raise fail(field, "must be an http:// or https:// URL", value)
    return str(value)


def check_model(field: str, value: object, model_exists: ModelExists | None) -> str:
    name = check_name(field, value)
    if model_exists is not None and not model_exists(name):
        raise fail(field, "is not a model in the price catalog", name)
    return name


def optional_model(field: str, value: object, model_exists: ModelExists | None) -> str | None:
    return None if value in (None, "") else check_model(field, value, model_exists)


def validate_budget(
    b: Budget, *, model_exists: ModelExists | None = None, stored: bool = False
) -> Budget:
    """``stored``: a row already in the control plane, as the guard applies it - not refused
    for a limit past what the counters enforce exactly (stored before that rule; the
    guard caps it at the counters' edge), so it cannot stop every call."""
    check_id("id", b.id)
    name = check_name("name", b.name)
    check_choice("scope", b.scope, BUDGET_SCOPES)
    if b.scope == "global":
        if b.scope_value not in (None, ""):
            raise fail("scope_value", "must be empty for a global budget", b.scope_value)
        scope_value = None
    else:
        scope_value = check_name("scope_value", b.scope_value)
    check_choice("period", b.period, PERIODS)
    check_float("soft_multiplier", b.soft_multiplier, minimum=1.0)
    check_choice("action", b.action, BUDGET_ACTIONS)
    if not stored:
        check_counter_room(b)
    limit = check_money("limit_usd", b.limit_usd, step=PICO_STEP, optional=True)
    check_int("limit_tokens", b.limit_tokens, optional=True)
    if limit is None and b.limit_tokens is None:
        raise fail("limit_usd", "set a USD limit or a token limit (or both)", None)
    thresholds = tuple(b.thresholds)
    for t in thresholds:
        if isinstance(t, bool) or not isinstance(t, int) or not 0 < t <= 1000:
            raise fail("thresholds", "each must be a whole percentage in (0, 1000]", thresholds)
    if any(a >= c for a, c in zip(thresholds, thresholds[1:], strict=False)):
        raise fail("thresholds", "must be strictly increasing", thresholds)
    degrade_to = optional_model("degrade_to", b.degrade_to, model_exists)
    tz = None if b.timezone is None else check_timezone("timezone", b.timezone)
    url = check_url("webhook_url", b.webhook_url)
    check_int("reset_generation", b.reset_generation)
    return replace(
        b,
        name=name,
        scope_value=scope_value,
        limit_usd=limit,
        thresholds=thresholds,
        degrade_to=degrade_to,
        timezone=tz,
        webhook_url=url,
        soft_multiplier=float(b.soft_multiplier),
        enabled=bool(b.enabled),
    )


def largest_limit(multiplier: float) -> int:
    """The largest limit (picodollars or tokens) whose hard cap, ``multiplier`` x limit as
    ``core.budgets.hard_cap`` computes it, a budget counter can hold exactly (int64)."""
    m = Decimal(repr(float(multiplier)))
    return int((Decimal(INT64_MAX) / m).to_integral_value(rounding=ROUND_FLOOR))


def max_limit_usd(multiplier: float = 1.0) -> Decimal:
    """The largest USD limit, in whole cents, of a budget whose critical calls may spend
    ``multiplier`` x its limit (1.0: an alert-only budget or a virtual key's)."""
    top = Decimal(largest_limit(multiplier)) * PICO_STEP
    return top.quantize(Decimal("0.01"), rounding=ROUND_FLOOR)


def check_counter_room(b: Budget) -> None:
    """A limit the live counters cannot enforce exactly is refused, naming the maximum.

    Counters (memory, SQLite, Redis INCRBY) hold whole picodollars and tokens in 64 bits,
    at most $9,223,372.036854775807; a blocking or degrading budget lets critical calls run
    to ``soft_multiplier`` x limit, so that cap must fit too. The maximum is named in whole
    cents (and enforced so), the amount a person types. A value that is not a finite number
    is left to ``check_money`` / ``check_int``, which name that problem."""
    m = float(b.soft_multiplier) if b.action != "alert" else 1.0
    why = (
        f" for soft_multiplier {b.soft_multiplier:g} (critical calls may spend up to"
        " soft_multiplier x limit)"
        if m != 1.0
        else ""
    )
    try:
        usd = None if b.limit_usd is None else Decimal(str(b.limit_usd))
    except (InvalidOperation, ValueError):
        usd = None
    if usd is not None and usd.is_finite() and not isinstance(b.limit_usd, bool):
        top = max_limit_usd(m)
        if usd > top:
            raise fail(
                "limit_usd",
                f"must be <= {top} USD (${top:,}){why}: budget counters hold whole"
                f" picodollars in 64 bits, at most ${Decimal(INT64_MAX) * PICO_STEP:,};"
                " a larger amount cannot be enforced exactly - split it into shorter"
                " periods (e.g. monthly budgets for an annual amount)",
                b.limit_usd,
            )
    tokens = b.limit_tokens
    ok_int = isinstance(tokens, int) and not isinstance(tokens, bool)
    if ok_int and m != 1.0 and INT64_MAX >= tokens > largest_limit(m):  # type: ignore[operator]
        raise fail("limit_tokens", f"must be <= {largest_limit(m)}{why}", tokens)


def validate_policy(p: RoutingPolicy, *, model_exists: ModelExists | None = None) -> RoutingPolicy:
    task = check_name("task", p.task)
    primary = check_model("primary_model", p.primary_model, model_exists)
    fallbacks = tuple(p.fallbacks)
    for m in fallbacks:
        check_model("fallbacks", m, model_exists)
    if len(set(fallbacks)) != len(fallbacks) or primary in fallbacks:
        raise fail("fallbacks", "must not repeat a model or the primary model", fallbacks)
    degrade_to = optional_model("degrade_to", p.degrade_to, model_exists)
    check_choice("criticality", p.criticality, CRITICALITIES)
    check_choice("strategy", p.strategy, ROUTING_STRATEGIES)
    w = p.weights
    for name, value in (("cost", w.cost), ("latency", w.latency), ("quality", w.quality)):
        check_float(f"weights.{name}", value)
    if p.strategy == "balanced" and w.cost + w.latency + w.quality <= 0:
        raise fail("weights", "at least one weight must be > 0 for the balanced strategy", w)
    check_int("cache_ttl_s", p.cache_ttl_s, optional=True)
    check_int("max_tokens", p.max_tokens, minimum=1, optional=True)
    if p.prompt_cache is not None:
        check_choice("prompt_cache", p.prompt_cache, PROMPT_CACHE_TTLS)
    return replace(
        p,
        task=task,
        primary_model=primary,
        fallbacks=fallbacks,
        degrade_to=degrade_to,
        personalised=bool(p.personalised),
    )


def validate_sampling(s: SamplingStrategy) -> SamplingStrategy:
    key = check_name("key", s.key)
    check_choice("strategy", s.strategy, SAMPLING_STRATEGIES)
    required = SAMPLING_PARAMS[s.strategy]
    params: dict[str, float] = {}
    for name, value in s.params.items():
        if name not in required + SAMPLING_OPTIONAL:
            raise fail(f"params.{name}", f"is not a parameter of the {s.strategy} strategy", value)
        params[name] = check_float(f"params.{name}", value, strict=True) or 0.0
    for name in required:
        if name not in params:
            raise fail(f"params.{name}", f"is required by the {s.strategy} strategy", None)
    if s.strategy == "adaptive" and params["min_interval_s"] > params["max_interval_s"]:
        raise fail(
            "params.max_interval_s", "must be >= params.min_interval_s", params["max_interval_s"]
        )
    min_interval = check_float("min_interval_s", s.min_interval_s) or 0.0
    check_int("batch_size", s.batch_size, minimum=1)
    timeout = check_float("batch_timeout_s", s.batch_timeout_s, strict=True) or 0.0
    return replace(
        s,
        key=key,
        params=params,
        min_interval_s=min_interval,
        batch_timeout_s=timeout,
        enabled=bool(s.enabled),
    )


def validate_cache_setting(c: CacheSetting) -> CacheSetting:
    task = check_name("task", c.task)
    check_int("ttl_s", c.ttl_s)
    check_float("semantic_threshold", c.semantic_threshold, maximum=1.0, strict=True, optional=True)
    return replace(c, task=task, enabled=bool(c.enabled))


def validate_rate_limit(r: RateLimit) -> RateLimit:
    check_id("id", r.id)
    check_choice("scope", r.scope, RATE_SCOPES)
    scope_value = None if r.scope_value in (None, "") else check_name("scope_value", r.scope_value)
    check_choice("metric", r.metric, RATE_METRICS)
    check_int("limit", r.limit, minimum=1)
    check_int("window_s", r.window_s, minimum=1)
    check_choice("algorithm", r.algorithm, RATE_ALGORITHMS)
    check_int("burst", r.burst, minimum=1, optional=True)
    return replace(r, scope_value=scope_value, enabled=bool(r.enabled))


def validate_price_override(
    o: PriceOverride, *, model_exists: ModelExists | None = None, new_model: bool = False
) -> PriceOverride:
    """``new_model=True`` prices a model the catalog does not know (otherwise a typo guard)."""
    model = check_model("model", o.model, None if new_model else model_exists)
    provider = check_name("provider", o.provider).lower()  # as the catalog names providers
    if not isinstance(o.effective_from, date):
        raise fail("effective_from", "must be a date", o.effective_from)
    rates: dict[str, Any] = {}
    for name in ("input", "output", "cached_input", "cache_write", "reasoning"):
        optional = name not in ("input", "output")
        rates[name] = check_rate(name, getattr(o, name), optional=optional)
    note = o.note if isinstance(o.note, str) else ""
    return replace(o, model=model, provider=provider, note=note[:500], **rates)


def validate_model_score(s: ModelScore, *, model_exists: ModelExists | None = None) -> ModelScore:
    model = check_model("model", s.model, model_exists)
    quality = check_float("quality", s.quality, maximum=1.0)
    return ModelScore(model=model or "", quality=quality or 0.0, note=(s.note or "")[:500])


def validate_setting(key: str, value: Any) -> Any:
    """Known keys are checked; other keys take any JSON value."""
    check_name("key", key)
    if key == "timezone":
        return check_timezone("timezone", value)
    if key == "redis_fail_policy":
        return check_choice("redis_fail_policy", value, ("open", "closed"))
    if key == "cache_scope":
        return check_choice("cache_scope", value, ("org", "key", "global"))
    if key == "currency":
        if not isinstance(value, str) or not re.fullmatch(r"[A-Z]{3}", value):
            raise fail("currency", "must be a three-letter ISO code such as 'USD'", value)
        return value
    if key == "currency_rates":
        if not isinstance(value, Mapping):
            raise fail("currency_rates", "must map currency codes to rates per USD", value)
        out = {}
        for code, rate in value.items():
            number = check_money(f"currency_rates.{code}", rate, step=Decimal("1e-9"))
            if not number:
                raise fail(f"currency_rates.{code}", "must be > 0", rate)
            out[str(code)] = str(number)
        return out
    if key in ALERT_SETTING_CHECKS:
        return ALERT_SETTING_CHECKS[key](value)
    return value


def _whole(field: str, value: object, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise fail(field, f"must be a whole number from {lo} to {hi}", value)
    return value


def _number(field: str, value: object, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise fail(field, f"must be a number from {lo:g} to {hi:g}", value)
    return float(value)


def _email(field: str, value: object) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[^@\s,;<>]+@[^@\s,;<>]+", value):
        raise fail(field, "must be an e-mail address", value)
    return value


def _notifications(value: object) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise fail("notifications", "must be an object (webhook_urls, email_to, smtp)", value)
    extra = set(value) - {"webhook_urls", "email_to", "smtp"}
    if extra:
        raise fail(f"notifications.{sorted(extra)[0]}", "is not a notification setting", value)
    urls = value.get("webhook_urls") or []
    emails = value.get("email_to") or []
    if not isinstance(urls, list) or not isinstance(emails, list):
        raise fail("notifications", "webhook_urls and email_to must be lists", value)
    out: dict[str, Any] = {
        "webhook_urls": [
            check_url(f"notifications.webhook_urls[{i}]", u, optional=False)
            for i, u in enumerate(urls)
        ],
        "email_to": [_email(f"notifications.email_to[{i}]", e) for i, e in enumerate(emails)],
    }
    smtp = value.get("smtp")
    if smtp is not None:
        if not isinstance(smtp, Mapping):
            raise fail("notifications.smtp", "must be an object", smtp)
        allowed = {"host", "port", "sender", "username", "starttls", "ssl"}
        extra = set(smtp) - allowed
        if extra:
            name = sorted(extra)[0]
            hint = " (the password comes from COSTLINE_SMTP_PASSWORD)" if name == "password" else ""
            # the key, not the object: it may hold the password, which must not be echoed
            raise fail(f"notifications.smtp.{name}", "is not an SMTP setting" + hint, name)
        use_ssl, starttls = bool(smtp.get("ssl", False)), bool(smtp.get("starttls", False))
        # without a port: the one for the chosen security (SMTPS 465, submission 587, else 25)
        port = smtp.get("port", 465 if use_ssl else 587 if starttls else 25)
        out["smtp"] = {
            "host": check_name("notifications.smtp.host", smtp.get("host")),
            "port": _whole("notifications.smtp.port", port, 1, 65535),
            "sender": _email("notifications.smtp.sender", smtp.get("sender", "costline@localhost")),
            "username": str(smtp.get("username") or ""),
            "starttls": starttls,
            "ssl": use_ssl,
        }
        login = out["smtp"]
        if login["username"] and not (login["starttls"] or login["ssl"]):
            # smtplib's login would send the username and password in clear
            raise fail(
                "notifications.smtp.username",
                "an SMTP login needs starttls or ssl set to true (without TLS the password"
                " would cross the network in clear); or clear the username",
                login["username"],
            )
    if out["email_to"] and "smtp" not in out:
        raise fail("notifications.smtp", "e-mail recipients need an SMTP server", value)
    return out


def _thresholds(value: object) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise fail("alert_thresholds", "must be an object", value)
    checks: dict[str, Callable[[str, Any], Any]] = {
        "error_rate_pct": lambda f, v: _number(f, v, 0, 100),
        "cache_hit_min_pct": lambda f, v: _number(f, v, 0, 100),
        "latency_p95_ms": lambda f, v: _number(f, v, 1, 3_600_000),
        "min_requests": lambda f, v: _whole(f, v, 1, 10_000_000),
        "window_minutes": lambda f, v: _whole(f, v, 5, 1440),
        "anomalies": lambda f, v: v if isinstance(v, bool) else fail(f, "must be true/false", v),
    }
    out = {}
    for k, v in value.items():
        if k not in checks:
            raise fail(f"alert_thresholds.{k}", "is not an alert threshold", v)
        checked = checks[k](f"alert_thresholds.{k}", v)
        if isinstance(checked, ConfigError):
            raise checked
        out[k] = checked
    return out


ALERT_SETTING_CHECKS: dict[str, Any] = {
    "notifications": _notifications,
    "alert_thresholds": _thresholds,
    "alert_scan_interval_s": lambda v: _whole("alert_scan_interval_s", v, 5, 86_400),
    "retention_days": lambda v: None if v is None else _whole("retention_days", v, 1, 36_500),
}


def validate_role(role: object) -> str:
    return check_choice("role", role, ROLES)


def validate_username(name: object) -> str:
    username = check_id("username", name)
    if username.lower() == "system":
        raise fail("username", "is reserved", username)
    return username


def validate_password(password: object) -> str:
    if not isinstance(password, str) or len(password) < 8 or len(password) > 1024:
        raise ConfigError("password: must be 8 to 1024 characters", field="password")
    return password


def validate_alert_kind(kind: object) -> str:
    return check_choice("kind", kind, ALERT_KINDS)
