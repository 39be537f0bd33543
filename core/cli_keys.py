"""`costline keys create|list|revoke`: the gateway's virtual keys from the shell.

``create`` prints what it made, then the secret alone on the last line of stdout (once; it is
never stored), so ``costline keys create --name ci | tail -1`` captures it. Writes are audited
as the ``system`` actor, or as the console user named by ``--actor`` (role re-checked).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING

from core import clock
from core.settings import comma_list

if TYPE_CHECKING:  # loaded when a command runs: `costline console` stays quick to start
    from core.control import Actor, ControlPlane, VirtualKey


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("keys", help="gateway virtual keys: create, list, revoke")
    ks = p.add_subparsers(dest="keys_command", required=True)
    c = ks.add_parser("create", help="create a key; its secret is the last line of stdout")
    c.add_argument("--name", required=True)
    c.add_argument("--org")
    c.add_argument("--project")
    c.add_argument("--user")
    c.add_argument("--budget-usd", type=_money, metavar="X", help="a blocking budget")
    c.add_argument("--period", choices=("day", "week", "month"), default="month")
    c.add_argument("--rpm", type=int, help="requests per minute")
    c.add_argument("--tpm", type=int, help="tokens per minute")
    c.add_argument("--models", type=_models, default=(), metavar="a,b", help="allowed models")
    c.add_argument("--expires", type=_expiry, metavar="DATE", help="last valid day (UTC)")
    c.add_argument("--actor", help="console user to audit the change as")
    c.set_defaults(func=cmd_create)
    ls = ks.add_parser("list", help="every key with its status (never a secret)")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_list)
    r = ks.add_parser("revoke", help="revoke a key (running gateways refuse it within 5 s)")
    r.add_argument("name")
    r.add_argument("--actor", help="console user to audit the change as")
    r.set_defaults(func=cmd_revoke)


def _money(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"not an amount: {text!r}") from None
    if not value.is_finite() or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive amount: {text!r}")
    return value


def _models(text: str) -> tuple[str, ...]:
    return comma_list(text)


def _expiry(text: str) -> datetime:
    """A date means 'through that day, UTC'; an ISO datetime is taken as given (UTC if
    naive). It must lie in the future."""
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            when = datetime.combine(day + timedelta(days=1), time(), tzinfo=UTC)
        else:
            when = datetime.fromisoformat(text)
            when = when if when.tzinfo else when.replace(tzinfo=UTC)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None
    if when <= clock.now():
        raise argparse.ArgumentTypeError(f"--expires {text} is in the past")
    return when


def _actor(plane: ControlPlane, name: str | None) -> Actor:
    from core.control import SYSTEM, Actor
    from core.errors import PermissionDenied

    if not name:
        return SYSTEM
    user = next((u for u in plane.users() if u.username == name), None)
    if user is None:
        raise PermissionDenied(f"--actor {name!r}: no such console user")
    return Actor(user.username, user.role)  # type: ignore[arg-type]


def cmd_create(args: argparse.Namespace) -> int:
    from core.errors import CostlineError
    from core.keys import KeySpec, issue_key

    spec = KeySpec(
        name=args.name,
        org=args.org,
        project=args.project,
        user=args.user,
        models=args.models,
        budget_usd=args.budget_usd,
        period=args.period,
        rpm=args.rpm,
        tpm=args.tpm,
        expires_at=args.expires,
    )
    with _plane() as plane:
        try:
            issued = issue_key(plane, spec, _actor(plane, args.actor))
        except CostlineError as exc:
            print(f"costline keys create: {exc}", file=sys.stderr)
            return 2
    k = issued.key
    print(f"Created key {k.name!r} ({k.prefix}…){_bound(k)}.")
    if issued.budget is not None:
        b = issued.budget
        print(f"Budget {b.id!r}: ${b.limit_usd} per {b.period}, blocking.")
    for r in issued.limits:
        print(f"Rate limit {r.id!r}: {r.limit:,} {r.metric} per minute.")
    if k.expires_at is not None:
        print(f"Expires {k.expires_at:%Y-%m-%d %H:%M} UTC.")
    print("The secret follows; it is shown only now:")
    print(issued.secret)
    return 0


def _bound(k: VirtualKey) -> str:
    parts = [f"{f}={getattr(k, f)}" for f in ("org", "project", "user") if getattr(k, f)]
    if k.models:
        parts.append("models=" + ",".join(k.models))
    return " for " + ", ".join(parts) if parts else ""


def cmd_list(args: argparse.Namespace) -> int:
    now = clock.now()
    with _plane() as plane:
        keys = plane.virtual_keys()
    rows = [
        {
            "name": k.name,
            "prefix": k.prefix + "…",
            "status": k.status(now),
            "org": k.org,
            "project": k.project,
            "user": k.user,
            "models": list(k.models),
            "created_at": k.created_at.isoformat() if k.created_at else None,
            "expires_at": k.expires_at.isoformat() if k.expires_at else None,
        }
        for k in keys
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("No keys yet: costline keys create --name NAME")
        return 0
    table = [
        (
            k.name,
            k.prefix + "…",
            k.status(now),
            _bound(k).removeprefix(" for ") or "-",
            f"{k.expires_at:%Y-%m-%d %H:%M}" if k.expires_at else "-",
        )
        for k in keys
    ]
    head = ("name", "prefix", "status", "bound to", "expires")
    # each column as wide as its widest cell, so a long binding never shifts the next one
    widths = [max(len(row[i]) for row in (head, *table)) for i in range(4)]
    for row in (head, *table):
        print(
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[4]
        )
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    from core.errors import ConfigError, PermissionDenied

    with _plane() as plane:
        before = plane.virtual_key(args.name)
        if before is not None and before.revoked_at is not None:  # as tokens revoke, the API
            print(
                f"costline keys revoke: no active key {args.name!r}: revoked at "
                f"{before.revoked_at.isoformat()} by {before.revoked_by}",
                file=sys.stderr,
            )
            return 2
        try:
            k = plane.revoke_virtual_key(args.name, _actor(plane, args.actor))
        except (ConfigError, PermissionDenied) as exc:
            print(f"costline keys revoke: {exc}", file=sys.stderr)
            return 2
    print(f"Revoked key {k.name!r} ({k.prefix}…); running gateways refuse it within 5 s.")
    return 0


def _plane() -> ControlPlane:
    from core.control import ControlPlane
    from core.pricing import load_catalog

    return ControlPlane(model_exists=load_catalog().has)
