"""Bench helper process: a bare tornado websocket server pushing pre-serialized frames.

usage: python bench/_ws_reference_server.py ROWS_PER_FRAME
Prints its port, then serves: every connection gets the same frame of ROWS_PER_FRAME quote rows
(serialized once) as fast as the client reads, each stamped with its send time. The ceiling
nbfeed's fan-out is measured against.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from tornado.web import Application
from tornado.websocket import WebSocketClosedError, WebSocketHandler

ROWS = int(sys.argv[1]) if len(sys.argv) > 1 else 100
ROW = {"time": 0, "symbol": "AAPL", "price": 208.5123, "prev_close": 209.7331,
       "change": -1.2208, "change_percent": -0.5818, "volume": 2666495.0, "bid": 208.4914,
       "ask": 208.5332}
BODY = ",".join(json.dumps(ROW, separators=(",", ":")) for _ in range(ROWS))


class Push(WebSocketHandler):
    def check_origin(self, origin: str) -> bool:
        return True

    def open(self) -> None:
        self.pusher = asyncio.ensure_future(self.push())

    async def push(self) -> None:
        try:
            while True:
                # Pre-serialized rows; only the send stamp is formatted per frame.
                await self.write_message('{"type":"data_update","id":"q","sent":'
                                         f'{time.time() * 1000:.1f},"rows":[{BODY}]}}')
        except WebSocketClosedError:
            pass


async def main() -> None:
    app = Application([(r"/ws", Push)])
    server = app.listen(0, "127.0.0.1")
    port = next(iter(server._sockets.values())).getsockname()[1]
    print(port, flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
