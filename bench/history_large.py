"""The biggest history request a server allows (issue 13, fault 7), before and after, same run.

    python bench/history_large.py [--count 1000000] [--before /work/main] [--abort-after 3]

For each code tree (``--before``, e.g. a checkout of the previous version, and this one) a real
Jupyter server with nbfeed and the ``simulated`` provider runs in a subprocess (the tree first on
its ``PYTHONPATH``), while a *bystander* websocket client reads another stream of the same
provider. Then:

1. ``GET nbfeed/api/history?...&interval=1m&count=<count>`` (JSON), read to the end: wall
   time, the server's and the provider's peak resident memory during the request and the
   server's a few seconds after, and the bystander's longest silence;
2. the same request for another symbol, abandoned by the client after ``--abort-after``
   seconds: how much CPU the provider still burns in the 10 s after that (a cancelled request
   must stop its work), and the server's memory at the end (a late reply must not be kept).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from _jupyter import children, peak_rss_mb, rss_mb, start_server

HERE = Path(__file__).resolve().parent


class Bystander:
    """A websocket client on ``symbol``'s tick stream in its own thread; notes each frame."""

    def __init__(self, base_url: str, token: str, symbol: str) -> None:
        self.url = "ws" + base_url[4:] + "nbfeed/api/stream"
        self.token = token
        self.symbol = symbol
        self.arrivals: list[float] = []
        self.ready = threading.Event()
        self._stop = False
        threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True).start()
        if not self.ready.wait(60):
            raise RuntimeError("bystander did not start")

    async def _run(self) -> None:
        from tornado.httpclient import HTTPRequest
        from tornado.websocket import websocket_connect

        ws = await websocket_connect(HTTPRequest(
            self.url, headers={"Authorization": f"token {self.token}"}))
        await ws.write_message(json.dumps({"type": "subscribe", "id": "b", "source": "simulated",
                                           "symbols": [self.symbol]}))
        while not self._stop:
            msg = await ws.read_message()
            if msg is None:
                break
            if '"data_update"' in msg:
                self.arrivals.append(time.monotonic())
                self.ready.set()
        ws.close()

    def max_gap(self, since: float, until: float) -> float:
        times = [since, *(t for t in self.arrivals if since <= t <= until), until]
        return max(b - a for a, b in zip(times, times[1:]))

    def close(self) -> None:
        self._stop = True


class Sampler:
    """Resident memory of the server and its provider processes every 50 ms."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.server_peak = 0.0
        self.provider_peak = 0.0
        self._run = True
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        while self._run:
            try:
                self.server_peak = max(self.server_peak, rss_mb(self.pid))
                for child in children(self.pid):
                    self.provider_peak = max(self.provider_peak, rss_mb(child))
            except OSError:
                pass
            time.sleep(0.05)

    def stop(self) -> None:
        self._run = False


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def history_url(base: str, symbol: str, count: int) -> str:
    return (f"{base}nbfeed/api/history?source=simulated&symbol={symbol}&interval=1m"
            f"&count={count}&format=json")


def run_tree(tree: Path, count: int, abort_after: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="nbfeed-bench-") as tmp:
        proc, base, token = start_server(Path(tmp), ["simulated"], {"simulated": {"rate": 20}},
                                         code=tree)
        try:
            return measure(proc.pid, base, token, count, abort_after)
        finally:
            proc.terminate()
            proc.wait(60)


def measure(pid: int, base: str, token: str, count: int, abort_after: float) -> dict:
    out: dict = {}
    bystander = Bystander(base, token, "MSFT")
    time.sleep(1.0)
    provider = children(pid)[0]
    out["server_before"] = rss_mb(pid)
    sampler = Sampler(pid)
    headers = {"Authorization": f"token {token}"}
    started = time.monotonic()
    try:
        with urllib.request.urlopen(urllib.request.Request(history_url(base, "AAPL", count),
                                                           headers=headers), timeout=600) as r:
            size = 0
            while chunk := r.read(1 << 20):
                size += len(chunk)
        out["status"] = "ok"
    except Exception as exc:  # the old code may time out under load
        out["status"] = f"failed: {exc}"
        size = 0
    ended = time.monotonic()
    out["seconds"] = ended - started
    out["megabytes"] = size / 1e6
    time.sleep(3.0)
    sampler.stop()
    out["server_peak"] = sampler.server_peak
    out["provider_peak"] = sampler.provider_peak
    out["server_after"] = rss_mb(pid)
    out["gap"] = bystander.max_gap(started, ended)

    # Abandoned after abort_after seconds: does the provider stop?
    sock_started = time.monotonic()
    req = urllib.request.Request(history_url(base, "GOOGL", count), headers=headers)
    try:
        urllib.request.urlopen(req, timeout=abort_after).read()
        out["abort"] = "answered before the client gave up"
    except (TimeoutError, OSError):
        out["abort"] = "abandoned"
    cpu0 = cpu_seconds(provider)
    time.sleep(10.0)
    out["provider_cpu_after_abort"] = cpu_seconds(provider) - cpu0
    out["server_end"] = rss_mb(pid)
    out["server_hwm"] = peak_rss_mb(pid)
    out["gap_abort"] = bystander.max_gap(sock_started, time.monotonic())
    bystander.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--before", default="/work/main",
                        help="a code tree of the previous version ('' to skip)")
    parser.add_argument("--abort-after", type=float, default=3.0)
    args = parser.parse_args()
    print(f"history count={args.count:,} at 1m; {os.cpu_count()} CPUs, load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    trees = ([("before", Path(args.before))] if args.before else []) + [("now", HERE.parent)]
    results = {label: run_tree(tree, args.count, args.abort_after) for label, tree in trees}
    print(f"{'':<8} {'status':<8} {'time s':>7} {'body MB':>8} {'server MB before/peak/after':>28}"
          f" {'provider peak MB':>16} {'bystander gap s':>15}")
    for label, r in results.items():
        print(f"{label:<8} {r['status'][:8]:<8} {r['seconds']:>7.1f} {r['megabytes']:>8.0f} "
              f"{r['server_before']:>8.0f} /{r['server_peak']:>6.0f} /{r['server_after']:>6.0f}"
              f"      {r['provider_peak']:>16.0f} {r['gap']:>15.2f}")
    print(f"\nabandoned after {args.abort_after:g} s:")
    for label, r in results.items():
        print(f"{label:<8} {r['abort']}: provider CPU in the next 10 s "
              f"{r['provider_cpu_after_abort']:.1f} s; server RSS at the end "
              f"{r['server_end']:.0f} MB (its peak ever {r['server_hwm']:.0f} MB); bystander "
              f"gap {r['gap_abort']:.2f} s")
    print(f"load average now {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    sys.exit(main())
