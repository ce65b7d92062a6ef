"""Bench helper: a real Jupyter server with the nbfeed extension in a subprocess.

``start_server(folder, providers, provider_options)`` starts ``jupyter_server`` on a free port
with its own runtime, config and nbfeed home folders inside ``folder``, waits for nbfeed's
runtime file and returns ``(process, base_url, token)``. Provider classes given as
``name=module:Class`` must be importable by the server: the bench folder is on its
``PYTHONPATH``. ``rss_mb(pid)`` / ``peak_rss_mb(pid)`` read a process's memory from /proc.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TOKEN = "bench-token"


def start_server(folder: Path, providers: list[str], provider_options: dict | None = None,
                 extra: list[str] | None = None, code: Path | None = None
                 ) -> tuple[subprocess.Popen, str, str]:
    """``code``: the nbfeed tree the server imports (default: this one)."""
    runtime = folder / "runtime"
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(runtime),
           "NBFEED_HOME": str(folder / "home"), "JUPYTER_CONFIG_DIR": str(folder / "config"),
           "PYTHONPATH": os.pathsep.join([str(code or HERE.parent), str(HERE),
                                          os.environ.get("PYTHONPATH", "")])}
    args = [sys.executable, "-m", "jupyter_server", "--no-browser", "--port=0", "--allow-root",
            '--ServerApp.jpserver_extensions={"nbfeed": True}',
            f"--IdentityProvider.token={TOKEN}", "--ServerApp.log_level=WARN",
            f"--NBFeed.provider_options={json.dumps(provider_options or {})}",
            *(f"--NBFeed.providers={p}" for p in providers), *(extra or [])]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    info = runtime / f"nbfeed-{proc.pid}.json"
    deadline = time.time() + 120
    while not info.exists():
        if time.time() > deadline or proc.poll() is not None:
            proc.kill()
            raise RuntimeError("the Jupyter server did not start")
        time.sleep(0.2)
    return proc, json.loads(info.read_text())["url"], TOKEN


def _status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` now, in MB."""
    return _status_kb(pid, "VmRSS") / 1024


def peak_rss_mb(pid: int) -> float:
    """The highest resident memory ``pid`` ever had, in MB."""
    return _status_kb(pid, "VmHWM") / 1024


def children(pid: int) -> list[int]:
    """Direct child processes of ``pid`` (provider processes of a server)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out
