"""Helpers of the shared-feed benchmarks: a private redis-server and a feed-server process.

The benchmarks run what a deployment runs: Debian's ``redis-server`` on a free loopback port
without persistence, ``python -m nbfeed.bus`` (the ``nbfeed feed-server`` code) as its own
process, and consumers as their own processes or in the benchmark's process.
"""

from __future__ import annotations

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

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Redis:
    """A private redis-server (``url``); ``stop()`` ends it."""

    def __init__(self, extra: str = "") -> None:
        if not Path(REDIS_SERVER).exists():
            sys.exit("redis-server is not installed: bash scripts/install-debian-packages.sh "
                     "/usr/bin/redis-server=redis-server")
        self.dir = tempfile.mkdtemp(prefix="nbfeed-bench-redis-")
        self.port = free_port()
        conf = Path(self.dir) / "redis.conf"
        conf.write_text(f"bind 127.0.0.1\nport {self.port}\ndir {self.dir}\nsave \"\"\n"
                        f"appendonly no\nloglevel warning\nlogfile {self.dir}/log\n{extra}\n")
        self.proc = subprocess.Popen([REDIS_SERVER, str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(OSError), socket.create_connection(
                    ("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)

    def client(self) -> Any:
        import redis

        return redis.Redis.from_url(self.url, socket_timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


class FeedProcess:
    """``python -m nbfeed.bus`` with the given providers and options, until ``stop()``."""

    def __init__(self, url: str, providers: list[str], options: dict[str, Any],
                 home: str, extra: list[str] | None = None) -> None:
        import json

        args = [sys.executable, "-m", "nbfeed.bus", "--redis", url, "--home", home, "-q"]
        for provider in providers:
            args += ["--provider", provider]
        for key, value in options.items():
            args += ["--option", f"{key}={json.dumps(value)}"]
        args += extra or []
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(Path(__file__).resolve().parent), os.environ.get("PYTHONPATH", "")])}
        self.proc = subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True)

    def wait_owned(self, redis: Redis, source: str, timeout: float = 60) -> None:
        client = redis.client()
        deadline = time.monotonic() + timeout
        while not client.exists(f"nbfeed:catalog:{source}"):
            if self.proc.poll() is not None:
                raise RuntimeError(f"feed server exited: {self.proc.stderr.read()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError("the feed server did not publish its catalog in time")
            time.sleep(0.1)
        client.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())
