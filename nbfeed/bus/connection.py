"""Opening Redis connections from a URL, and saying which Redis without revealing its secrets.

URLs are redis-py's: ``redis://[user:password@]host:port/db`` or ``rediss://...`` for TLS, with
TLS options as query parameters (``?ssl_ca_certs=/etc/ssl/ca.pem&ssl_cert_reqs=required``,
``ssl_certfile``/``ssl_keyfile`` for client certificates). A password may also come from the
environment: ``NBFEED_BUS_PASSWORD`` is used when the URL has none, so it need not sit in a
config file or a process list.

Only :func:`redact` output ever reaches a log line or an error message: it keeps the user name
and drops the password and every query value that could be a secret.

Failure behaviour: connections time out (connect 5 s; a command's socket read ``socket_timeout``
s, longer than any ``BLOCK``/``BRPOP`` wait we issue) and raise ``redis.exceptions.
ConnectionError``/``TimeoutError``; the callers' loops reconnect with :class:`Backoff`.
"""

from __future__ import annotations

import asyncio
import os
import random
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..errors import BadRequest

ENV_PASSWORD = "NBFEED_BUS_PASSWORD"
SOCKET_TIMEOUT = 15.0
CONNECT_TIMEOUT = 5.0


def check_url(url: Any) -> str:
    """A ``redis://`` / ``rediss://`` / ``unix://`` URL, else BadRequest (without echoing it)."""
    if not isinstance(url, str) or not url.strip():
        raise BadRequest("the bus URL must be a redis:// or rediss:// URL")
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in ("redis", "rediss", "unix"):
        raise BadRequest(f"the bus URL must start with redis://, rediss:// or unix://, not "
                         f"{redact(url)!r}")
    return url.strip()


def redact(url: str) -> str:
    """``url`` with its password and query values replaced by ``***`` (for logs and errors)."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, host = netloc.rsplit("@", 1)
            user = userinfo.split(":", 1)[0]
            netloc = f"{user}:***@{host}" if user else f"***@{host}"
        query = "&".join(f"{kv.split('=', 1)[0]}=***" if "=" in kv else kv
                         for kv in parts.query.split("&")) if parts.query else ""
        return urlunsplit((parts.scheme, netloc, parts.path, query, ""))
    except Exception:
        return "<bus URL>"


def client_kwargs(name: str) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "socket_timeout": SOCKET_TIMEOUT, "socket_connect_timeout": CONNECT_TIMEOUT,
        "socket_keepalive": True, "client_name": name[:100], "health_check_interval": 30,
    }
    return kwargs


def _with_env_password(url: str, kwargs: dict[str, Any]) -> None:
    """``NBFEED_BUS_PASSWORD`` when the URL names no password (a user name alone is fine)."""
    password = os.environ.get(ENV_PASSWORD)
    netloc = urlsplit(url).netloc
    userinfo = netloc.rsplit("@", 1)[0] if "@" in netloc else ""
    if password and ":" not in userinfo:
        kwargs["password"] = password


def connect(url: str, name: str, *, max_connections: int | None = None) -> Any:
    """An asyncio Redis client (a connection pool) for ``url``; nothing is sent yet."""
    from redis.asyncio import Redis
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialBackoff

    url = check_url(url)
    kwargs = client_kwargs(name)
    _with_env_password(url, kwargs)
    if max_connections:
        kwargs["max_connections"] = max_connections
    # One quick retry for a dropped idle connection; longer outages are handled by our own
    # loops (they must notice them to report the sources stale).
    kwargs["retry"] = Retry(ExponentialBackoff(cap=0.5, base=0.05), 1)
    try:
        return Redis.from_url(url, **kwargs)
    except (ValueError, TypeError) as exc:
        raise BadRequest(f"bad bus URL {redact(url)!r}: {type(exc).__name__}") from None


def connect_sync(url: str, name: str) -> Any:
    """A blocking Redis client, for the few start-up reads done before any event loop runs."""
    from redis import Redis

    url = check_url(url)
    kwargs = client_kwargs(name)
    kwargs["socket_timeout"] = CONNECT_TIMEOUT
    _with_env_password(url, kwargs)
    try:
        return Redis.from_url(url, **kwargs)
    except (ValueError, TypeError) as exc:
        raise BadRequest(f"bad bus URL {redact(url)!r}: {type(exc).__name__}") from None


def describe_error(exc: BaseException) -> str:
    """One line about a Redis failure, safe to log (redis-py messages hold host:port only)."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:300]


class Backoff:
    """Delays for reconnect loops: ``base`` doubling up to ``cap``, with jitter; reset on success.

    Jitter keeps fifty user servers from reconnecting to a restarted Redis in lock step.
    """

    def __init__(self, base: float = 0.1, cap: float = 2.0) -> None:
        self.base = base
        self.cap = cap
        self.failures = 0

    def reset(self) -> None:
        self.failures = 0

    async def wait(self) -> None:
        delay = min(self.cap, self.base * (2 ** self.failures))
        self.failures += 1
        await asyncio.sleep(delay * (0.5 + random.random() / 2))
