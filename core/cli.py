"""The `costline` command."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from core import cli_keys
from core.types import usd_places

if TYPE_CHECKING:
    from core.worker import Delivered

APP = Path(__file__).resolve().parents[1] / "console" / "app.py"


def cmd_console(args: argparse.Namespace) -> int:
    """Start the Streamlit console; Streamlit's own STREAMLIT_* environment settings win.
    With ``--worker`` (the default) the alert worker runs beside it, so alerts fire whether
    or not a page is open (several workers are fine: one holds the lease)."""
    if wanted(args.demo, "COSTLINE_DEMO", False):
        load_demo_if_empty()
    print_first_admin()
    worker = None
    if wanted(args.worker, "COSTLINE_WORKER", True):
        worker = subprocess.Popen(
            [sys.executable, "-m", "core.cli", "worker"], env=os.environ.copy()
        )
    cmd = [sys.executable, "-m", "streamlit", "run", str(APP)]
    try:
        return run_forwarding(cmd, console_env(os.environ))
    finally:
        if worker is not None:
            worker.terminate()
            try:
                worker.wait(10)
            except subprocess.TimeoutExpired:
                worker.kill()


def wanted(flag: bool | None, variable: str, default: bool) -> bool:
    """An on/off flag: as given (``--x`` / ``--no-x``), else ``$variable`` (read when the
    command runs, so a bad value breaks only it), else ``default``."""
    from core.settings import env_flag

    return flag if flag is not None else env_flag(variable, default)


# The settings of the repository's .streamlit/config.toml that must hold wherever the console
# is started from (Streamlit reads config.toml from the working directory only): no "Deploy"
# button or developer menu for anyone, no usage statistics, no source watcher and no full
# gc.collect() after each run (both delay every page). STREAMLIT_* set by the user win.
CONSOLE_STREAMLIT_ENV = {
    "STREAMLIT_CLIENT_TOOLBAR_MODE": "viewer",
    "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
    "STREAMLIT_SERVER_FILE_WATCHER_TYPE": "none",
    "STREAMLIT_RUNNER_POST_SCRIPT_GC": "false",
}


def console_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The console's environment: ``environ`` with ``CONSOLE_STREAMLIT_ENV`` as defaults."""
    return {**CONSOLE_STREAMLIT_ENV, **environ}


def run_forwarding(cmd: list[str], env: dict[str, str]) -> int:
    """Run ``cmd`` to its end; SIGTERM, SIGINT and SIGHUP sent to this process are passed
    on to it, so stopping `costline console` (``kill PID``) stops Streamlit and frees its
    port instead of leaving it behind."""
    child = subprocess.Popen(cmd, env=env)

    def forward(signum: int, _frame: object) -> None:
        if child.poll() is None:
            child.send_signal(signum)

    wanted = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    previous = {s: signal.signal(s, forward) for s in wanted}
    try:
        return child.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def print_first_admin() -> None:
    """On first start, create 'admin' now so its one-time password shows before the URL."""
    from core.control import ControlPlane, ensure_admin

    plane = ControlPlane()
    try:
        password = ensure_admin(plane)
    finally:
        plane.close()
    if password:
        print(
            "\nCostline first start: sign in as 'admin' with this one-time password:\n"
            f"    {password}\nChange it on the Admin page.\n",
            flush=True,
        )


def load_demo_if_empty(home: Path | None = None) -> bool:
    """Load the demo data set when the usage log is empty; True when it did."""
    from core.demo import load_demo
    from core.settings import costline_home
    from core.usage import Reader

    home = home if home is not None else costline_home()
    with Reader(home) as reader:
        if reader.count() > 0:
            return False
    print(
        f"Loading demo data into {home} (remove it with one click in the console) ...", flush=True
    )
    load_demo(home)
    return True


