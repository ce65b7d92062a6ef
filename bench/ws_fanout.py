"""Websocket fan-out: nbfeed's ``nbfeed/api/stream`` vs a bare tornado websocket (same run).

A real Jupyter server with the nbfeed extension runs the simulated provider at a high rate; 1,
10 and 100 websocket clients (in one separate process) subscribe to the same symbols and read as
fast as they can. Printed per client count: delivered row updates/s, latency p50/p99 (row time
-> received), and the same for a bare tornado websocket server pushing pre-serialized frames of
100 rows (the ceiling on this machine), plus the ratio.

usage: python bench/ws_fanout.py [--seconds 5] [--rate 2000] [--symbols 20]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

HERE = Path(__file__).parent
TOKEN = "bench-token"


def run_clients(url: str, n: int, seconds: float, sub: str | None, token: str = "") -> dict:
    out = subprocess.run([sys.executable, str(HERE / "_ws_clients.py"), url, str(n),
                          str(seconds), sub or "-", token],
                         capture_output=True, text=True, timeout=seconds + 120)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def start_nbfeed(tmp: Path, rate: float, symbols: int) -> tuple[subprocess.Popen, str]:
    runtime = tmp / "runtime"
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(runtime), "NBFEED_HOME": str(tmp / "home"),
           "JUPYTER_CONFIG_DIR": str(tmp / "config")}
    opts = json.dumps({"simulated": {"rate": rate}})
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter_server", "--no-browser", "--port=0", "--allow-root",
         '--ServerApp.jpserver_extensions={"nbfeed": True}', f"--IdentityProvider.token={TOKEN}",
         "--NBFeed.providers=simulated", f"--NBFeed.provider_options={opts}",
         "--ServerApp.log_level=WARN"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    info = runtime / f"nbfeed-{proc.pid}.json"
    deadline = time.time() + 120
    while not info.exists():
        if time.time() > deadline or proc.poll() is not None:
            proc.kill()
            raise RuntimeError("the Jupyter server did not start")
        time.sleep(0.2)
    return proc, json.loads(info.read_text())["url"]


def stock_symbols(base_url: str, n: int) -> list[str]:
    """The first ``n`` simulated stocks, from the server's own symbol search (public REST)."""
    query = urllib.parse.urlencode({"source": "simulated", "category": "Stocks", "limit": n})
    req = urllib.request.Request(f"{base_url}nbfeed/api/symbols?{query}",
                                 headers={"Authorization": f"token {TOKEN}"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        return [entry["name"] for entry in json.load(resp)["results"]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rate", type=float, default=2000.0, help="updates/s per symbol")
    ap.add_argument("--symbols", type=int, default=20)
    ap.add_argument("--clients", default="1,10,100")
    args = ap.parse_args()
    counts = [int(c) for c in args.clients.split(",")]

    ref = subprocess.Popen([sys.executable, str(HERE / "_ws_reference_server.py"), "100"],
                           stdout=subprocess.PIPE, text=True)
    ref_url = f"ws://127.0.0.1:{ref.stdout.readline().strip()}/ws"
    reference = {n: run_clients(ref_url, n, args.seconds, None) for n in counts}
    ref.kill()

    with tempfile.TemporaryDirectory() as tmp:
        proc, base_url = start_nbfeed(Path(tmp), args.rate, args.symbols)
        try:
            syms = stock_symbols(base_url, args.symbols)
            sub = json.dumps({"type": "subscribe", "id": "q", "source": "simulated",
                              "symbols": syms, "interval": "tick"})
            print(f"upstream: simulated, {len(syms)} symbols x {args.rate:g}/s = "
                  f"{len(syms) * args.rate:,.0f} row updates/s; {args.seconds:g} s per run; "
                  f"{os.cpu_count()} cores")
            url = "ws" + base_url[4:] + "nbfeed/api/stream"
            results = {n: run_clients(url, n, args.seconds, sub, TOKEN) for n in counts}
        finally:
            proc.terminate()
            proc.wait(30)

    print(f"{'clients':>7} | {'nbfeed rows/s':>14} {'p50 ms':>7} {'p99 ms':>7} | "
          f"{'bare tornado rows/s':>19} {'p50 ms':>7} {'p99 ms':>7} | ratio")
    for n in counts:
        r, c = results[n], reference[n]
        ratio = r["rows_per_s"] / c["rows_per_s"] if c["rows_per_s"] else float("nan")
        print(f"{n:>7} | {r['rows_per_s']:>14,.0f} {r['p50_ms']!s:>7} {r['p99_ms']!s:>7} | "
              f"{c['rows_per_s']:>19,.0f} {c['p50_ms']!s:>7} {c['p99_ms']!s:>7} | "
              f"{ratio:.0%}")
    print("ratio = nbfeed delivered row updates/s / bare tornado ceiling (target >= 50% at 10 "
          "clients). nbfeed delivery is capped by the upstream rate x clients.")


if __name__ == "__main__":
    main()
