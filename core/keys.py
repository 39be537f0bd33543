"""Gateway virtual keys: issue a secret once, store only its keyed hash, look it up in O(1).

    spec = KeySpec(name="ci", project="search", budget_usd=Decimal("50"), rpm=600)
    issued = issue_key(plane, spec, actor)       # issued.secret: shown once, never stored
    index = KeyIndex(snapshot.keys)              # per control-plane snapshot
    key = index.find(secret)                     # one HMAC-SHA256 and one dict lookup

The hash is HMAC-SHA256 of the secret under a server-side pepper: ``COSTLINE_KEY_PEPPER``
when set (the same value on every host of a fleet), else a random one created once in
``$COSTLINE_HOME/gateway.pepper`` with mode 0600. A leaked control-plane database alone
does not let anyone test guesses. A key's budget and rate limits are ordinary rows with
scope ``key`` (ids ``key:<name>``, ``key:<name>:rpm``, ``key:<name>:tpm``), so they show
on the Budgets and Routing pages. See docs/gateway.md.
"""

from __future__ import annotations

import hmac
import os
import secrets
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from hashlib import sha256
from pathlib import Path

from core.control import (
    Actor,
    Budget,
    ControlPlane,
    RateLimit,
    VirtualKey,
    validate_budget,
    validate_key,
    validate_rate_limit,
)
from core.errors import ConfigError
from core.private import private_dir
from core.settings import costline_home

__all__ = [
    "SECRET_PREFIX",
    "IssuedKey",
    "KeyIndex",
    "KeySpec",
    "hash_secret",
    "issue_key",
    "key_budget",
    "key_limits",
    "load_pepper",
    "new_secret",
]

SECRET_PREFIX = "sk-cl-"
SHOWN = len(SECRET_PREFIX) + 6  # characters of the secret kept as its prefix
PEPPER_FILE = "gateway.pepper"


def new_secret() -> str:
    """'sk-cl-' and 43 URL-safe characters (256 random bits)."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def hash_secret(secret: str, pepper: bytes) -> str:
    return hmac.new(pepper, secret.encode("utf-8", "replace"), sha256).hexdigest()


def load_pepper(home: Path | None = None, env: Mapping[str, str] | None = None) -> bytes:
    """The server's pepper: COSTLINE_KEY_PEPPER, else the 0600 file in COSTLINE_HOME
    (created on first use; refused when group or others may read it)."""
    env = os.environ if env is None else env
    given = env.get("COSTLINE_KEY_PEPPER")
    if given:
        if len(given) < 16:
            raise ConfigError("COSTLINE_KEY_PEPPER: use at least 16 characters", field="pepper")
        return given.encode()
    path = (home if home is not None else costline_home(env)) / PEPPER_FILE
    private_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise ConfigError(
                f"{path} is readable by others (mode {mode:o}): run chmod 600 {path}",
                field="pepper",
            ) from None
        data = path.read_bytes().strip()
        if len(data) < 32:
            raise ConfigError(f"{path} is empty or truncated", field="pepper") from None
        return data
    data = secrets.token_hex(32).encode()
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return data


@dataclass(frozen=True, slots=True)
class KeySpec:
    """What ``costline keys create`` and the console's Keys page ask for."""

    name: str
    org: str | None = None
    project: str | None = None
    user: str | None = None
    models: tuple[str, ...] = ()
    budget_usd: Decimal | None = None
    period: str = "month"
    rpm: int | None = None
    tpm: int | None = None
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class IssuedKey:
    key: VirtualKey
    secret: str  # shown once
    budget: Budget | None
    limits: tuple[RateLimit, ...]


def key_budget(spec: KeySpec) -> Budget | None:
    if spec.budget_usd is None:
        return None
    return Budget(
        id=f"key:{spec.name}",
        name=f"key {spec.name}",
        scope="key",
        scope_value=spec.name,
        period=spec.period,
        limit_usd=spec.budget_usd,
        action="block",
        soft_multiplier=1.0,
    )


def key_limits(spec: KeySpec) -> tuple[RateLimit, ...]:
    out = []
    for metric, value, suffix in (("requests", spec.rpm, "rpm"), ("tokens", spec.tpm, "tpm")):
        if value is not None:
            out.append(
                RateLimit(
                    id=f"key:{spec.name}:{suffix}",
                    scope="key",
                    scope_value=spec.name,
                    metric=metric,
                    limit=value,
                    window_s=60,
                    algorithm="sliding_window",
                )
            )
    return tuple(out)


def issue_key(
    plane: ControlPlane, spec: KeySpec, actor: Actor, *, pepper: bytes | None = None
) -> IssuedKey:
    """Create the key, then its budget and rate limits (each an audited write). Everything
    is validated first, so a bad value writes nothing."""
    secret = new_secret()
    pepper = pepper if pepper is not None else load_pepper()
    key = VirtualKey(
        name=spec.name,
        prefix=secret[:SHOWN],
        key_hash=hash_secret(secret, pepper),
        org=spec.org,
        project=spec.project,
        user=spec.user,
        models=spec.models,
        expires_at=spec.expires_at,
    )
    key = validate_key(key, model_exists=plane.model_exists)
    budget = key_budget(spec)
    if budget is not None:
        budget = validate_budget(budget)
    limits = tuple(validate_rate_limit(r) for r in key_limits(spec))
    if plane.virtual_key(key.name) is not None:
        raise ConfigError(
            f"name: a key named {key.name!r} exists (names are never reused)", field="name"
        )
    stored = plane.create_virtual_key(key, actor)
    if budget is not None:
        budget = plane.upsert_budget(budget, actor)
    limits = tuple(plane.upsert_rate_limit(r, actor) for r in limits)
    return IssuedKey(stored, secret, budget, limits)


class KeyIndex:
    """The keys of one snapshot by hash: ``find`` is one HMAC and one dict lookup."""

    def __init__(self, keys: Iterable[VirtualKey], pepper: bytes) -> None:
        self.pepper = pepper
        self.by_hash = {k.key_hash: k for k in keys}

    def find(self, secret: str) -> VirtualKey | None:
        return self.by_hash.get(hash_secret(secret, self.pepper))
