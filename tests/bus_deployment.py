"""A whole shared-feed deployment in real processes, as on a JupyterHub.

:class:`Deployment` runs a private redis-server with the ACL recipe's two users (plus an
``admin`` the tests use to look inside), a feed server (``python -m nbfeed.bus``, the same code as
``nbfeed feed-server``) logged in as the feed role, and Jupyter servers (``python -m
jupyter_server`` with the nbfeed extension) logged in as the user role through ``NBFEED_BUS`` -
never a password on a command line. Every process can be killed with SIGKILL and started again;
everything is stopped at teardown and their output is kept for the tests to read.
"""

from __future__ import annotations

import asyncio
import contextlib
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
from typing import Any

import redis as redis_sync

from nbfeed.bus.acl import acl_file
from tests.bus_fixtures import SYMBOLS
from tests.redis_server import RedisServer

REPO = Path(__file__).resolve().parents[1]
TOKEN = "nbfeed-bus-test-token"
FEED_PASSWORD = "feed-Secret-7c1e9"
USER_PASSWORD = "user-Secret-2b8d4"
ADMIN_PASSWORD = "admin-Secret-51aa0"
SECRETS = (FEED_PASSWORD, USER_PASSWORD, ADMIN_PASSWORD)
LEASE = 3.0  # seconds: short, so deaths are noticed quickly


def wait_until(pred: Any, timeout: float, what: str) -> Any:
    """Poll another process's state (there is no event to wait on across processes)."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


def children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rfind(")") + 2:].split()
            if len(fields) > 1 and fields[1] == str(pid):
                out.append(int(entry.name))
    return out


def alive(pid: int) -> bool:
    try:
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


class Process:
    """A child process whose combined output is collected by a thread."""

    def __init__(self, name: str, args: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.proc = subprocess.Popen(args, env=env, cwd=str(REPO), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)
        self.lines: list[str] = []
        self._cond = threading.Condition()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()

    @property
    def output(self) -> str:
        with self._cond:
            return "".join(self.lines)

    def wait_output(self, text: str, timeout: float = 90.0) -> None:
        with self._cond:
            ok = self._cond.wait_for(
                lambda: any(text in line for line in self.lines) or self.proc.poll() is not None,
                timeout)
            found = any(text in line for line in self.lines)
        assert ok and found, f"{self.name}: {text!r} not printed; output:\n{self.output[-3000:]}"

    def kill(self) -> None:
        """SIGKILL, as a crash or the OOM killer would."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


