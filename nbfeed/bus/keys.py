"""Every Redis key and channel the shared feed uses, in one place (and the ACL recipe's source).

All names start with a namespace (``nbfeed`` unless configured), so one Redis can hold several
deployments and the ACL recipe can grant by prefix. What lives where, who writes it, and when it
disappears (nothing is kept without a time to live or a length bound):

=================================  ======  =========================  ==========================
key                                type    written by                 bounded by
=================================  ======  =========================  ==========================
``{ns}:sources``                   zset    feed servers (each beat)   entries older than a day
``{ns}:source:{source}``           string  the source's owner         TTL = lease (renewed)
``{ns}:owner:{source}``            string  feed servers (SET NX)      TTL = lease (renewed)
``{ns}:catalog:{source}``          string  the source's owner         TTL one day (renewed)
``{ns}:data:{source}:{iv}:{sym}``  stream  the source's owner         MAXLEN ~ N; TTL (renewed)
``{ns}:events``                    stream  owners (states, catalogs)  MAXLEN ~ 1000; TTL a day
``{ns}:server:{server}``           string  that user server           TTL = lease (renewed)
``{ns}:demand:{server}``           set     that user server           TTL = lease (renewed)
``{ns}:req:{source}``              list    user servers (LPUSH)       TTL = request timeout
``{ns}:reply:{server}``            list    the source's owner (LPUSH) TTL = request timeout
=================================  ======  =========================  ==========================

Channels (pub/sub, notices only - the state itself is always in keys, so a missed notice costs a
little delay, never correctness): ``{ns}:ch:demand`` (a user server's id when its demand
changed), ``{ns}:ch:control`` (operators: ``{"op": "populate"}``).

A stream is named by a *token* ``source:interval:symbol``: source names and intervals contain no
``:``, so the symbol is everything after the second one (symbols may contain anything).
"""

from __future__ import annotations

import re

from ..errors import BadRequest
from ..intervals import INTERVALS
from ..providers.registry import check_source_name

DEFAULT_NAMESPACE = "nbfeed"
_NAMESPACE_OK = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_SERVER_OK = re.compile(r"[A-Za-z0-9_.-]{1,128}")
MAX_SYMBOL_CHARS = 200


def check_namespace(namespace: str) -> str:
    if not isinstance(namespace, str) or not _NAMESPACE_OK.fullmatch(namespace):
        raise BadRequest(f"bus namespace {namespace!r} must be 1-64 characters of A-Z, a-z, "
                         "0-9, '_', '.' or '-'")
    return namespace


def check_server_id(server_id: str) -> str:
    """A server id as it appears inside key names (no ``:``, ``*`` or spaces)."""
    if not isinstance(server_id, str) or not _SERVER_OK.fullmatch(server_id):
        raise BadRequest(f"server id {server_id!r:.80} must be 1-128 characters of A-Z, a-z, "
                         "0-9, '_', '.' or '-'")
    return server_id


def safe_id(text: str) -> str:
    """``text`` with every character a key name must not hold replaced by ``_``."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)[:128] or "_"


def stream_token(source: str, symbol: str, interval: str) -> str:
    return f"{source}:{interval}:{symbol}"


def parse_token(token: str | bytes) -> tuple[str, str, str]:
    """``source:interval:symbol`` -> ``(source, symbol, interval)``; BadRequest if malformed.

    Demand comes from user servers, so it is checked here before anything acts on it.
    """
    if isinstance(token, bytes):
        try:
            token = token.decode()
        except UnicodeDecodeError:
            raise BadRequest("stream token is not UTF-8") from None
    parts = token.split(":", 2)
    if len(parts) != 3:
        raise BadRequest(f"stream token {token!r:.80} is not source:interval:symbol")
    source, interval, symbol = parts
    check_source_name(source)
    if interval not in INTERVALS:
        raise BadRequest(f"stream token {token!r:.80} has an unknown interval")
    if not symbol or len(symbol) > MAX_SYMBOL_CHARS:
        raise BadRequest(f"stream token {token!r:.80} has an empty or too long symbol")
    return source, symbol, interval


class Keys:
    """Key and channel names of one namespace (see the module docstring)."""

    def __init__(self, namespace: str = DEFAULT_NAMESPACE) -> None:
        self.ns = check_namespace(namespace)
        self.sources = f"{namespace}:sources"
        self.events = f"{namespace}:events"
        self.data_prefix = f"{namespace}:data:"
        self.demand_prefix = f"{namespace}:demand:"
        self.ch_demand = f"{namespace}:ch:demand"
        self.ch_control = f"{namespace}:ch:control"

    def source(self, source: str) -> str:
        return f"{self.ns}:source:{source}"

    def owner(self, source: str) -> str:
        return f"{self.ns}:owner:{source}"

    def catalog(self, source: str) -> str:
        return f"{self.ns}:catalog:{source}"

    def data(self, token: str) -> str:
        return self.data_prefix + token

    def server(self, server_id: str) -> str:
        return f"{self.ns}:server:{server_id}"

    def demand(self, server_id: str) -> str:
        return self.demand_prefix + server_id

    def req(self, source: str) -> str:
        return f"{self.ns}:req:{source}"

    def reply(self, server_id: str) -> str:
        return f"{self.ns}:reply:{server_id}"
