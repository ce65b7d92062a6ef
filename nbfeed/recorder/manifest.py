"""A recording's manifest: ``_recording.json`` beside its partitions.

It says what was asked (streams, limits), who records (process id, host) and how it went
(status, message, rows, bytes, rows lost, gaps, provider events). The writer rewrites it
atomically (temporary file, then rename) when it starts, after every part file (about once a
second) and when it stops; a reader therefore always sees a complete file, at most one flush old.

Statuses: ``recording`` (live), ``stopped`` (by a user or the hub stopping), ``finished``
(its ``duration`` ran out), ``limit`` (its disk limit was reached), ``failed`` (the writer could
not write; ``detail`` says why) and ``interrupted``: the manifest still says ``recording`` but no
process is writing it any more (killed, or the machine went down), decided by
:func:`effective_status`. Row counts of an interrupted recording are taken from its files.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from ..errors import BadRequest
from ..runtime_file import pid_alive

LIVE, STOPPED, FINISHED, LIMIT, FAILED, INTERRUPTED = (
    "recording", "stopped", "finished", "limit", "failed", "interrupted")
STATUSES = (LIVE, STOPPED, FINISHED, LIMIT, FAILED, INTERRUPTED)
#: A live recording rewrites its manifest at least this often; older means nobody writes it.
HEARTBEAT_S = 2.0
STALE_AFTER_S = 30.0
MAX_GAPS = 1_000
MAX_EVENTS = 200
MAX_MANIFEST_BYTES = 5_000_000


def new_manifest(name: str, streams: list[dict], limits: dict[str, Any]) -> dict:
    now = int(time.time() * 1000)
    return {"name": name, "format": 1, "status": LIVE, "detail": "",
            "created_ms": now, "started_ms": now, "ended_ms": None, "heartbeat_ms": now,
            "pid": os.getpid(), "host": socket.gethostname(), "streams": streams,
            "limits": limits, "rows": 0, "bytes": 0, "files": 0, "lost_rows": 0,
            "not_written_rows": 0, "last_seq": 0, "pruned_before_seq": None,
            "first_received_ms": None, "last_received_ms": None, "gaps": [], "events": []}


def write_manifest(path: Path, manifest: dict) -> None:
    """Replace ``path`` atomically with ``manifest`` (a reader sees the old or the new one)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    data = json.dumps(manifest, indent=1, default=str).encode()
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def read_manifest(path: Path) -> dict:
    """The manifest at ``path``; BadRequest if it is missing, too large or not a manifest."""
    try:
        size = path.stat().st_size
        if size > MAX_MANIFEST_BYTES:
            raise BadRequest(f"{path.name} of {path.parent.name!r} is {size} bytes; not a "
                             "manifest nbfeed wrote")
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise BadRequest(f"recording {path.parent.name!r} has no {path.name}") from None
    except (OSError, ValueError) as exc:
        raise BadRequest(f"cannot read {path.name} of {path.parent.name!r}: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        raise BadRequest(f"{path.name} of {path.parent.name!r} is not an nbfeed manifest")
    return data


def effective_status(manifest: dict, now_s: float | None = None) -> str:
    """The manifest's status, or ``interrupted`` for a live one nobody is writing any more."""
    status = manifest.get("status")
    if status != LIVE:
        return status if status in STATUSES else FAILED
    now_s = time.time() if now_s is None else now_s
    beat = manifest.get("heartbeat_ms") or 0
    if now_s - beat / 1000 > STALE_AFTER_S:
        return INTERRUPTED
    if manifest.get("host") == socket.gethostname() and not pid_alive(manifest.get("pid")):
        return INTERRUPTED
    return LIVE

