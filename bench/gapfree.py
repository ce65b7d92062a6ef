"""Gap-free streams, measured: resume times after a SIGKILL and an upstream cut, and how long a
silent stream takes to be reported stale.

One hub, the real ``binance`` provider process against the local fake Binance (tests/fakes), a
1s candle stream of ETHUSDT. Each round:

* **SIGKILL** of the provider process mid-stream. Reference: kill -> the provider ``running``
  again (supervision: a fresh interpreter, ``init``, resubscribe). Figure: ``running`` -> the
  first live bar delivered to the subscriber (the hole is filled from history before it; target
  <= 5 s).
* **upstream cut** of ``--cut`` seconds (default 30: every websocket dropped, every handshake
  refused meanwhile). Reference: the fake accepting handshakes again -> the provider's new
  socket open (its reconnect backoff). Figure: accepting again -> the first live bar delivered
  (target <= 5 s). Staleness: the cut -> the stream's ``stale`` event; reference: the threshold
  the stream had learned (``max(min_silence, factor x expected gap)``).

After each scenario the bars received for the whole span are compared with ``history()`` and with
the fake's own klines: missing, extra, different and out-of-order (duplicated) bars, all 0 when
the stream healed.

Usage (from the repository root, which holds the fakes)::

    python bench/gapfree.py              # one round, 30 s cut (~60 s)
    python bench/gapfree.py --cut 3 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: tests.*

from nbfeed.hub import Hub, HubConfig
from nbfeed.providers.registry import ProviderSpec
from tests.fakes import FakeBinance
from tests.gapfree_helpers import BarLog, compare_bars

BINANCE = "nbfeed.providers.binance:BinanceProvider"
SYMBOL, INTERVAL = "ETHUSDT", "1s"
TARGET_RESUME_S = 5.0


async def settle(log: BarLog, after: float, bars: int = 3) -> None:
    """Wait until ``bars`` more bars than the newest live one after ``after`` arrived."""
    await log.wait(lambda g: g.first_live_after(after), "live bars", timeout=120)
    first = next(r["time"] for t, r in log.snapshot() if t > after and not r.get("backfilled"))
    await log.wait(lambda g: max(g.bars()) >= first + bars * 1000, "more bars", timeout=60)


async def verdict(hub: Hub, fb: FakeBinance, log: BarLog, since: float) -> str:
    """Compare the bars received after ``since`` (one bar of margin) with history()."""
    bars = {t: r for t, r in log.bars().items()}
    first = min(r["time"] for t, r in log.snapshot() if t >= since - 3)
    last = max(bars)
    received = {t: r for t, r in bars.items() if first <= t < last}
    history = await hub.history("binance", SYMBOL, INTERVAL, start=first, end=last)
    now = int(time.time() * 1000)
    vendor = [{"time": k[0], "open": float(k[1]), "high": float(k[2]), "low": float(k[3]),
               "close": float(k[4]), "volume": float(k[5])}
              for k in fb.klines(SYMBOL, INTERVAL, first, last - 1, 1000, now)]
    ours, theirs = compare_bars(received, history), compare_bars(received, vendor)
    late = [t for t in log.times_out_of_order() if t >= first]
    return (f"{ours.compared} bars vs history(): missing {len(ours.missing)}, extra "
            f"{len(ours.extra)}, different {len(ours.different)}; vs the exchange's klines: "
            f"missing {len(theirs.missing)}, different {len(theirs.different)}; out of order or "
            f"duplicated {len(late)}")


async def sigkill(hub: Hub, fb: FakeBinance, log: BarLog) -> list[str]:
    since = time.monotonic()
    pid = next(p["pid"] for p in hub.providers_info() if p["name"] == "binance")
    filled_before = len(log.backfilled())
    # Kill late in a bar, so the restart crosses a bar boundary and the open bar's final
    # version has to come from history (a restart inside one bar loses nothing).
    await asyncio.sleep((1800 - time.time() * 1000 % 1000) % 1000 / 1000)
    killed = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    running = await log.wait(lambda g: [t for t, e in g.source_events("running") if t > killed],
                             "the provider running again", timeout=60)
    await settle(log, running[0])
    resume = log.first_live_after(running[0]) - running[0]
    return [f"SIGKILL    restart (reference) {running[0] - killed:6.2f} s | live bars "
            f"{resume:5.2f} s after the provider was back (target <= {TARGET_RESUME_S:g} s) | "
            f"{len(log.backfilled()) - filled_before} bars backfilled",
            "           " + await verdict(hub, fb, log, since)]


async def cut(hub: Hub, fb: FakeBinance, log: BarLog, seconds: float) -> list[str]:
    since = time.monotonic()
    key = ("binance", SYMBOL, INTERVAL)
    rules = hub.config.staleness
    threshold = max(rules.min_silence, rules.factor * hub.health.expected_gap(key))
    filled_before = len(log.backfilled())
    sockets_before = len(fb.sockets)
    cut_at = time.monotonic()
    back_at = await asyncio.to_thread(fb.cut_sockets, seconds)
    stale = await log.wait(lambda g: [t for t, e in g.stream_events("stale") if t > cut_at],
                           "the stream stale", timeout=60)
    await asyncio.to_thread(fb.wait_for, lambda: len(fb.sockets) > sockets_before,
                            seconds + 60, "the provider's new socket")
    reconnected = fb.sockets[-1].opened  # wall clock
    reconnect = reconnected - (time.time() - (time.monotonic() - back_at))
    await settle(log, back_at)
    resume = log.first_live_after(back_at) - back_at
    return [f"cut {seconds:4.0f} s upstream back -> provider reconnected (reference) "
            f"{reconnect:5.2f} s | live bars {resume:5.2f} s after the upstream was back "
            f"(target <= {TARGET_RESUME_S:g} s) | {len(log.backfilled()) - filled_before} bars "
            f"backfilled",
            f"           stale after {stale[0] - cut_at:5.2f} s of silence (reference: the "
            f"learned threshold {threshold:.2f} s)",
            "           " + await verdict(hub, fb, log, since)]


async def main(args: argparse.Namespace) -> None:
    logging.getLogger("tornado.access").setLevel(logging.CRITICAL)  # the fake's 503s: expected
    with FakeBinance() as fb, tempfile.TemporaryDirectory() as home:
        hub = Hub(HubConfig(home=Path(home), providers=[ProviderSpec(
            "binance", BINANCE, {"rest_url": fb.rest_url, "ws_url": fb.ws_url})],
            backoff_base=0.25))
        await hub.start()
        sub = await hub.subscribe("binance", [SYMBOL], INTERVAL)
        log = BarLog.start(sub)
        try:
            await log.wait(lambda g: len(g.bars()) >= 5, "five bars first", timeout=60)
            print(f"gapfree: {SYMBOL} {INTERVAL} from the binance provider process "
                  f"(fake Binance), load average {os.getloadavg()[0]:.2f}")
            for _ in range(args.rounds):
                for line in await sigkill(hub, fb, log):
                    print(line, flush=True)
                for line in await cut(hub, fb, log, args.cut):
                    print(line, flush=True)
        finally:
            log.stop()
            await sub.close()
            await hub.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cut", type=float, default=30.0, help="seconds the upstream is cut")
    parser.add_argument("--rounds", type=int, default=1)
    asyncio.run(main(parser.parse_args()))
