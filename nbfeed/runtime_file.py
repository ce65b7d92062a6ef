"""The small JSON file that lets a kernel find the nbfeed of the server that started it.

The contract between the two sides: the server extension (:mod:`nbfeed.server_ext.app`) writes
it, the notebook side (:func:`nbfeed.client.find_server`) reads it. It lives in Jupyter's runtime
directory as ``nbfeed-<server pid>.json`` (mode 0600, like Jupyter's own ``jpserver-<pid>.json``:
it holds the token), written when the extension starts and removed when it stops. A kernel
started by the server has ``JPY_PARENT_PID`` = the server's pid, and the extension also exports
``NBFEED_SERVER_INFO`` = this file's path to every kernel started after it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

ENV_INFO = "NBFEED_SERVER_INFO"


def info_path(runtime_dir: str | Path, pid: int | None = None) -> Path:
    """The runtime file of the server with process id ``pid`` (default: this process)."""
    return Path(runtime_dir) / f"nbfeed-{pid or os.getpid()}.json"


def write_info(path: Path, info: dict[str, Any]) -> None:
    """Write atomically with owner-only permissions."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(info, fh, indent=1)
    os.replace(tmp, path)


def read_info(path: str | Path) -> dict[str, Any] | None:
    """The info in ``path``, or None when missing or unreadable."""
    try:
        with open(path) as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def remove_info(path: Path) -> None:
    """Delete the file; one that is already gone is fine."""
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def pid_alive(pid: Any) -> bool:
    """Whether a process ``pid`` (as read from a file: maybe not even an int) exists on this
    machine. A process of another user counts as alive (we may not signal it, but it is
    there); anything that is not a positive int is not a process."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OverflowError:  # a pid beyond what the OS can hold
        return False
    return True