class JupyterServer(Process):
    """``python -m jupyter_server`` with nbfeed on the bus; REST and websocket helpers."""

    def __init__(self, tmp: Path, bus_url: str, name: str) -> None:
        self.tmp = tmp
        self.runtime = tmp / "runtime"
        env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(self.runtime),
               "JUPYTER_CONFIG_DIR": str(tmp / "config"), "JUPYTER_DATA_DIR": str(tmp / "data"),
               "NBFEED_HOME": str(tmp / "home"), "NBFEED_BUS": bus_url}
        env.pop("NBFEED_SERVER_INFO", None)
        tmp.mkdir(parents=True, exist_ok=True)
        super().__init__(name, [
            sys.executable, "-m", "jupyter_server", "--no-browser", "--port=0",
            "--ServerApp.ip=127.0.0.1", '--ServerApp.jpserver_extensions={"nbfeed": True}',
            f"--IdentityProvider.token={TOKEN}", "--allow-root", f"--ServerApp.root_dir={tmp}",
            f"--NBFeed.bus_lease_ttl={LEASE}", "--NBFeed.request_timeout=10"], env)
        self.url = ""
        self.info_file = self.runtime / f"nbfeed-{self.proc.pid}.json"

    def start(self) -> JupyterServer:
        def ready() -> bool:
            assert self.proc.poll() is None, f"{self.name} exited:\n{self.output[-3000:]}"
            return self.info_file.exists()

        wait_until(ready, 120, f"{self.name} to start")
        self.url = json.loads(self.info_file.read_text())["url"]
        wait_until(lambda: any(p["status"] == "running" for p in self.providers()), 60,
                   f"{self.name} to see the feed's source running")
        return self

    def get(self, path: str, timeout: float = 60) -> tuple[int, Any]:
        req = urllib.request.Request(self.url + path,
                                     headers={"Authorization": f"token {TOKEN}"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"{}")

    def providers(self) -> list[dict]:
        status, body = self.get("nbfeed/api/providers")
        found = body.get("providers", []) if status == 200 else []
        return [p for p in found if p.get("loaded")]

    async def socket(self) -> Wire:
        from tornado.websocket import websocket_connect

        ws_url = self.url.replace("http://", "ws://") + f"nbfeed/api/stream?token={TOKEN}"
        conn = await websocket_connect(ws_url)
        wire = Wire(conn)
        hello = await wire.recv()
        assert hello["type"] == "hello"
        return wire


class Wire:
    """A websocket client of the wire protocol keeping every frame it read."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.frames: list[dict] = []

    async def send(self, msg: dict) -> None:
        await self.conn.write_message(json.dumps(msg))

    async def recv(self, timeout: float = 30.0) -> dict:
        text = await asyncio.wait_for(self.conn.read_message(), timeout)
        assert text is not None, "the server closed the socket"
        frame = json.loads(text)
        self.frames.append(frame)
        return frame

    async def until(self, pred: Any, timeout: float = 30.0, what: str = "a frame") -> dict:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            left = deadline - loop.time()
            assert left > 0, f"no {what} within {timeout:.0f} s; last: {self.frames[-3:]}"
            frame = await self.recv(left)
            if pred(frame):
                return frame

    def rows(self, rid: str, symbol: str | None = None) -> list[dict]:
        return [r for f in self.frames if f.get("type") in ("data_init", "data_update")
                and f.get("id") == rid for r in f["rows"]
                if symbol is None or r.get("symbol") == symbol]

    def states(self) -> list[str]:
        """The source's states (running, restarting...), without the per-symbol live/stale
        ones, which may follow a source's "running" when its rows resume late."""
        return [f["state"] for f in self.frames
                if f.get("type") == "status" and "symbol" not in f]

    def close(self) -> None:
        self.conn.close()


class Deployment:
    """Redis (ACL), one feed server and Jupyter servers; see the module docstring."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.record = tmp / "calls.jsonl"
        acl = acl_file(FEED_PASSWORD, USER_PASSWORD)
        acl += f"user admin on >{ADMIN_PASSWORD} ~* &* +@all\n"
        (tmp / "users.acl").write_text(acl)
        self.redis = RedisServer(tmp / "redis", extra_config=f"aclfile {tmp / 'users.acl'}")
        self.redis.start()
        host = f"127.0.0.1:{self.redis.port}"
        self.feed_url = f"redis://nbfeed-feed:{FEED_PASSWORD}@{host}/0"
        self.user_url = f"redis://nbfeed-user:{USER_PASSWORD}@{host}/0"
        self.admin_url = f"redis://admin:{ADMIN_PASSWORD}@{host}/0"
        self.feeds: list[Process] = []
        self.servers: list[JupyterServer] = []
        self.provider_pids: set[int] = set()

    def start_feed(self, *, standby: bool = False) -> Process:
        """A feed server; waits until it owns the source (or, ``standby``, until it runs)."""
        n = len(self.feeds)
        options = {"record": str(self.record), "symbols": [*SYMBOLS, "HANG1"], "period": 0.02}
        env = {**os.environ, "NBFEED_BUS": self.feed_url}
        feed = Process(f"feed{n}", [
            sys.executable, "-m", "nbfeed.bus", "--id", f"feed{n}",
            "--provider", "listing=tests.bus_test_providers:ListingProvider",
            *[a for k, v in options.items() for a in ("--option", f"listing.{k}={json.dumps(v)}")],
            "--lease-ttl", str(LEASE), "--home", str(self.tmp / f"feed{n}")], env)
        self.feeds.append(feed)
        feed.wait_output("serving listing")
        if not standby:
            wait_until(lambda: self.owner() == f"feed{n}", 60, f"feed{n} to own the source")
        return feed

    def owner(self) -> str | None:
        client = self.admin()
        try:
            holder = client.get("nbfeed:owner:listing")
        finally:
            client.close()
        return holder.decode() if holder else None

    def start_server(self) -> JupyterServer:
        server = JupyterServer(self.tmp / f"server{len(self.servers)}", self.user_url,
                               f"server{len(self.servers)}")
        self.servers.append(server)
        return server.start()

    def admin(self) -> Any:
        return redis_sync.Redis.from_url(self.admin_url, socket_timeout=10)

    def note_providers(self) -> None:
        for feed in self.feeds:
            if feed.proc.poll() is None:
                self.provider_pids.update(children(feed.proc.pid))

    def calls(self, hook: str) -> list[str]:
        try:
            lines = self.record.read_text().splitlines()
        except FileNotFoundError:
            return []
        return [c["args"][0] for c in map(json.loads, filter(None, lines)) if c["hook"] == hook]

    def outputs(self) -> str:
        return "".join(p.output for p in [*self.feeds, *self.servers])

    def close(self) -> None:
        self.note_providers()
        for server in self.servers:
            server.stop()
        for feed in self.feeds:
            feed.stop()
        self.redis.kill()
        for pid in self.provider_pids:
            with contextlib.suppress(AssertionError):
                wait_until(lambda pid=pid: not alive(pid), 15, f"provider {pid} to exit")
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
                raise AssertionError(f"provider process {pid} outlived its feed server")