def cmd_demo(args: argparse.Namespace) -> int:
    """Load (or with --remove delete) the demo data set and its control-plane entries."""
    from core.demo import load_demo, remove_demo

    if args.remove:
        print(f"Removed {remove_demo():,} demo events and the demo budgets, policies, limits.")
        return 0
    s = load_demo(days=args.days, seed=args.seed, refresh=args.refresh)
    state = "Loaded" if s.loaded else "Already loaded (use --refresh to regenerate):"
    print(
        f"{state} {s.events:,} demo events, {s.start} to {s.end}, {usd_places(s.cost_usd)} "
        f"({s.seconds:.1f}s).\nIncident: {s.incident}"
    )
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    """Import a usage CSV (or Parquet) file; the mapping is suggested from the header,
    --map COLUMN=FIELD wins. Nothing is written while a row is bad unless --skip-bad-rows; a
    comma in numbers or a date like 05/11/2023 needs --decimal / --date-order. Problems print
    as one message."""
    from core.errors import CostlineError
    from core.importer import FIELDS, import_csv, read_preview

    try:
        preview = read_preview(args.file)
        mapping = dict(preview.mapping)
        for item in args.map:
            column, sep, field = item.partition("=")
            if not sep or not column.strip() or not field.strip():
                print(f"costline import: --map wants COLUMN=FIELD, got {item!r}", file=sys.stderr)
                return 2
            if field.strip() not in FIELDS:  # else it read as 'no column was recognised as ...'
                print(
                    f"costline import: --map {item}: {field.strip()!r} is not a field "
                    f"(fields: {', '.join(FIELDS)})",
                    file=sys.stderr,
                )
                return 2
            mapping = {f: c for f, c in mapping.items() if c != column.strip()}
            mapping[field.strip()] = column.strip()
        missing = [
            f for f in ("timestamp", "model", "input_tokens", "output_tokens") if f not in mapping
        ]
        if missing:
            print(
                f"costline import: no column of {args.file.name} was recognised as "
                f"{', '.join(missing)}.\n  Columns in the file: {', '.join(preview.columns)}\n"
                f"  Map them with --map COLUMN=FIELD (fields: {', '.join(FIELDS)}), e.g.\n"
                f"  costline import {args.file} --map '{preview.columns[0]}=timestamp'",
                file=sys.stderr,
            )
            return 2
        print("Mapping: " + ", ".join(f"{c} -> {f}" for f, c in mapping.items()))
        replace = None
        if args.replace:
            source, start, end = args.replace
            replace = (source, _utc(start), _utc(end))
        result = import_csv(
            args.file,
            mapping,
            source=args.source,
            tokens_inclusive=preview.tokens_inclusive if args.inclusive is None else args.inclusive,
            decimal=args.decimal,
            date_order=args.date_order,
            skip_bad_rows=args.skip_bad_rows,
            dry_run=args.dry_run,
            replace=replace,
        )
    except CostlineError as exc:
        print(f"costline import: {exc.message}", file=sys.stderr)
        return 2
    print(result.message)
    for bad in result.bad_rows[:20]:
        print(f"  line {bad.line}: {bad.reason}")
    if len(result.bad_rows) > 20:
        print(f"  ... and {len(result.bad_rows) - 20:,} more bad rows")
    if result.needs_confirmation:
        print("Run again with --skip-bad-rows to import the good rows and skip these.")
        return 2
    return 0 if result.imported or result.skipped_duplicate_file or result.duplicates else 2


