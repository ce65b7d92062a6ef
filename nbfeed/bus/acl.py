"""The ACL recipe: two Redis users, one for feed servers and one for users' Jupyter servers.

``nbfeed bus-acl`` (or :func:`acl_file`) prints the ``user`` lines for a Redis ACL file (or
``redis.conf``); ``deploy/redis/users.acl`` is the recipe for the default namespace. Passwords
are stored as SHA-256 hashes (``#...``), so the file holds no secret.

Roles (Redis 7 selectors: a command is allowed when one selector allows it *and every key or
channel it names*):

* ``feed`` - a feed server (and an operator sending ``{"op": "populate"}``): the commands the feed
  server uses, on every key and channel under the namespace, nothing else (no ``FLUSHALL``,
  ``CONFIG``, ``KEYS``, ``DEBUG`` ...).
* ``user`` - a user's Jupyter server (or a kernel or CLI on the bus):

  - read-only (``%R~``) on live streams, the events stream, source records, catalogs and the
    source listing: ``XREAD``, ``XREVRANGE``, ``GET``, ``MGET``, ``EXISTS``, ``ZRANGEBYSCORE``;
  - its lease (``SET``/``DEL`` on ``server:*``) and demand (``SADD``/``DEL``/``PEXPIRE`` on
    ``demand:*``), announced with ``PUBLISH`` on ``ch:demand`` only;
  - write-only (``%W~``) ``LPUSH``/``PEXPIRE`` on request lists; ``BRPOP`` on reply lists, and no
    command that could put anything into one.

  So a user's server cannot publish market data (no ``XADD``, no write access to any stream),
  cannot forge another server's history reply, cannot change records, catalogs or leases, and
  cannot reach the control channel: beyond asking for streams and history it commands nothing.
  What it can still do, because every user server shares the role: write demand sets and leases
  of *other* server ids (each server rewrites its own whole set every heartbeat, so a deleted set
  comes back within a third of a lease, and asking for streams is what the role is for), and fill
  request lists (they expire; give Redis a ``maxmemory``). Per-user Redis users with
  ``~{ns}:demand:<their id>`` patterns close even that, at the cost of one ACL user each.
"""

from __future__ import annotations

import hashlib

from .keys import DEFAULT_NAMESPACE, check_namespace

FEED_USER = "nbfeed-feed"
USER_USER = "nbfeed-user"

# redis-py also sends CLIENT SETINFO (Redis >= 7.2) and ignores a refusal: not granted.
_CONNECT = "+ping +hello +auth +select +client|setname"
_FEED_COMMANDS = (
    "+get +set +del +exists +mget +pexpire +zadd +zremrangebyscore +zrangebyscore "
    "+smembers +scan +xadd +xrevrange +xread +xlen +lpush +brpop +publish +subscribe "
    "+unsubscribe +multi +exec +discard +eval")


def role_rules(role: str, namespace: str = DEFAULT_NAMESPACE) -> str:
    """The ACL rules (after ``user NAME on <password>``) of ``role``: ``feed`` or ``user``."""
    ns = check_namespace(namespace)
    if role == "feed":
        return (f"resetkeys resetchannels -@all {_CONNECT} {_FEED_COMMANDS} ~{ns}:* &{ns}:*")
    if role == "user":
        return " ".join([
            f"resetkeys resetchannels -@all {_CONNECT} +multi +exec +discard",
            f"(%R~{ns}:data:* %R~{ns}:events %R~{ns}:source:* %R~{ns}:catalog:* "
            f"%R~{ns}:sources +xread +xrevrange +get +mget +exists +zrangebyscore)",
            f"(~{ns}:server:* +set +del)",
            f"(~{ns}:demand:* +sadd +del +pexpire)",
            f"(&{ns}:ch:demand +publish)",
            f"(%W~{ns}:req:* +lpush +pexpire)",
            f"(%RW~{ns}:reply:* +brpop)",
        ])
    raise ValueError(f"role must be 'feed' or 'user', not {role!r}")


def password_hash(password: str) -> str:
    return "#" + hashlib.sha256(password.encode()).hexdigest()


def acl_line(role: str, name: str, password: str | None, namespace: str = DEFAULT_NAMESPACE,
             ) -> str:
    secret = password_hash(password) if password is not None else "#<sha256 of the password>"
    return f"user {name} on {secret} {role_rules(role, namespace)}"


def acl_file(feed_password: str | None = None, user_password: str | None = None, *,
             namespace: str = DEFAULT_NAMESPACE, feed_user: str = FEED_USER,
             user_user: str = USER_USER, default_off: bool = True) -> str:
    """An ACL file with both roles (and the ``default`` user switched off).

    Redis refuses comments in ACL files, so the explanation lives in this module and in
    ``deploy/redis/README.md``.
    """
    lines = []
    if default_off:
        lines.append("user default off resetkeys resetchannels -@all")
    lines.append(acl_line("feed", feed_user, feed_password, namespace))
    lines.append(acl_line("user", user_user, user_password, namespace))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """``python -m nbfeed.bus.acl`` / ``nbfeed bus-acl``: print an ACL file for both roles.

    The passwords are read from ``NBFEED_FEED_PASSWORD`` and ``NBFEED_USER_PASSWORD`` (never
    from the command line, which other users can see); only their hashes are printed.
    """
    import argparse
    import os
    import sys

    parser = argparse.ArgumentParser(
        prog="nbfeed bus-acl", description="Print a Redis ACL file with the feed-server and "
        "user-server roles of the shared feed. Passwords come from $NBFEED_FEED_PASSWORD and "
        "$NBFEED_USER_PASSWORD; the file holds only their SHA-256 hashes.")
    parser.add_argument("--namespace", default=DEFAULT_NAMESPACE)
    parser.add_argument("--feed-user", default=FEED_USER)
    parser.add_argument("--user-user", default=USER_USER)
    args = parser.parse_args(argv)
    feed, user = os.environ.get("NBFEED_FEED_PASSWORD"), os.environ.get("NBFEED_USER_PASSWORD")
    if not feed or not user:
        print("nbfeed bus-acl: set NBFEED_FEED_PASSWORD and NBFEED_USER_PASSWORD",
              file=sys.stderr)
        return 2
    sys.stdout.write(acl_file(feed, user, namespace=args.namespace, feed_user=args.feed_user,
                              user_user=args.user_user))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
