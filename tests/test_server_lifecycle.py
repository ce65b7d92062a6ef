"""A real ``jupyter server`` process with nbfeed: no provider outlives it, however it stops."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

TOKEN = "nbfeed-test-token"
ENABLE = '--ServerApp.jpserver_extensions={"nbfeed": True}'


def alive(pid: int) -> bool:
    """True for a running process (a zombie waiting to be reaped counts as gone)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            return not any(line.startswith("State:") and "Z" in line.split()[1] for line in fh)
    except FileNotFoundError:
        return False


def wait_until(pred, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)  # another process's state: polling is the only way to observe it


class Server:
    """``python -m jupyter_server`` with nbfeed on a free port; output collected in a thread."""

    def __init__(self, tmp: Path, providers: tuple[str, ...] = ("simulated",),
                 args: tuple[str, ...] = ()) -> None:
        self.runtime = tmp / "runtime"
        env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(self.runtime),
               "JUPYTER_CONFIG_DIR": str(tmp / "config"), "JUPYTER_DATA_DIR": str(tmp / "data"),
               "NBFEED_HOME": str(tmp / "home")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyter_server", "--no-browser", "--port=0",
             ENABLE, f"--IdentityProvider.token={TOKEN}",
             *(f"--NBFeed.providers={name}" for name in providers),
             "--allow-root", f"--ServerApp.root_dir={tmp}", *args],
            env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True)
        self.output: list[str] = []
        self._lines = threading.Condition()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.proc.stdout:
            with self._lines:
                self.output.append(line)
                self._lines.notify_all()

    def wait_output(self, text: str, timeout: float = 60) -> None:
        with self._lines:
            ok = self._lines.wait_for(lambda: any(text in line for line in self.output), timeout)
        assert ok, f"{text!r} not printed; output:\n{''.join(self.output[-30:])}"

    @property
    def info_file(self) -> Path:
        return self.runtime / f"nbfeed-{self.proc.pid}.json"

    def start(self) -> dict:
        wait_until(self.info_file.exists, 90, "nbfeed's runtime file")
        info = json.loads(self.info_file.read_text())
        req = urllib.request.Request(info["url"] + "nbfeed/api/providers",
                                     headers={"Authorization": f"token {TOKEN}"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            providers = json.loads(resp.read())["providers"]
        assert providers[0]["status"] == "running"
        info["provider_pids"] = [p["pid"] for p in providers]
        return info

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def server(tmp_path):
    srv = Server(tmp_path)
    yield srv
    srv.kill()


def test_runtime_file_describes_the_server(server):
    info = server.start()
    assert info["token"] == TOKEN and info["url"].startswith("http://127.0.0.1:")
    assert oct(server.info_file.stat().st_mode & 0o777) == "0o600"
    server.wait_output("OpenBB Workspace backend URL")


def test_sigterm_stops_every_provider_and_removes_the_runtime_file(server):
    info = server.start()
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(30) is not None
    for pid in info["provider_pids"]:
        wait_until(lambda pid=pid: not alive(pid), 10, f"provider {pid} to exit")
    assert not server.info_file.exists()


def test_ctrl_c_stops_every_provider(server):
    info = server.start()
    server.proc.send_signal(signal.SIGINT)
    try:
        server.proc.wait(10)  # without a terminal, one Ctrl-C stops Jupyter...
    except subprocess.TimeoutExpired:
        server.wait_output("Shut down this Jupyter server")  # ...with one, it asks first
        server.proc.send_signal(signal.SIGINT)
    assert server.proc.wait(30) is not None
    for pid in info["provider_pids"]:
        wait_until(lambda pid=pid: not alive(pid), 10, f"provider {pid} to exit")
    assert not server.info_file.exists()


def test_sigkilled_server_leaves_no_provider_behind(server):
    info = server.start()
    server.proc.kill()  # no hook runs: the providers must notice on their own
    server.proc.wait(10)
    for pid in info["provider_pids"]:
        wait_until(lambda pid=pid: not alive(pid), 15, f"orphaned provider {pid} to exit")


def _get(url: str, timeout: float = 90) -> tuple[int, dict]:
    req = urllib.request.Request(url, headers={"Authorization": f"token {TOKEN}"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def test_a_server_queried_the_instant_it_answers_has_its_catalog(tmp_path):
    """A script (or OpenBB Workspace) that starts a server and asks at once gets every symbol:
    catalog-dependent requests wait for the first listing of the providers still starting."""
    server = Server(tmp_path, providers=("simulated", "csv"))
    try:
        # Jupyter writes its own runtime file before extensions start; nbfeed's comes later.
        jp_file = server.runtime / f"jpserver-{server.proc.pid}.json"
        wait_until(jp_file.exists, 90, "Jupyter's runtime file")
        base = json.loads(jp_file.read_text())["url"].replace("localhost", "127.0.0.1")
        deadline = time.monotonic() + 90
        while True:  # the instant the server answers HTTP at all
            try:
                if _get(base + "api/status", timeout=5)[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "server never answered"
            time.sleep(0.01)
        answers: dict[str, tuple[int, dict]] = {}

        def ask(name: str, url: str) -> None:
            answers[name] = _get(url)

        asks = [threading.Thread(target=ask, args=args) for args in [
            ("symbols", base + "nbfeed/api/symbols?q=AAPL"),
            ("csv", base + "nbfeed/api/symbols?q=DEMO&source=csv"),
            ("widgets", base + "nbfeed/workspace/widgets.json"),
            ("providers", base + "nbfeed/api/providers")]]
        for t in asks:
            t.start()
        for t in asks:
            t.join(120)
        status, symbols = answers["symbols"]
        assert status == 200 and symbols["results"][0]["name"] == "AAPL", symbols
        status, csv_symbols = answers["csv"]
        assert status == 200 and csv_symbols["results"], csv_symbols
        status, widgets = answers["widgets"]
        assert status == 200
        assert any(w["type"] == "live_grid" for w in widgets.values()), sorted(widgets)
        status, providers = answers["providers"]
        # The status list answers at once and says who is still starting.
        loaded = {p["name"]: p["status"] for p in providers["providers"] if p.get("loaded")}
        assert set(loaded) == {"simulated", "csv"}
        assert set(loaded.values()) <= {"starting", "running"}
    finally:
        server.kill()