def _utc(text: str) -> datetime:
    """An ISO date or date-time; naive means UTC."""
    from core.errors import ConfigError

    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"--replace: {text!r} is not an ISO date/time", field="replace") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def cmd_compact(args: argparse.Namespace) -> int:
    """Merge small usage segments into large ones (in the bucket, as its one leader, when
    COSTLINE_EVENTS_URL is set)."""
    from core.usage import BucketConfig, compact

    cfg = BucketConfig.from_env()
    if cfg is not None:
        from core.settings import costline_home
        from core.usage import compact_bucket

        r = compact_bucket(costline_home(), cfg, wait=True, min_small=2)
        if r.not_done is not None:  # it said "Merged 0 ... into 0." and exit 0
            print(f"costline compact: nothing compacted: {r.not_done}", file=sys.stderr)
            return 1
        print(f"Merged {r.merged} usage segments in {cfg.url()} into {r.written}.")
        return 0
    r = compact()
    print(f"Merged {r.merged} usage segments into {r.written}.")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    """Check COSTLINE_HOME: exit 1 when something needs attention (e.g. a quarantine)."""
    from core.doctor import settings_report, usage_report
    from core.settings import costline_home

    home = costline_home()
    print(f"COSTLINE_HOME {home}")
    setting_lines, bad_setting = settings_report()
    lines, problem = usage_report(home)
    print("\n".join([*setting_lines, *lines]))
    return 1 if problem or bad_setting else 0


def cmd_gateway(args: argparse.Namespace) -> int:
    """Serve the OpenAI/Anthropic-compatible HTTP gateway (costline[gateway])."""
    from core.serving import StartupSignals

    signals = StartupSignals(signal.SIGINT, signal.SIGTERM)  # first: a stop stops the start
    from core.gateway import GatewayConfig, serve

    host = args.host or os.environ.get("COSTLINE_GATEWAY_HOST", "").strip() or "127.0.0.1"
    port = args.port if args.port is not None else _env_port("COSTLINE_GATEWAY_PORT", 4000)
    config = GatewayConfig.from_env(host=host, port=port, workers=args.workers)
    return int(serve(config, signals))


def _env_port(name: str, default: int) -> int:
    """A TCP port from ``$name`` (unset or empty: ``default``); else a ConfigError naming it."""
    from core.errors import ConfigError

    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ConfigError(f"{name} must be a port number 1-65535, got {raw!r}", field=name)
    return int(raw)


def _port_arg(text: str) -> int:
    """``--port``: a TCP port 1-65535. A larger number was passed on as given, and the
    resolver took it modulo 65536: ``--port 70000`` served on port 4464 while it printed
    70000."""
    value = text.strip()
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise argparse.ArgumentTypeError(f"must be a port number 1-65535, got {text!r}")
    return int(value)


def cmd_api(args: argparse.Namespace) -> int:
    """Serve the management REST API alone (docs at /api/docs)."""
    from core.serving import StartupSignals

    # before the imports: a Ctrl+C while it starts stops it (exit 0) instead of a traceback;
    # SIGTERM keeps its default, which ends the process now as it does once drained
    signals = StartupSignals(signal.SIGINT)
    from core.api import serve
    from core.settings import check_environment

    check_environment()  # a bad REDIS_URL etc.: one line now, not a 422 on some call later
    host = f"[{args.host}]" if ":" in args.host else args.host  # an IPv6 address, bracketed
    line = f"Costline API on http://{host}:{args.port}/api/v1 (docs: /api/docs)"
    return serve(args.host, args.port, line, signals)  # line once it listens: a script waits


