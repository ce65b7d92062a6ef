"""Bench helper process: N websocket clients reading as fast as they can; prints JSON stats.

usage: python bench/_ws_clients.py URL N SECONDS [SUBSCRIBE_JSON] [TOKEN]
Rows are counted without a full parse (one '"symbol"' per row); one frame in 16 is parsed to
sample latency = now - the newest row's time (or the frame's "sent" field).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect


async def client(url: str, token: str, sub: str | None, stop_at: float, out: dict) -> None:
    headers = {"Authorization": f"token {token}"} if token else {}
    ws = await websocket_connect(HTTPRequest(url, headers=headers), max_message_size=256 << 20)
    if sub:
        await ws.write_message(sub)
    frames = 0
    while True:
        msg = await ws.read_message()
        if msg is None:
            break
        now = time.time()
        if now >= stop_at:
            break
        if now >= out["start_at"]:
            out["rows"] += msg.count('"symbol"')
            frames += 1
            if frames % 16 == 0:
                frame = json.loads(msg)
                t = frame.get("sent") or (frame.get("rows") or [{}])[-1].get("time")
                if t:
                    out["lat"].append(now * 1000 - t)
    ws.close()


async def main() -> None:
    url, n, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    sub = sys.argv[4] if len(sys.argv) > 4 and sys.argv[4] != "-" else None
    token = sys.argv[5] if len(sys.argv) > 5 else ""
    warmup = 1.5
    out = {"rows": 0, "lat": [], "start_at": time.time() + warmup}
    stop_at = time.time() + warmup + seconds
    await asyncio.gather(*(client(url, token, sub, stop_at, out) for _ in range(n)))
    lat = sorted(out["lat"])

    def pct(p: float) -> float | None:
        return round(lat[min(len(lat) - 1, int(p * len(lat)))], 2) if lat else None

    print(json.dumps({"rows_per_s": out["rows"] / seconds, "p50_ms": pct(0.5),
                      "p99_ms": pct(0.99), "samples": len(lat)}))


if __name__ == "__main__":
    asyncio.run(main())
