"""Failed sign-ins, counted atomically before the password is checked.

Every attempt is charged as a failure *first*, in one statement that also refuses a locked
counter (``UPDATE ... WHERE not locked RETURNING failures``, under the row lock of its write
transaction, which sets the lock in the same transaction when the count reaches the
threshold); a correct password then clears the charge. So N concurrent attempts check at
most the threshold's worth of passwords, on SQLite and PostgreSQL alike.

Two counters: per client and username (``login_throttle``: 5 failures lock that client out
for 30 s, doubling up to 1 h), and per username over all clients (``users.failed_attempts``:
20 failures lock the account for 30 s, doubling up to 15 min). One client alone can no
longer lock an account for everyone. Unknown usernames get the same counters in memory.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from . import _schema as s
from ._engine import write_tx

MAX_FAILURES = 5  # per client and username
ACCOUNT_MAX_FAILURES = 20  # per username, every client together
FIRST_LOCK_S, MAX_LOCK_S, ACCOUNT_MAX_LOCK_S = 30, 3600, 900
ACCOUNT = "*"  # the client name of the account-wide counter in memory
LOCAL = "local"  # the client when the caller knows none (CLI, tests)


class Locked(Exception):
    def __init__(self, until: datetime) -> None:
        super().__init__(until)
        self.until = until


def lock_delay(failures: int, threshold: int = MAX_FAILURES, cap: int = MAX_LOCK_S) -> timedelta:
    """How long a counter stays locked after ``failures`` consecutive failures."""
    if failures < threshold:
        return timedelta(0)
    return timedelta(seconds=min(FIRST_LOCK_S * 2 ** min(failures - threshold, 20), cap))


def client_key(client: str | None) -> str:
    return (client or "").strip()[:200] or LOCAL


def _charged(failures: int, now: datetime, threshold: int, cap: int) -> datetime | None:
    return now + lock_delay(failures, threshold, cap) if failures >= threshold else None


def charge_client(engine: sa.Engine, client: str, username: str, now: datetime) -> datetime | None:
    """Count one attempt of ``client`` on ``username``; the lock it set (None: none).
    Raises Locked while that client is locked out of that username."""
    t = s.login_throttle
    key = sa.and_(t.c.client == client, t.c.username == username)
    for _ in range(20):
        try:
            with write_tx(engine) as conn:
                failures = conn.scalar(
                    t.update()
                    .where(key, sa.or_(t.c.locked_until.is_(None), t.c.locked_until <= now))
                    .values(failures=t.c.failures + 1, updated_at=now)
                    .returning(t.c.failures)
                )
                if failures is None:
                    row = conn.execute(sa.select(t.c.locked_until).where(key)).first()
                    if row is not None and row.locked_until is not None and row.locked_until > now:
                        raise Locked(row.locked_until)
                    if row is not None:  # inserted by another attempt since our UPDATE: again
                        continue
                    failures = 1
                    conn.execute(
                        t.insert().values(
                            client=client,
                            username=username,
                            failures=1,
                            locked_until=_charged(1, now, MAX_FAILURES, MAX_LOCK_S),
                            updated_at=now,
                        )
                    )
                    return _charged(1, now, MAX_FAILURES, MAX_LOCK_S)
                until = _charged(failures, now, MAX_FAILURES, MAX_LOCK_S)
                if until is not None:
                    conn.execute(t.update().where(key).values(locked_until=until))
                return until
        except IntegrityError:  # another attempt inserted the row first: count on it
            continue
    raise RuntimeError("sign-in counter: too much contention")  # pragma: no cover


def charge_account(engine: sa.Engine, username: str, now: datetime) -> datetime | None:
    """Count one attempt on ``username`` from any client; raises Locked while locked."""
    u = s.users
    with write_tx(engine) as conn:
        failures = conn.scalar(
            u.update()
            .where(
                u.c.username == username,
                sa.or_(u.c.locked_until.is_(None), u.c.locked_until <= now),
            )
            .values(failed_attempts=u.c.failed_attempts + 1)
            .returning(u.c.failed_attempts)
        )
        if failures is None:
            locked = conn.scalar(sa.select(u.c.locked_until).where(u.c.username == username))
            raise Locked(locked or now)
        until = _charged(failures, now, ACCOUNT_MAX_FAILURES, ACCOUNT_MAX_LOCK_S)
        if until is not None:
            conn.execute(u.update().where(u.c.username == username).values(locked_until=until))
        return until


def clear(engine: sa.Engine, client: str, username: str) -> None:
    """A correct password: forget this client's and the account's failures."""
    with write_tx(engine) as conn:
        t, u = s.login_throttle, s.users
        conn.execute(t.delete().where(t.c.client == client, t.c.username == username))
        conn.execute(
            u.update().where(u.c.username == username).values(failed_attempts=0, locked_until=None)
        )


class Phantoms:
    """The same counters for usernames that do not exist, in this process's memory (so
    that an unknown user gets the answers a real one would; bounded)."""

    LIMIT = 10_000

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str], tuple[int, datetime | None]] = {}

    def charge(self, client: str, username: str, now: datetime) -> datetime | None:
        with self._lock:
            if len(self._counts) > self.LIMIT:
                self._counts.clear()
            counters = (
                (client, MAX_FAILURES, MAX_LOCK_S),
                (ACCOUNT, ACCOUNT_MAX_FAILURES, ACCOUNT_MAX_LOCK_S),
            )
            for who, _, _ in counters:
                until = self._counts.get((who, username), (0, None))[1]
                if until is not None and until > now:
                    raise Locked(until)
            locks: list[datetime] = []
            for who, threshold, cap in counters:
                failures = self._counts.get((who, username), (0, None))[0]
                until = _charged(failures + 1, now, threshold, cap)
                self._counts[(who, username)] = (failures + 1, until)
                if until is not None:
                    locks.append(until)
            return max(locks, default=None)

    def forget(self, username: str) -> None:
        with self._lock:
            for key in [k for k in self._counts if k[1] == username]:
                del self._counts[key]