def cmd_worker(args: argparse.Namespace) -> int:
    """Scan for alerts, deliver them and apply retention until interrupted (or once)."""
    import threading

    from core.worker import Worker

    worker = Worker()
    try:
        if args.once:
            from core.worker import LEASE, deliver_due

            settings = worker.settings()
            # as any worker: only the lease holder scans and delivers (a gateway's may hold it)
            if not worker.has_lease(settings):
                held = worker.plane.lease_holder(LEASE)
                who = f"{held[0]}, until {held[1]:%H:%M:%S} UTC" if held else "another process"
                print(f"Another alert worker holds the lease ({who}); it scans and delivers.")
                return 0
            try:
                result = worker.scan(settings)
                done = deliver_due(
                    worker.plane,
                    settings,
                    worker.http,
                    keep_going=lambda: worker.has_lease(settings),
                )
            finally:
                worker.plane.release_lease(LEASE, worker.holder)
            print(
                f"found {_kinds(result.found)}, recorded {_kinds(result.recorded)}, "
                f"delivered {_delivered(done)}, pruned {result.pruned_segments} segments"
            )
            for error in result.errors:
                print(f"costline worker: check {error}", file=sys.stderr)
            undelivered = done.retrying + done.failed
            if undelivered:
                print(
                    f"costline worker: {undelivered:,} alerts not delivered to every channel "
                    "(see notify_error on the Alerts page or GET /api/v1/alerts)",
                    file=sys.stderr,
                )
            return 1 if result.errors or undelivered else 0
        stop = threading.Event()

        def stopping(signum: int, _frame: object) -> None:
            """SIGTERM, or a first Ctrl+C: stop after the alert being sent (the lease is
            given back); a second Ctrl+C interrupts at once."""
            if signum == signal.SIGINT and stop.is_set():
                raise KeyboardInterrupt
            stop.set()

        signal.signal(signal.SIGTERM, stopping)
        signal.signal(signal.SIGINT, stopping)
        print(
            f"Costline alert worker {worker.holder}: scanning every "
            f"{worker.settings().interval_s:g} s (Ctrl+C to stop)",
            flush=True,
        )
        try:
            worker.run(stop)
        except KeyboardInterrupt:
            stop.set()
        return 0
    finally:
        worker.close()


def _delivered(d: Delivered) -> str:
    """'3', or '1 of 4 (2 to retry, 1 skipped)': alerts that reached every channel, of
    those attempted. An alert whose webhook failed is not delivered (it said so)."""
    parts = [
        f"{n:,} {what}"
        for n, what in (
            (d.retrying, "to retry"),
            (d.failed, "failed for good"),
            (d.skipped, "skipped"),
            (d.lost, "taken over by another worker"),
        )
        if n
    ]
    if not parts:
        return f"{d.sent:,}"
    return f"{d.sent:,} of {d.attempted:,} ({', '.join(parts)})"


def _kinds(counts: Mapping[str, int]) -> str:
    """Alert counts by kind in words: '3 (anomaly 2, budget 1)', '0'."""
    total = sum(counts.values())
    parts = ", ".join(f"{kind} {n:,}" for kind, n in sorted(counts.items()))
    return f"{total:,} ({parts})" if parts else "0"


def cmd_prune(args: argparse.Namespace) -> int:
    """Remove raw usage segments older than the retention (their hourly rollups stay)."""
    from core.control import ControlPlane
    from core.usage import BucketConfig, prune

    cfg = BucketConfig.from_env()
    if cfg is not None:  # prune() skips it, saying so only in the log: it read "Removed 0"
        print(
            f"costline prune: retention does not run with the usage log in a bucket "
            f"({cfg.url()}, COSTLINE_EVENTS_URL): nothing was removed; see docs/retention.md",
            file=sys.stderr,
        )
        return 2
    days = args.days  # given: checked by prune (0 or less is an error, not "no retention")
    if days is None:
        with ControlPlane() as plane:
            days = plane.get_setting("retention_days")
    if days is None:
        print(
            "No retention set (raw events are kept forever): pass --days N or set "
            "retention_days on the Admin page."
        )
        return 0
    r = prune(None, int(days))
    print(
        f"Removed {r.segments} segments ({r.rows:,} raw events before {r.cutoff:%Y-%m-%d %H:%M} "
        "UTC); their hourly rollups keep every total exact."
    )
    return 0


