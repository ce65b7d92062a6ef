"""Sessions: per-subscriber streams for sources that take subscription options.

Most sources serve one stream per ``(source, symbol, interval)`` and the hub shares it between
every subscriber. A source whose provider class lists ``session_options`` (the built-in
``replay``: ``recording``, ``speed``, ``start``...) serves a *session* instead: each
``subscribe(..., **options)`` gets its own stream, so two notebooks replaying one recording at
different speeds never see each other's rows.

How it travels:

* the hub checks the option names against the provider's list (a clear error names the unknown
  option and the accepted ones), picks a session id (``s1``, ``s2``... unique per hub) and asks
  the provider ``open_session(session, symbols, interval, options)``, which validates the
  options and answers a state dict (or raises, and the subscribe fails with that error);
* the session's streams are keyed ``(source, symbol, "<interval>@<session>")`` between hub and
  provider, so they never merge with another subscriber's; the hub strips the tag before rows
  reach the subscriber, which sees the plain interval;
* ``control(session, command, args)`` requests reach the running session (pause, seek...),
  answered by a state dict; with ``wait=False`` they are one-way (acknowledgements);
* when the subscription closes, the hub releases its streams and asks ``close_session``;
* a restarted provider gets ``open_session`` again with the same options, then its streams.

Session streams never feed the history cache (their rows are not the source's live market).
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import BadRequest

SESSION_TAG = "@"
MAX_OPTIONS_BYTES = 10_000
#: A session's subscriber outbox conflates only beyond this many rows; sessions pace
#: themselves by acknowledgements, so this is never reached by nbfeed's own clients.
SESSION_PENDING_ROWS = 200_000


def tagged(interval: str, session: str) -> str:
    return f"{interval}{SESSION_TAG}{session}"


def split_interval(interval: str) -> tuple[str, str | None]:
    """``"1m@s3"`` -> ``("1m", "s3")``; a plain interval -> ``(interval, None)``."""
    plain, sep, session = interval.partition(SESSION_TAG)
    return (plain, session) if sep else (interval, None)


def check_options(source: str, options: Any, accepted: tuple[str, ...]) -> dict:
    """Options as a plain dict of JSON values, or BadRequest naming what is wrong."""
    if not isinstance(options, dict):
        raise BadRequest(f"subscription options must be an object, got {type(options).__name__}")
    if not accepted:
        names = ", ".join(repr(k) for k in list(options)[:5])
        raise BadRequest(f"source {source!r} takes no subscription options (got {names})")
    unknown = [k for k in options if k not in accepted]
    if unknown:
        raise BadRequest(f"source {source!r} does not take the option {unknown[0]!r:.60}; it "
                         f"takes: {', '.join(accepted)}")
    try:
        size = len(json.dumps(options))
    except (TypeError, ValueError):
        raise BadRequest("subscription options must be plain JSON values (strings, numbers, "
                         "booleans, null)") from None
    if size > MAX_OPTIONS_BYTES:
        raise BadRequest(f"subscription options of {size} bytes are over {MAX_OPTIONS_BYTES}")
    return dict(options)


def check_args(args: Any) -> dict:
    """Arguments of a control command: a small dict of JSON values."""
    if args is None:
        return {}
    if not isinstance(args, dict):
        raise BadRequest(f"control arguments must be an object, got {type(args).__name__}")
    try:
        size = len(json.dumps(args))
    except (TypeError, ValueError):
        raise BadRequest("control arguments must be plain JSON values") from None
    if size > MAX_OPTIONS_BYTES:
        raise BadRequest(f"control arguments of {size} bytes are over {MAX_OPTIONS_BYTES}")
    return dict(args)


def check_command(command: Any) -> str:
    if not isinstance(command, str) or not 0 < len(command) <= 32 or not command.isidentifier():
        raise BadRequest(f"control command must be a short name such as 'pause', got "
                         f"{command!r:.40}")
    return command
