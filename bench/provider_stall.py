"""A hung provider: how long until it is noticed, and until its streams resume.

A hub runs two simulated providers (real processes) with the default heartbeat settings (or
those given). A subscriber holds a stream of each; the ``victim`` process is then frozen with
SIGSTOP. Printed:

* detection delay: SIGSTOP -> the in-band ``stalled`` status event (the heartbeat's job;
  expected: ``stall_timeout`` to ``stall_timeout + heartbeat_interval``);
* restart: SIGSTOP -> ``restarting`` (``stall_restart_after`` later), and the resume time,
  SIGSTOP -> the first row from the new process;
* for reference, in the same run: SIGKILL -> first row from the new process (a crash);
* the bystander stream's longest gap over the whole run (target: under 1 s).

usage: python bench/provider_stall.py [--heartbeat 1] [--stall-timeout 5] [--restart-after 15]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import tempfile
import time
from pathlib import Path

from nbfeed.hub import Hub, HubConfig
from nbfeed.hub.outbox import StreamBatch
from nbfeed.providers.registry import resolve_spec


class Watch:
    """Reads a subscription in a task: arrival time of each batch, and status events."""

    def __init__(self, sub) -> None:
        self.sub = sub
        self.last_row = time.monotonic()
        self.max_gap = 0.0
        self.events: list[tuple[float, str]] = []
        self.rows_after: dict[float, float] = {}  # mark -> first row time after it
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            try:
                items = await self.sub.get()
            except EOFError:  # the hub stopped
                return
            now = time.monotonic()
            for item in items:
                if isinstance(item, StreamBatch) and item.rows:
                    self.max_gap = max(self.max_gap, now - self.last_row)
                    self.last_row = now
                    for mark in self.rows_after:
                        if self.rows_after[mark] == 0.0 and now > mark:
                            self.rows_after[mark] = now
                elif isinstance(item, dict) and item.get("type") == "status":
                    self.events.append((now, item["state"]))

    async def until_state(self, state: str, after: float, timeout: float = 120) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for at, seen in self.events:
                if seen == state and at >= after:
                    return at
            await asyncio.sleep(0.01)
        raise TimeoutError(f"no {state!r} event within {timeout} s")

    async def first_row_after(self, mark: float, timeout: float = 120) -> float:
        self.rows_after[mark] = 0.0
        deadline = time.monotonic() + timeout
        while not self.rows_after[mark]:
            if time.monotonic() > deadline:
                raise TimeoutError("no rows")
            await asyncio.sleep(0.01)
        return self.rows_after[mark]


async def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        specs = [resolve_spec("simulated", None, rate=50),
                 resolve_spec("victim", "nbfeed.providers.simulated:SimulatedProvider",
                              rate=50)]
        hub = Hub(HubConfig(providers=specs, home=Path(tmp),
                            heartbeat_interval=args.heartbeat,
                            stall_timeout=args.stall_timeout,
                            stall_restart_after=args.restart_after))
        await hub.start()
        try:
            bystander = Watch(await hub.subscribe("simulated", ["AAPL"]))
            victim = Watch(await hub.subscribe("victim", ["MSFT"]))
            await victim.first_row_after(time.monotonic())
            bystander.max_gap = 0.0
            pid = next(p["pid"] for p in hub.providers_info() if p["name"] == "victim")

            frozen = time.monotonic()
            os.kill(pid, signal.SIGSTOP)
            try:
                stalled = await victim.until_state("stalled", frozen)
                restarting = await victim.until_state("restarting", frozen)
                resumed = await victim.first_row_after(restarting)
            finally:
                try:
                    os.kill(pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
            await victim.until_state("running", restarting)

            pid = next(p["pid"] for p in hub.providers_info() if p["name"] == "victim")
            killed = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            crash_resumed = await victim.first_row_after(killed + 0.001)

            print(f"provider stall (heartbeat {args.heartbeat:g} s, stall_timeout "
                  f"{args.stall_timeout:g} s, stall_restart_after {args.restart_after:g} s); "
                  f"load average {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
            print(f"  detection delay (SIGSTOP -> stalled):    {stalled - frozen:6.2f} s")
            print(f"  SIGSTOP -> restarting:                   {restarting - frozen:6.2f} s")
            print(f"  resume time (SIGSTOP -> rows again):     {resumed - frozen:6.2f} s "
                  f"({resumed - restarting:.2f} s after the kill)")
            print(f"  reference, a crash (SIGKILL -> rows):    {crash_resumed - killed:6.2f} s")
            print(f"  bystander longest gap:                   {bystander.max_gap:6.2f} s "
                  "(target: < 1 s)")
        finally:
            await hub.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    defaults = HubConfig()
    ap.add_argument("--heartbeat", type=float, default=defaults.heartbeat_interval)
    ap.add_argument("--stall-timeout", type=float, default=defaults.stall_timeout)
    ap.add_argument("--restart-after", type=float, default=defaults.stall_restart_after)
    asyncio.run(run(ap.parse_args()))


if __name__ == "__main__":
    main()
