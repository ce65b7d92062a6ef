"""A JupyterLab server with nbfeed in a subprocess, static sites, and finding Chromium.

Used by the fixtures in ``conftest.py``: :class:`LabServer` runs ``python -m jupyterlab`` with the
nbfeed extension and the ``simulated`` provider on a free port of 127.0.0.1, with every Jupyter
directory (runtime, config, data, IPython, nbfeed home) under one tmp folder, and stops it with
its kernels and providers. :class:`StaticSite` serves fixed pages from another origin.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
TOKEN = "nbfeed-browser-test-token"

# Flags that work on our headless machines (see .library/env/machines/python.md): no sandbox as
# root, no GPU, and no background traffic, which the closed network refuses noisily. Playwright
# gives every launch a fresh, empty profile directory of its own.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
]

# JupyterLab settings that keep the page quiet and deterministic: no news/update pop-up over the
# notebook, and every cell rendered (not virtualised away when scrolled out of view).
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings":
        {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}


def find_chromium() -> str | None:
    """Debian's Chromium (or ``$NBFEED_CHROMIUM``, or another Chromium on PATH), else None."""
    candidates = [os.environ.get("NBFEED_CHROMIUM"), "/usr/bin/chromium"]
    candidates += [shutil.which(name) for name in ("chromium", "chromium-browser")]
    for path in candidates:
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def wait_until(predicate: Callable[[], object], timeout: float, what: str,
               interval: float = 0.1) -> object:
    """Poll ``predicate`` (another process's state: there is no event to await) until truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def _stop_with_parent() -> None:
    """In the child before exec: get SIGTERM when the test process dies, even by SIGKILL, so an
    aborted run leaves no server behind (Jupyter then stops its kernels and providers)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: teardown still stops the server


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (the kernels a Jupyter server started), from /proc."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces, so split after the last ')'.
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 1 and fields[1] == str(pid):
            out.append(int(entry.name))
    return out


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


class LabServer:
    """``python -m jupyterlab`` with nbfeed on a free port of 127.0.0.1; output kept in memory.

    ``root`` is the server's root directory (write notebooks there), ``url`` its base URL.
    """

    def __init__(self, tmp: Path, workspace_origins: list[str]) -> None:
        self.tmp = tmp
        self.root = tmp / "root"
        self.root.mkdir()
        config = tmp / "config"
        for name, values in LAB_SETTINGS.items():
            path = config / "lab" / "user-settings" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values))
        env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"),
               "JUPYTER_CONFIG_DIR": str(config), "JUPYTER_DATA_DIR": str(tmp / "data"),
               "IPYTHONDIR": str(tmp / "ipython"), "NBFEED_HOME": str(tmp / "home")}
        env.pop("NBFEED_SERVER_INFO", None)  # the kernels must find this server, not another
        self.output: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--allow-root", "--no-browser", "--port=0",
             "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={TOKEN}",
             '--ServerApp.jpserver_extensions={"nbfeed": True}', "--NBFeed.providers=simulated",
             # A list trait from the command line: one flag per item.
             *[f"--NBFeed.workspace_origins={origin}" for origin in workspace_origins],
             f"--ServerApp.root_dir={self.root}", "--LabApp.expose_app_in_browser=True"],
            env=env, cwd=str(tmp), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, preexec_fn=_stop_with_parent)
        threading.Thread(target=self._pump, daemon=True).start()
        self.url = ""
        self.token = TOKEN
        self.kernel_pids: set[int] = set()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)

    def tail(self, n: int = 40) -> str:
        return "".join(self.output[-n:])

    def start(self, timeout: float = 120) -> None:
        """Wait for nbfeed's runtime file (written once its hub runs) and for Lab to answer."""
        info_file = self.tmp / "runtime" / f"nbfeed-{self.proc.pid}.json"

        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"JupyterLab exited early:\n{self.tail()}")
            return info_file.exists()

        try:
            wait_until(ready, timeout, "JupyterLab with nbfeed to start")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.tail()}") from None
        self.url = json.loads(info_file.read_text())["url"]
        status, _ = self.get("lab")
        assert status == 200, f"/lab answered {status}:\n{self.tail()}"

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        return self.request("GET", path, headers)

    def request(self, method: str, path: str,
                headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        req = urllib.request.Request(
            self.url + path, method=method,
            headers={"Authorization": f"token {TOKEN}", **(headers or {})})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    def lab_url(self, path: str, workspace: str) -> str:
        """Lab with ``path`` open, in its own workspace (no tabs restored from another test)."""
        return f"{self.url}lab/workspaces/{workspace}/tree/{path}?token={self.token}"

    def shutdown_notebook(self, path: str) -> None:
        """Shut down the kernel of notebook ``path`` (its session), leaving the others alone."""
        self.kernel_pids.update(_children(self.proc.pid))
        status, body = self.get("api/sessions")
        assert status == 200, body[:200]
        for session in json.loads(body):
            if session.get("path") == path:
                self.request("DELETE", f"api/sessions/{session['id']}")

    def shutdown_kernels(self) -> None:
        """Shut every kernel down through the REST API (each notebook opened started one)."""
        self.kernel_pids.update(_children(self.proc.pid))
        status, body = self.get("api/kernels")
        if status != 200:
            return
        for kernel in json.loads(body):
            self.request("DELETE", f"api/kernels/{kernel['id']}")

    def stop(self) -> None:
        """Kernels first, then SIGTERM (Jupyter stops nbfeed's providers), SIGKILL if stuck."""
        if self.proc.poll() is None:
            with contextlib.suppress(Exception):
                self.shutdown_kernels()
            self.kernel_pids.update(_children(self.proc.pid))
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        # A kernel the server failed to stop would run on after the suite: end it by its pid.
        for pid in self.kernel_pids:
            if _alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


class StaticSite:
    """A tiny HTTP server on 127.0.0.1 serving fixed pages: another origin than Jupyter's."""

    def __init__(self, pages: dict[str, str]) -> None:
        site = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = site.pages.get(self.path.split("?")[0])
                if body is None:
                    self.send_error(404)
                    return
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass  # the test output is no place for an access log

        self.pages = pages
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


