"""Soak: a long day of churn at 20,000 row updates/s against a real Jupyter server with nbfeed.

Two simulated provider processes publish ``--rate`` updates/s on each of ``--symbols`` symbols
(default 2 x 10 x 1,000 = 20,000 rows/s), all held by one *baseline* socket so the load stays
steady. Ten churn clients subscribe and unsubscribe in a loop (1-4 symbols at a time, some of
them symbols nobody else holds, so streams start and stop upstream), ask for history now and
then, and now and then close their socket and open a new one. A *bystander* socket holds one
stream and measures its longest silence.

Printed at the end (the figures issue 13 asks for):

* RSS of the server and of each provider process at the ``--mark`` (default: minute 2) and at
  the end, and the growth between them (target: under 5 %);
* sockets that went silent: a socket with a subscription that received no ``data_update`` for
  ``--silence`` seconds while its stream produced (target: 0);
* history requests answered (and refused), subscriptions made, sockets opened;
* the bystander's longest gap, and lines the server logged at ERROR or with a traceback
  (target: 0);
* the load average, since the machine may be shared.

usage: python bench/soak.py [--minutes 10] [--mark 2] [--rate 1000] [--symbols 10]
       python bench/soak.py --seconds 60        # the short mode a slow test runs
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

TOKEN = "soak-token"
PROVIDERS = ("simulated", "sim2")
_DATA_ID = re.compile(r'^\{"type":"data_update","id":"([^"]+)"')


# ---- the server -----------------------------------------------------------------------------


def start_server(tmp: Path, rate: float, log_path: Path) -> tuple[subprocess.Popen, str]:
    """``jupyter server`` with nbfeed and two simulated providers; its log goes to ``log_path``."""
    runtime = tmp / "runtime"
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(runtime), "NBFEED_HOME": str(tmp / "home"),
           "JUPYTER_CONFIG_DIR": str(tmp / "config"), "JUPYTER_DATA_DIR": str(tmp / "data")}
    options = json.dumps({name: {"rate": rate} for name in PROVIDERS})
    log = open(log_path, "w")  # noqa: SIM115 - kept open for the server's whole life
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter_server", "--no-browser", "--port=0", "--allow-root",
         '--ServerApp.jpserver_extensions={"nbfeed": True}', f"--IdentityProvider.token={TOKEN}",
         "--NBFeed.providers=simulated",
         "--NBFeed.providers=sim2=nbfeed.providers.simulated:SimulatedProvider",
         f"--NBFeed.provider_options={options}", f"--ServerApp.root_dir={tmp}"],
        env=env, stdout=log, stderr=subprocess.STDOUT)
    info = runtime / f"nbfeed-{proc.pid}.json"
    deadline = time.time() + 180
    while not info.exists():
        if time.time() > deadline or proc.poll() is not None:
            proc.kill()
            raise RuntimeError(f"the Jupyter server did not start; see {log_path}")
        time.sleep(0.2)
    return proc, json.loads(info.read_text())["url"]


def get(url: str) -> dict:
    req = urllib.request.Request(url, headers={"Authorization": f"token {TOKEN}"})
    with urllib.request.urlopen(req, timeout=120) as resp:
        return json.loads(resp.read())


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def log_errors(log_path: Path) -> list[str]:
    """Lines the server logged at ERROR/CRITICAL, or tracebacks."""
    out = []
    for line in log_path.read_text(errors="replace").splitlines():
        if line.startswith(("[E ", "[C ")) or "Traceback" in line:
            out.append(line[:300])
    return out


# ---- the clients ----------------------------------------------------------------------------


@dataclass
class Tally:
    sockets_opened: int = 0
    subscriptions: int = 0
    history_answered: int = 0
    history_refused: int = 0
    rows: int = 0
    silent: set = field(default_factory=set)      # (socket number, subscription id)
    errors: list = field(default_factory=list)    # unexpected error frames


class Socket:
    """One client socket: frames are read in a task; per subscription the last update time."""

    def __init__(self, ws, number: int, tally: Tally) -> None:
        self.ws = ws
        self.number = number
        self.tally = tally
        self.held: dict[str, float] = {}     # subscription id -> last data_update (monotonic)
        self.replies: dict[str, asyncio.Future] = {}
        self.closed = False
        self.reader = asyncio.ensure_future(self._read())

    @classmethod
    async def open(cls, base: str, number: int, tally: Tally) -> Socket:
        url = base.replace("http://", "ws://") + "nbfeed/api/stream"
        ws = await websocket_connect(HTTPRequest(url, headers={"Authorization":
                                                               f"token {TOKEN}"}),
                                     max_message_size=256 << 20)
        tally.sockets_opened += 1
        return cls(ws, number, tally)

    async def _read(self) -> None:
        while True:
            msg = await self.ws.read_message()
            if msg is None:
                self.closed = True
                return
            m = _DATA_ID.match(msg)
            if m:
                rid = m.group(1)
                if rid in self.held:
                    self.held[rid] = time.monotonic()
                self.tally.rows += msg.count('"symbol"')
                continue
            frame = json.loads(msg)
            rid = frame.get("id")
            fut = self.replies.pop(rid, None)
            if fut is not None and not fut.done() and frame.get("type") != "status":
                fut.set_result(frame)
            elif frame.get("type") == "error":
                self.tally.errors.append(frame)

    async def request(self, msg: dict, timeout: float = 60.0) -> dict:
        fut = asyncio.get_running_loop().create_future()
        self.replies[msg["id"]] = fut
        await self.ws.write_message(json.dumps(msg))
        return await asyncio.wait_for(fut, timeout)

    async def subscribe(self, rid: str, source: str, symbols: list[str]) -> None:
        reply = await self.request({"type": "subscribe", "id": rid, "source": source,
                                    "symbols": symbols})
        if reply["type"] != "data_init":
            raise RuntimeError(f"subscribe refused: {reply}")
        self.held[rid] = time.monotonic()
        self.tally.subscriptions += 1

    async def unsubscribe(self, rid: str) -> None:
        self.held.pop(rid, None)
        await self.request({"type": "unsubscribe", "id": rid})

    def check_silence(self, limit: float) -> None:
        now = time.monotonic()
        for rid, last in self.held.items():
            if now - last > limit:
                self.tally.silent.add((self.number, rid))

    def close(self) -> None:
        self.reader.cancel()
        self.ws.close()


async def churn_client(n: int, base: str, symbols: dict[str, list[str]], extra: dict,
                       stop_at: float, tally: Tally, sockets: list) -> None:
    rng = random.Random(n)
    counter = 0
    sock = await Socket.open(base, n, tally)
    sockets.append(sock)
    reopen_at = time.monotonic() + rng.uniform(20, 90)
    while time.monotonic() < stop_at:
        if time.monotonic() > reopen_at:  # a notebook restarted: a new socket
            sock.close()
            sock = await Socket.open(base, n, tally)
            sockets.append(sock)
            reopen_at = time.monotonic() + rng.uniform(20, 90)
        source = rng.choice(PROVIDERS)
        pool = symbols[source] + extra[source]
        counter += 1
        rid = f"c{n}-{counter}"
        await sock.subscribe(rid, source, rng.sample(pool, rng.randint(1, 4)))
        await asyncio.sleep(rng.uniform(0.3, 2.5))
        if rng.random() < 0.35:
            reply = await sock.request({
                "type": "history", "id": f"h{n}-{counter}", "source": source,
                "symbol": rng.choice(pool), "interval": rng.choice(["1m", "5m", "1h", "1d"]),
                "count": rng.choice([10, 100, 500, 2000])})
            if reply["type"] == "history":
                tally.history_answered += 1
            else:
                tally.history_refused += 1
                tally.errors.append(reply)
        while len(sock.held) > rng.randint(1, 3):
            await sock.unsubscribe(rng.choice(list(sock.held)))
    sock.close()


async def watch(sockets: list, stop_at: float, silence: float) -> None:
    while time.monotonic() < stop_at:
        await asyncio.sleep(0.5)
        for sock in sockets:
            if not sock.closed and not sock.reader.done():
                sock.check_silence(silence)


async def run_clients(base: str, seconds: float, symbols: dict, extra: dict,
                      clients: int, silence: float, marks: dict, pids: dict) -> dict:
    tally = Tally()
    sockets: list[Socket] = []
    baseline = await Socket.open(base, -1, tally)
    for source in PROVIDERS:
        await baseline.subscribe(f"base-{source}", source, symbols[source])
    bystander = await Socket.open(base, -2, tally)
    await bystander.subscribe("by", PROVIDERS[0], symbols[PROVIDERS[0]][:1])
    sockets += [baseline, bystander]
    gaps: list[float] = []
    start = time.monotonic()
    stop_at = start + seconds

    async def bystander_gap() -> None:
        last = time.monotonic()
        while time.monotonic() < stop_at:
            await asyncio.sleep(0.05)
            seen = bystander.held.get("by", last)
            gaps.append(time.monotonic() - seen)

    async def sample_rss() -> None:
        next_sample = 0.0
        while time.monotonic() < stop_at:
            await asyncio.sleep(1.0)
            elapsed = time.monotonic() - start
            if elapsed >= next_sample:  # the curve, to tell a plateau from a creep
                marks["series"].append((round(elapsed), {name: rss_mb(pid)
                                                         for name, pid in pids.items()}))
                next_sample += max(5.0, seconds / 20)
            if elapsed >= marks["mark"] and "mark" not in marks["taken"]:
                marks["taken"]["mark"] = {name: rss_mb(pid) for name, pid in pids.items()}

    marks["taken"], marks["series"] = {}, []
    await asyncio.gather(
        *(churn_client(n, base, symbols, extra, stop_at, tally, sockets)
          for n in range(clients)),
        watch(sockets, stop_at, silence), bystander_gap(), sample_rss())
    marks["taken"]["end"] = {name: rss_mb(pid) for name, pid in pids.items()}
    for sock in sockets:
        sock.close()
    return {"tally": tally, "bystander_max_gap": max(gaps) if gaps else None,
            "sockets": len(sockets)}


# ---- main -----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--seconds", type=float, default=None, help="overrides --minutes")
    ap.add_argument("--mark", type=float, default=None,
                    help="minute of the first RSS figure (default: 2, or 20%% of a short run)")
    ap.add_argument("--rate", type=float, default=1000.0, help="updates/s per stream")
    ap.add_argument("--symbols", type=int, default=10, help="baseline symbols per provider")
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--silence", type=float, default=5.0,
                    help="seconds without data that make a subscription silent")
    ap.add_argument("--json", action="store_true", help="print the result as one JSON line")
    args = ap.parse_args(argv)
    # A terminated run still stops its server (SystemExit runs the finally below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    seconds = args.seconds if args.seconds is not None else args.minutes * 60
    mark = args.mark * 60 if args.mark is not None else (120.0 if seconds >= 300
                                                         else seconds * 0.2)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        log_path = tmp / "server.log"
        proc, base = start_server(tmp, args.rate, log_path)
        try:
            providers = get(base + "nbfeed/api/providers")["providers"]
            pids = {"server": proc.pid}
            pids.update({p["name"]: p["pid"] for p in providers if p.get("pid")})
            symbols, extra = {}, {}
            for source in PROVIDERS:
                found = get(f"{base}nbfeed/api/symbols?source={source}&category=Stocks"
                            f"&limit={args.symbols + 5}")["results"]
                names = [e["name"] for e in found]
                symbols[source], extra[source] = names[:args.symbols], names[args.symbols:]
            marks: dict = {"mark": mark}
            result = asyncio.run(run_clients(base, seconds, symbols, extra, args.clients,
                                             args.silence, marks, pids))
            errors = log_errors(log_path)
            alive = proc.poll() is None
        finally:
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
    tally: Tally = result["tally"]
    at_mark, at_end = marks["taken"].get("mark", {}), marks["taken"]["end"]
    report = {
        "seconds": seconds, "mark_s": mark, "load_avg": os.getloadavg(),
        "row_updates_per_s_upstream": args.rate * args.symbols * len(PROVIDERS),
        "rss_mb_at_mark": at_mark, "rss_mb_at_end": at_end, "rss_series": marks["series"],
        "rss_growth_pct": {name: round(100 * (at_end[name] - at_mark[name]) / at_mark[name], 1)
                           for name in at_end if at_mark.get(name) and at_end.get(name)},
        "silent_sockets": len({s for s, _ in tally.silent}),
        "silent_subscriptions": sorted(tally.silent)[:20],
        "history_answered": tally.history_answered, "history_refused": tally.history_refused,
        "subscriptions": tally.subscriptions, "sockets_opened": tally.sockets_opened,
        "rows_received": tally.rows, "unexpected_error_frames": tally.errors[:10],
        "bystander_max_gap_s": round(result["bystander_max_gap"] or 0, 3),
        "log_errors": len(errors), "log_error_lines": errors[:10], "server_alive": alive,
    }
    if args.json:
        print(json.dumps(report))
    else:
        print(f"soak: {seconds:.0f} s at {report['row_updates_per_s_upstream']:.0f} row "
              f"updates/s upstream, {args.clients} churn clients; load average "
              f"{', '.join(f'{x:.2f}' for x in report['load_avg'])}")
        print(f"  RSS MB at {mark:.0f} s: {_fmt(at_mark)}")
        print(f"  RSS MB at end:  {_fmt(at_end)}")
        print(f"  RSS growth %:   {report['rss_growth_pct']}  (target: < 5 %)")
        print("  RSS MB over time: " + "; ".join(f"{t}s {_fmt(r)}" for t, r in marks["series"]))
        print(f"  silent sockets: {report['silent_sockets']}  (target: 0) "
              f"{report['silent_subscriptions']}")
        print(f"  history answered: {tally.history_answered}, refused: "
              f"{tally.history_refused}; subscriptions: {tally.subscriptions}; sockets "
              f"opened: {tally.sockets_opened}; rows received: {tally.rows}")
        print(f"  bystander longest gap: {report['bystander_max_gap_s']} s  (target: < 1 s)")
        print(f"  errors in the server log: {len(errors)}  (target: 0)")
        for line in errors[:10]:
            print(f"    {line}")
        for frame in tally.errors[:5]:
            print(f"  unexpected error frame: {frame}")
    return report


def _fmt(rss: dict) -> str:
    return ", ".join(f"{name} {value:.1f}" for name, value in rss.items() if value is not None)


if __name__ == "__main__":
    main()
