"""Websocket fan-out: nbfeed's ``nbfeed/api/stream`` vs a bare tornado websocket (same run).

A real Jupyter server with the nbfeed extension runs the simulated provider at a high rate; 1,
10 and 100 websocket clients (in one separate process) subscribe to the same symbols and read as
fast as they can. Printed per client count: delivered row updates/s, latency p50/p99 (row time
-> received), bytes per row and frames/s, and the same for a bare tornado websocket server
pushing pre-serialized frames of 100 rows (the ceiling on this machine; measured right before
each nbfeed run, as the machine may be shared), plus the ratio.

Each client count runs twice on the same server: clients reading JSON text frames (the default
for any client) and clients that ask for binary data frames (what the notebook client does).

usage: python bench/ws_fanout.py [--seconds 5] [--rate 10000] [--symbols 20] [--clients 1,10,100]
                                 [--formats json,binary]
                                 [--rounds 1] [--baseline TREE]
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


def run_clients(url: str, n: int, seconds: float, sub: str | None, token: str = "",
                fmt: str = "json") -> dict:
    out = subprocess.run([sys.executable, str(HERE / "_ws_clients.py"), url, str(n),
                          str(seconds), sub or "-", token, fmt],
                         capture_output=True, text=True, timeout=seconds + 120)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) the process ``pid`` has used so far (its children apart)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_nbfeed(tmp: Path, rate: float, symbols: int, code: str | None = None
                 ) -> tuple[subprocess.Popen, str]:
    """``code``: another nbfeed tree for the server to import (e.g. an older commit's)."""
    runtime = tmp / "runtime"
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(runtime), "NBFEED_HOME": str(tmp / "home"),
           "JUPYTER_CONFIG_DIR": str(tmp / "config")}
    if code:
        env["PYTHONPATH"] = os.pathsep.join([code, env.get("PYTHONPATH", "")])
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


def median(values: list[float]) -> float:
    values = sorted(values)
    if not values:
        return float("nan")
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rate", type=float, default=10000.0, help="updates/s per symbol")
    ap.add_argument("--symbols", type=int, default=20)
    ap.add_argument("--clients", default="1,10,100")
    ap.add_argument("--formats", default="json,binary",
                    help="data_update formats the nbfeed clients ask for")
    ap.add_argument("--rounds", type=int, default=1,
                    help="repeat every run; medians are printed")
    ap.add_argument("--baseline", help="also run an nbfeed server from this source tree (e.g. "
                    "`git archive` of an older commit) with JSON clients, in the same rounds")
    args = ap.parse_args()
    counts = [int(c) for c in args.clients.split(",")]
    formats = args.formats.split(",")

    # The reference server stays up (idle without clients) and runs right before each nbfeed
    # run, so both see the same machine: other work on a shared machine moves both. nbfeed
    # servers are idle too between their runs (no subscriber: the provider stops the stream).
    ref = subprocess.Popen([sys.executable, str(HERE / "_ws_reference_server.py"), "100"],
                           stdout=subprocess.PIPE, text=True)
    ref_url = f"ws://127.0.0.1:{ref.stdout.readline().strip()}/ws"
    runs: dict[tuple[str, int], list[tuple[dict, dict]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "now").mkdir()
        (Path(tmp) / "baseline").mkdir()
        servers = {"": start_nbfeed(Path(tmp) / "now", args.rate, args.symbols)}
        plan = [("", fmt) for fmt in formats]
        if args.baseline:
            servers["baseline"] = start_nbfeed(Path(tmp) / "baseline", args.rate, args.symbols,
                                               args.baseline)
            plan.insert(0, ("baseline", "json"))
        try:
            base_url = servers[""][1]
            syms = stock_symbols(base_url, args.symbols)
            sub = json.dumps({"type": "subscribe", "id": "q", "source": "simulated",
                              "symbols": syms, "interval": "tick"})
            print(f"upstream: simulated, {len(syms)} symbols x {args.rate:g}/s = "
                  f"{len(syms) * args.rate:,.0f} row updates/s; {args.seconds:g} s per run; "
                  f"{args.rounds} round(s); {os.cpu_count()} cores; load average "
                  f"{os.getloadavg()[0]:.2f}")
            for _ in range(args.rounds):
                for n in counts:
                    for server, fmt in plan:
                        url = "ws" + servers[server][1][4:] + "nbfeed/api/stream"
                        c = run_clients(ref_url, n, args.seconds, None)
                        pid = servers[server][0].pid
                        cpu = cpu_seconds(pid)
                        r = run_clients(url, n, args.seconds, sub, TOKEN, fmt)
                        # Server CPU (its provider process apart) per row delivered: less
                        # moved by other work on the machine than rows/s.
                        r["cpu_us_per_row"] = ((cpu_seconds(pid) - cpu) * 1e6
                                               / max(1.0, r["rows_per_s"] * args.seconds))
                        runs.setdefault((f"{fmt}@{server}" if server else fmt, n),
                                        []).append((r, c))
        finally:
            for proc, _ in servers.values():
                proc.terminate()
                proc.wait(30)
            ref.kill()

    print(f"{'clients':>7} {'format':>13} | {'nbfeed rows/s':>14} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'B/row':>5} {'frames/s':>8} {'srv us/row':>10} | {'bare tornado rows/s':>19} "
          f"{'p50 ms':>7} {'p99 ms':>7} | ratio (rounds)")
    for (label, n), pairs in runs.items():
        ratios = [r["rows_per_s"] / c["rows_per_s"] for r, c in pairs if c["rows_per_s"]]

        def med(key: str, side: int, pairs: list = pairs) -> float:
            return median([p[side][key] for p in pairs if p[side][key] is not None])

        rows = med("rows_per_s", 0)
        per_row = med("bytes_per_s", 0) / rows if rows else 0
        print(f"{n:>7} {label:>13} | {rows:>14,.0f} {med('p50_ms', 0):>7.1f} "
              f"{med('p99_ms', 0):>7.1f} {per_row:>5.0f} {med('frames_per_s', 0):>8,.0f} "
              f"{med('cpu_us_per_row', 0):>10.2f} | "
              f"{med('rows_per_s', 1):>19,.0f} {med('p50_ms', 1):>7.1f} "
              f"{med('p99_ms', 1):>7.1f} | {median(ratios):.0%} "
              f"({', '.join(f'{x:.0%}' for x in ratios)})")
    print(f"load average at the end {os.getloadavg()[0]:.2f}. ratio = nbfeed delivered row "
          "updates/s / bare tornado ceiling measured right before it (JSON frames of 100 rows; "
          "target >= 80% at 10 clients); medians of the rounds. nbfeed delivery is capped by "
          "the upstream rate x clients. srv us/row: CPU time of the nbfeed server process (not its "
          "provider) during the run / rows delivered (includes the warm-up's rows' work).")


if __name__ == "__main__":
    main()
