"""A throw-away shared feed on this machine: a private redis-server and a feed server.

For trying the shared feed without a JupyterHub - in a notebook, a demo, a laptop::

    from nbfeed.bus.sandbox import LocalFeed

    with LocalFeed(providers=["simulated"]) as local:
        feed = nbfeed.connect(bus=local.url)     # as a user's server would see it

:class:`LocalFeed` starts ``redis-server`` (Debian's package; on a free loopback port, in a
temporary folder, without persistence) and ``python -m nbfeed.bus`` (the ``nbfeed feed-server``
command) with the given providers, and waits until the feed has published its catalogs. Both
processes end with :meth:`close`, at interpreter exit, and - on Linux - when the process that
started them dies, even by SIGKILL. Not for production: there, Redis and the feed server are
services of their own (README, "Deploying on JupyterHub").
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ..errors import UpstreamError


def _die_with_parent() -> None:
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: close() and atexit still end them


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalFeed:
    """redis-server + feed server for this machine only; see the module docstring."""

    def __init__(self, providers: list[str] | None = None,
                 options: dict[str, Any] | None = None, *, lease_ttl: float = 5.0,
                 timeout: float = 60.0) -> None:
        self.providers = list(providers or ["simulated"])
        self.options = dict(options or {})
        self.lease_ttl = lease_ttl
        self.timeout = timeout
        self.folder = Path(tempfile.mkdtemp(prefix="nbfeed-local-feed-"))
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._redis: subprocess.Popen | None = None
        self._feed: subprocess.Popen | None = None

    def start(self) -> LocalFeed:
        server = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not os.path.exists(server):
            raise UpstreamError("redis-server is not installed (Debian: apt-get install "
                                "redis-server)")
        conf = self.folder / "redis.conf"
        conf.write_text(f'bind 127.0.0.1\nport {self.port}\ndir {self.folder}\nsave ""\n'
                        f"appendonly no\nloglevel warning\nlogfile {self.folder}/redis.log\n")
        self._redis = subprocess.Popen([server, str(conf)], stdin=subprocess.DEVNULL,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                       preexec_fn=_die_with_parent)
        atexit.register(self.close)
        self._wait(self._redis_answers, "redis-server to answer")
        import json

        args = [sys.executable, "-m", "nbfeed.bus", "--redis", self.url, "-q",
                "--home", str(self.folder / "feed"), "--lease-ttl", str(self.lease_ttl)]
        for name in self.providers:
            args += ["--provider", name]
        for key, value in self.options.items():
            args += ["--option", f"{key}={json.dumps(value)}"]
        self._feed = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                      stdout=subprocess.DEVNULL,
                                      stderr=open(self.folder / "feed.log", "w"),  # noqa: SIM115
                                      preexec_fn=_die_with_parent)
        self._wait(self._catalogs_published, "the feed server to publish its catalogs")
        return self

    def _redis_answers(self) -> bool:
        with contextlib.suppress(OSError), socket.create_connection(
                ("127.0.0.1", self.port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
        return False

    def _catalogs_published(self) -> bool:
        import redis

        if self._feed is not None and self._feed.poll() is not None:
            log = (self.folder / "feed.log").read_text(errors="replace")[-2000:]
            raise UpstreamError(f"the feed server exited: {log}")
        client = redis.Redis.from_url(self.url, socket_timeout=5)
        try:
            names = [n.split("=", 1)[0] for n in self.providers]
            return all(client.exists(f"nbfeed:catalog:{n}") for n in names)
        finally:
            client.close()

    def _wait(self, ready: Any, what: str) -> None:
        deadline = time.monotonic() + self.timeout
        while not ready():  # other processes' state: polling is the only way to see it
            if time.monotonic() > deadline:
                self.close()
                raise UpstreamError(f"timed out waiting for {what}")
            time.sleep(0.1)

    def close(self) -> None:
        """Stop the feed server (it hands its sources over), then Redis; remove the folder."""
        for proc in (self._feed, self._redis):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)
        self._feed = self._redis = None
        shutil.rmtree(self.folder, ignore_errors=True)
        atexit.unregister(self.close)

    def __enter__(self) -> LocalFeed:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<LocalFeed {self.url} ({', '.join(self.providers)})>"
