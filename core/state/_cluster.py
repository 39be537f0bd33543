"""Redis Cluster: ``REDIS_URL=redis+cluster://host:port`` (any one node; ``rediss+cluster``
for TLS, or ``?cluster=true`` on a plain URL).

Every key of one state shares a hash tag, the prefix in braces (``{costline:}b:...``), so all
keys a Lua script touches sit in one hash slot, as Redis Cluster requires. The price: one
state's keys live on one master (and its replicas); to spread tenants over masters, give
groups of gateways their own ``COSTLINE_REDIS_PREFIX`` (each prefix is its own slot).

After a master dies, calls fail (``ResilientState`` serves from memory meanwhile) until its
replica is promoted; the client re-reads the slot map on the first error, and the outage
deltas are replayed to the new master.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}


def is_cluster_url(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme in _SCHEMES:
        return True
    flags = dict(parse_qsl(parts.query))
    return flags.get("cluster", "").lower() in ("1", "true", "yes")


def plain_url(url: str) -> str:
    """The URL redis-py understands: ``redis://`` scheme, no ``cluster`` flag."""
    parts = urlsplit(url)
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k != "cluster"])
    scheme = _SCHEMES.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, parts.path, query, parts.fragment))


def tagged(prefix: str) -> str:
    """``prefix`` as a hash tag, so every key that starts with it maps to one slot."""
    return prefix if "{" in prefix and "}" in prefix else "{" + prefix + "}"


def cluster_client(
    url: str, *, socket_timeout: float = 0.2, connect_timeout: float = 0.2
) -> RedisCluster[bytes]:
    """A cluster client that fails fast (no retries: a retried admit could reserve twice)."""
    return RedisCluster.from_url(
        plain_url(url),
        socket_timeout=socket_timeout,
        socket_connect_timeout=connect_timeout,
        retry=Retry(NoBackoff(), 0),
    )


def redis_client(url: str) -> Any:
    """A client for ``url``: RedisCluster for a cluster URL, else redis.Redis."""
    if is_cluster_url(url):
        return cluster_client(url, socket_timeout=2.0, connect_timeout=2.0)
    return redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