def cmd_tokens(args: argparse.Namespace) -> int:
    """Create, list or revoke API tokens (as the system, like the Admin page's admin)."""
    from core.control import SYSTEM, ControlPlane

    with ControlPlane() as plane:
        if args.action == "create":
            if not args.user:
                print("tokens create: --user NAME is required", file=sys.stderr)
                return 2
            if not plane.users():
                print(
                    "tokens create: there are no console users yet: 'costline console' (or "
                    "'make run') creates 'admin' on first start (COSTLINE_ADMIN_PASSWORD sets "
                    "its password); add others on its Admin page",
                    file=sys.stderr,
                )
                return 2
            secret, token = plane.create_api_token(args.user, SYSTEM, name=args.name or "cli")
            print(f"Token {token.id} for {token.username} (shown once, store it now):\n{secret}")
        elif args.action == "revoke":
            if not args.id:
                print(
                    "tokens revoke: --id ID is required (see costline tokens list)", file=sys.stderr
                )
                return 2
            if not plane.revoke_api_token(args.id, SYSTEM):
                print(f"no active token {args.id!r}", file=sys.stderr)
                return 2
            print(f"Revoked {args.id}.")
        else:
            tokens = plane.api_tokens(args.user)
            if args.json:
                rows = [
                    {
                        "id": t.id,
                        "user": t.username,
                        "name": t.name,
                        "prefix": t.prefix + "…",
                        "status": "revoked" if t.revoked_at else "active",
                        "created_at": t.created_at.isoformat() if t.created_at else None,
                        "last_used_at": t.last_used_at.isoformat() if t.last_used_at else None,
                        "revoked_at": t.revoked_at.isoformat() if t.revoked_at else None,
                    }
                    for t in tokens
                ]
                print(json.dumps(rows, indent=2))
                return 0
            if not tokens:
                whose = f" for {args.user}" if args.user else ""
                print(f"No tokens{whose} yet: costline tokens create --user NAME")
            for t in tokens:
                state = "revoked" if t.revoked_at else "active"
                used = f"{t.last_used_at:%Y-%m-%d %H:%M}" if t.last_used_at else "never"
                print(f"{t.id}  {t.username:<16} {t.name:<20} {t.prefix}…  {state}  used {used}")
    return 0


