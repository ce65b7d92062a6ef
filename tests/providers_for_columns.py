"""A provider for the columnar transport tests: publishes a fixed script of awkward rows."""

from __future__ import annotations

import threading

import pandas as pd

from nbfeed.errors import BadRequest
from nbfeed.intervals import TICK
from nbfeed.providers.base import Provider

#: The first row's time; every scripted row is a few ms later.
T0 = 1_700_000_000_000


def script() -> list[tuple[list[dict] | dict | pd.DataFrame, dict]]:
    """``(what, publish keywords)`` in publish order, for symbol ``MIX``."""
    return [
        # A quote as most authors write it, with an int, a bool and text.
        ([{"time": T0, "symbol": "MIX", "price": 1.5, "size": 3, "flag": True,
           "venue": "XNAS"}], {"interval": TICK}),
        # Fields absent from some rows, a None, another key order, non-ASCII text.
        ([{"time": T0 + 1, "symbol": "MIX", "price": 2.25, "note": None},
          {"symbol": "MIX", "time": T0 + 2, "venue": "Zürich ✓", "price": 2.5, "size": 4}],
         {"interval": TICK}),
        # Two symbols in one call: each row goes to its own stream.
        ([{"time": T0 + 3, "symbol": "MIX", "price": 3.0},
          {"time": T0 + 3, "symbol": "OTHER", "price": 9.0}], {"interval": TICK}),
        # A DataFrame with a symbol argument and no interval (the stream's one is guessed).
        (pd.DataFrame({"time": [T0 + 4], "price": [4.0], "size": [5]}), {"symbol": "MIX"}),
    ]


class ScriptedRowsProvider(Provider):
    """On subscribing ``MIX``/tick: publishes :func:`script`, then a row that cannot travel
    (its time is beyond int64 ms), reporting the refusal it gets in a row of its own, then
    ``{"done": True}``."""

    name = "scripted"

    def get_dataset(self) -> list[dict]:
        return [{"name": s, "type": "quote", "intervals": [TICK]} for s in ("MIX", "OTHER")]

    def subscribe(self, symbol: str, interval: str) -> None:
        if symbol == "MIX":
            threading.Thread(target=self._play, daemon=True).start()

    def _play(self) -> None:
        for rows, kw in script():
            self.publish(rows, **kw)
        try:
            self.publish({"time": 10**20, "symbol": "MIX", "price": 1.0}, interval=TICK)
            refused = "nothing"
        except BadRequest as exc:
            refused = str(exc)
        self.publish({"time": T0 + 5, "symbol": "MIX", "refused": refused}, interval=TICK)
        self.publish({"time": T0 + 6, "symbol": "MIX", "done": True}, interval=TICK)
