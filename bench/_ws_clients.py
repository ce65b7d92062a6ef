"""Bench helper process: N websocket clients reading as fast as they can; prints JSON stats.

usage: python bench/_ws_clients.py URL N SECONDS [SUBSCRIBE_JSON] [TOKEN] [FORMAT]
FORMAT ``json`` (default) or ``binary``: a binary client first sends
``{"type": "hello", "format": "binary"}`` and reads its data frames in nbfeed's binary layout.
Rows are counted without a full parse (JSON: one '"symbol"' per row; binary: the frame
header's row count); one frame in 16 is parsed to sample latency = now - the newest row's time
(or the frame's "sent" field). Also printed: frames and bytes received per second.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from nbfeed.wire_binary import FrameReader


def newest_time(msg: str | bytes, reader: FrameReader) -> float | None:
    if isinstance(msg, bytes):
        _, batches = reader.read(msg)
        return max((int(b.time[-1]) for b in batches if len(b)), default=None)
    frame = json.loads(msg)
    return frame.get("sent") or (frame.get("rows") or [{}])[-1].get("time")


async def client(url: str, token: str, sub: str | None, fmt: str, stop_at: float,
                 out: dict) -> None:
    headers = {"Authorization": f"token {token}"} if token else {}
    ws = await websocket_connect(HTTPRequest(url, headers=headers), max_message_size=256 << 20)
    if fmt == "binary":
        await ws.write_message(json.dumps({"type": "hello", "format": "binary"}))
    if sub:
        await ws.write_message(sub)
    frames = 0
    reader = FrameReader()
    while True:
        msg = await ws.read_message()
        if msg is None:
            break
        now = time.time()
        if now >= stop_at:
            break
        # Every binary frame's header is read: it may define schemas later frames use.
        header = reader.skim(msg) if isinstance(msg, bytes) else None
        if now >= out["start_at"]:
            if header is not None:
                out["rows"] += header["rows"]
            else:
                out["rows"] += msg.count('"symbol"')
            out["frames"] += 1
            out["bytes"] += len(msg)
            frames += 1
            if frames % 16 == 0:
                t = newest_time(msg, reader)
                if t:
                    out["lat"].append(now * 1000 - t)
    ws.close()


async def main() -> None:
    url, n, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    sub = sys.argv[4] if len(sys.argv) > 4 and sys.argv[4] != "-" else None
    token = sys.argv[5] if len(sys.argv) > 5 else ""
    fmt = sys.argv[6] if len(sys.argv) > 6 else "json"
    warmup = 1.5
    out = {"rows": 0, "frames": 0, "bytes": 0, "lat": [], "start_at": time.time() + warmup}
    stop_at = time.time() + warmup + seconds
    await asyncio.gather(*(client(url, token, sub, fmt, stop_at, out) for _ in range(n)))
    lat = sorted(out["lat"])

    def pct(p: float) -> float | None:
        return round(lat[min(len(lat) - 1, int(p * len(lat)))], 2) if lat else None

    print(json.dumps({"rows_per_s": out["rows"] / seconds, "p50_ms": pct(0.5),
                      "p99_ms": pct(0.99), "samples": len(lat),
                      "frames_per_s": out["frames"] / seconds,
                      "bytes_per_s": out["bytes"] / seconds}))


if __name__ == "__main__":
    asyncio.run(main())
