"""Password hashes: scrypt at OWASP's cost (N=2^17, r=8, p=1: 128 MiB and a few hundred ms
per hash), parameters stored in every hash so that old ones are recognised and re-hashed.

    hash_password("secret")            -> "scrypt$131072$8$1$<salt b64>$<key b64>"
    verify_password("secret", stored)  -> True
    needs_rehash(stored)               -> True for a hash made at a lower cost

A lower cost is for tests only, and only through the explicit ``n`` argument (or
``ControlPlane(scrypt_n=...)``): nothing in the environment lowers it. At most
``HASH_SLOTS`` hashes run at once per process, so a burst of sign-ins cannot take
128 MiB each.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import threading

from core.errors import ConfigError

SCRYPT_N, SCRYPT_R, SCRYPT_P, KEY_LEN = 2**17, 8, 1, 32
MAX_N = 2**20
HASH_SLOTS = 2
_slots = threading.BoundedSemaphore(HASH_SLOTS)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def maxmem(n: int, r: int, p: int) -> int:
    """The memory scrypt needs (128·r·N for V plus 128·r·p for B) with room to spare:
    hashlib's default limit (32 MiB) refuses N=2^17."""
    return 128 * r * (n + p + 2) + 16 * 1024 * 1024


def check_cost(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 2 or n > MAX_N or n & (n - 1):
        raise ConfigError(f"scrypt_n: must be a power of two up to 2^20, got {n!r}", field="n")
    return n


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, dklen: int) -> bytes:
    with _slots:
        return hashlib.scrypt(
            password.encode(), salt=salt, n=n, r=r, p=p, dklen=dklen, maxmem=maxmem(n, r, p)
        )


def hash_password(password: str, n: int = SCRYPT_N) -> str:
    salt = os.urandom(16)
    key = _scrypt(password, salt, check_cost(n), SCRYPT_R, SCRYPT_P, KEY_LEN)
    return f"scrypt${n}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(key)}"


def parameters(encoded: str) -> tuple[int, int, int] | None:
    """(N, r, p) of a stored hash, or None when it is not a well-formed scrypt hash."""
    parts = encoded.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        return None
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
    except ValueError:
        return None
    if n < 2 or n > MAX_N or n & (n - 1) or not 1 <= r <= 64 or not 1 <= p <= 16:
        return None
    return n, r, p


def verify_password(password: str, encoded: str) -> bool:
    params = parameters(encoded)
    if params is None:
        return False
    n, r, p = params
    _, _, _, _, salt, key = encoded.split("$")
    try:
        expected = base64.b64decode(key, validate=True)
        got = _scrypt(password, base64.b64decode(salt, validate=True), n, r, p, len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


def needs_rehash(encoded: str, n: int = SCRYPT_N) -> bool:
    """Was ``encoded`` made at a lower cost than ``n`` (or with other r, p)?"""
    params = parameters(encoded)
    return params is None or params[0] < n or params[1:] != (SCRYPT_R, SCRYPT_P)