def cmd_users(args: argparse.Namespace) -> int:
    """List console users, or unlock one (audited as the system or ``--actor``)."""
    from core.cli_keys import _actor
    from core.control import ControlPlane
    from core.errors import CostlineError

    with ControlPlane() as plane:
        if args.users_command == "unlock":
            try:
                user = plane.unlock_user(args.name, _actor(plane, args.actor))
            except CostlineError as exc:
                print(f"costline users unlock: {exc}", file=sys.stderr)
                return 2
            print(f"Unlocked {user.username}: failed sign-ins and locks cleared (audited).")
            return 0
        for u in plane.users():
            state = "disabled" if u.disabled else "active"
            if u.locked_until is not None and u.locked_until > plane.now():
                state = f"locked until {u.locked_until:%Y-%m-%d %H:%M:%S} UTC"
            print(f"{u.username:<20} {u.role:<9} {state}  failed sign-ins {u.failed_attempts}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="costline", description="LLM cost router and spend console")
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("console", help="start the Streamlit console")
    p.add_argument(
        "--demo",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="load demo data first if the usage log is empty (default: env COSTLINE_DEMO=1)",
    )
    p.add_argument(
        "--worker",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run the alert worker beside the console (default: on; env COSTLINE_WORKER=0)",
    )
    p.set_defaults(func=cmd_console)
    p = sub.add_parser("demo", help="load the demo data set (or remove it)")
    p.add_argument("--days", type=int, default=90, help="days of history (default: 90)")
    p.add_argument("--seed", type=int, default=7, help="random seed (default: 7)")
    p.add_argument("--refresh", action="store_true", help="regenerate it if already loaded")
    p.add_argument("--remove", action="store_true", help="delete the demo data and entries")
    p.set_defaults(func=cmd_demo)
    p = sub.add_parser("import", help="import LLM usage from a CSV or Parquet file")
    p.add_argument("file", type=Path)
    p.add_argument("--map", action="append", default=[], metavar="COLUMN=FIELD")
    p.add_argument("--source", default="import")
    p.add_argument(
        "--inclusive",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="input tokens include cached ones (default: guessed from the header)",
    )
    p.add_argument("--decimal", choices=(".", ","), help="the decimal mark of numbers")
    p.add_argument("--date-order", choices=("dmy", "mdy"), help="order of dates like 05/11/2023")
    p.add_argument("--skip-bad-rows", action="store_true", help="import the good rows anyway")
    p.add_argument("--dry-run", action="store_true", help="check every row, write nothing")
    p.add_argument(
        "--replace",
        nargs=3,
        metavar=("SOURCE", "FROM", "TO"),
        help="replace SOURCE's rows with FROM <= ts < TO by the file's rows (audited)",
    )
    p.set_defaults(func=cmd_import)
    p = sub.add_parser("compact", help="merge small usage segments")
    p.set_defaults(func=cmd_compact)
    p = sub.add_parser("doctor", help="check the usage log; list what is quarantined")
    p.set_defaults(func=cmd_doctor)
    p = sub.add_parser("api", help="serve the management REST API")
    p.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1")
    p.add_argument("--port", type=_port_arg, default=8600, help="1-65535 (default: 8600)")
    p.set_defaults(func=cmd_api)
    p = sub.add_parser("worker", help="scan for alerts, deliver them, apply retention")
    p.add_argument("--once", action="store_true", help="one scan and delivery, then exit")
    p.set_defaults(func=cmd_worker)
    p = sub.add_parser("prune", help="remove raw usage events older than the retention")
    p.add_argument("--days", type=int, default=None, help="default: the retention_days setting")
    p.set_defaults(func=cmd_prune)
    p = sub.add_parser("tokens", help="API tokens of console users: create, list, revoke")
    # one parser per action: a flag another action takes (create --id) is an error, exit 2
    ts = p.add_subparsers(dest="action", required=True)
    t = ts.add_parser("create", help="a token acting as a console user (shown once)")
    t.add_argument("--user", help="the console user the token acts for (required)")
    t.add_argument("--name", help="a label for the token")
    t = ts.add_parser("list", help="every token (never a secret)")
    t.add_argument("--user", help="only this console user's tokens")
    t.add_argument("--json", action="store_true")
    t = ts.add_parser("revoke", help="revoke a token")
    t.add_argument("--id", help="the token to revoke (required; see costline tokens list)")
    p.set_defaults(func=cmd_tokens)
    p = sub.add_parser("users", help="console users: list, unlock")
    us = p.add_subparsers(dest="users_command", required=True)
    u = us.add_parser("unlock", help="clear a user's failed sign-ins and locks (audited)")
    u.add_argument("name")
    u.add_argument("--actor", help="console user to audit the change as")
    us.add_parser("list", help="users, roles and lock state")
    p.set_defaults(func=cmd_users)
    p = sub.add_parser("gateway", help="serve the OpenAI/Anthropic-compatible HTTP gateway")
    p.add_argument("--host", default=None, help="default: env COSTLINE_GATEWAY_HOST, 127.0.0.1")
    p.add_argument(
        "--port",
        type=_port_arg,
        default=None,
        help="1-65535 (default: env COSTLINE_GATEWAY_PORT, 4000)",
    )
    p.add_argument("--workers", type=int, default=1, help="processes (>1 needs REDIS_URL)")
    p.set_defaults(func=cmd_gateway)
    cli_keys.add_parser(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand. A bad setting (a ``ConfigError``: an environment variable, a
    flag, a file) is one line on stderr naming it, and exit status 2, never a traceback."""
    from core.errors import ConfigError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"costline {args.command}: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        down = _control_plane_down(exc)
        if down is None:
            raise
        print(f"costline {args.command}: {down}", file=sys.stderr)
        return 1


def _control_plane_down(exc: BaseException) -> str | None:
    """One line for a control plane that cannot be reached or used (PostgreSQL down, a
    SQLite file that cannot be opened): its URL without the password and the driver's
    first line; None for any other error."""
    import sqlalchemy as sa

    from core.control import check_control_url

    if not isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError):
        return None
    first = (str(exc.orig or exc).strip().splitlines() or ["?"])[0]
    url = check_control_url().render_as_string(hide_password=True)
    return f"the control plane {url} (COSTLINE_CONTROL_URL) cannot be used: {first}"


if __name__ == "__main__":
    sys.exit(main())
