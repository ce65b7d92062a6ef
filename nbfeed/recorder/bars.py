"""Bars built from a recording's rows, as they stood at a moment of the recording's clock.

``history()`` on a recording answers with these, so a strategy can be warmed up on the bars
before a replay's start and then fed the replay from that point: a bar still open at ``end``
comes out as of ``end`` (like a live source's open bar), and replaying from ``end`` continues it.

* **Quote rows** (recorded at ``tick``): one bar per ``interval`` span of the rows' own ``time``;
  the price is the first field present of ``price``, ``last``, ``close``, ``mid``, else the mid
  of ``bid``/``ask``. Volume: the sum of ``size``/``qty``/``quantity`` when rows carry one,
  else the rises of a cumulative ``volume`` field (a fall, such as a reset at midnight, counts
  as zero); no volume column when rows have neither.
* **Candle rows** (recorded at a bar interval): the last version of each bar (rows are bar
  updates), then combined into coarser bars (open of the first, highest high, lowest low, close
  of the last, summed volume). A finer interval than the recorded one is refused.

Only rows *received* before ``end`` count (what was known then). Work is vectorized per Arrow
table, so a recording of millions of rows becomes bars in about a second.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import BadInterval
from ..intervals import BAR_INTERVALS, TICK, floor_bar, interval_ms
from .schema import TIME

PRICE_FIELDS = ("price", "last", "close", "mid")
SIZE_FIELDS = ("size", "qty", "quantity")
_DAY = 86_400_000


def check_bar_interval(interval: str, recorded: str) -> None:
    """Refuse what cannot be built from rows recorded at ``recorded`` (errors name both)."""
    if interval not in BAR_INTERVALS:
        raise BadInterval(f"history needs a bar interval ({', '.join(BAR_INTERVALS)}), got "
                          f"{interval!r}")
    if recorded == TICK:
        return
    if interval_ms(interval) < interval_ms(recorded) or (
            interval != "1M" and interval_ms(interval) % interval_ms(recorded)):
        raise BadInterval(f"bars of {interval} cannot be built from {recorded} bars; use "
                          f"{recorded} or a whole multiple of it")


def floor_many(times: np.ndarray, interval: str) -> np.ndarray:
    """Bar starts of ``interval`` for epoch-ms ``times`` (vectorized :func:`floor_bar`)."""
    if interval == "1M":
        days = times // _DAY
        unique, inverse = np.unique(days, return_inverse=True)
        starts = np.array([floor_bar(int(d) * _DAY, "1M") for d in unique], dtype=np.int64)
        return starts[inverse]
    if interval == "1w":
        return np.asarray([floor_bar(0, "1w")], dtype=np.int64) + \
            (times - floor_bar(0, "1w")) // (7 * _DAY) * (7 * _DAY)
    step = interval_ms(interval)
    return times - times % step


class _Bars:
    """Running OHLCV bars keyed by start time."""

    def __init__(self) -> None:
        self.bars: dict[int, list[float]] = {}  # start -> [open, high, low, close, volume]

    def add(self, starts: np.ndarray, opens: np.ndarray, highs: np.ndarray, lows: np.ndarray,
            closes: np.ndarray, volumes: np.ndarray) -> None:
        """Fold rows (already in recorded order) into the bars."""
        if not len(starts):
            return
        order = np.argsort(starts, kind="stable")
        s = starts[order]
        cuts = np.flatnonzero(np.diff(s)) + 1
        first = np.concatenate(([0], cuts))
        last = np.concatenate((cuts - 1, [len(s) - 1]))
        high = np.maximum.reduceat(highs[order], first)
        low = np.minimum.reduceat(lows[order], first)
        vol = np.add.reduceat(volumes[order], first)
        o, c = opens[order][first], closes[order][last]
        bars = self.bars
        for k, start in enumerate(s[first].tolist()):
            bar = bars.get(start)
            if bar is None:
                bars[start] = [float(o[k]), float(high[k]), float(low[k]), float(c[k]),
                               float(vol[k])]
            else:
                bar[1] = max(bar[1], float(high[k]))
                bar[2] = min(bar[2], float(low[k]))
                bar[3] = float(c[k])
                bar[4] += float(vol[k])


def _column(table: pa.Table, name: str) -> np.ndarray | None:
    if name not in table.schema.names:
        return None
    column = table.column(name)
    if not (pa.types.is_floating(column.type) or pa.types.is_integer(column.type)):
        return None
    return column.cast(pa.float64()).to_numpy(zero_copy_only=False)


def _price(table: pa.Table) -> np.ndarray | None:
    for name in PRICE_FIELDS:
        values = _column(table, name)
        if values is not None:
            return values
    bid, ask = _column(table, "bid"), _column(table, "ask")
    if bid is not None and ask is not None:
        return (bid + ask) / 2
    return None


class TickBars:
    """Bars of one symbol from quote rows fed table by table (see module docstring)."""

    def __init__(self, interval: str) -> None:
        self.interval = interval
        self._bars = _Bars()
        self._last_volume: float | None = None
        self.has_volume = False

    def feed(self, table: pa.Table) -> None:
        price = _price(table)
        if price is None or not table.num_rows:
            return
        times = table.column(TIME).cast(pa.int64()).to_numpy(zero_copy_only=False)
        volume = self._volumes(table)
        ok = ~np.isnan(price)
        starts = floor_many(times[ok], self.interval)
        p = price[ok]
        self._bars.add(starts, p, p, p, p, volume[ok])

    def _volumes(self, table: pa.Table) -> np.ndarray:
        for name in SIZE_FIELDS:
            size = _column(table, name)
            if size is not None:
                self.has_volume = True
                return np.nan_to_num(size)
        cumulative = _column(table, "volume")
        if cumulative is None:
            return np.zeros(table.num_rows)
        self.has_volume = True
        filled = pd_ffill(cumulative, self._last_volume)
        previous = np.concatenate(([filled[0] if self._last_volume is None
                                    else self._last_volume], filled[:-1]))
        rises = np.clip(np.nan_to_num(filled - previous), 0, None)
        if len(filled) and not np.isnan(filled[-1]):
            self._last_volume = float(filled[-1])
        return rises

    def rows(self, symbol: str) -> list[dict]:
        return _bar_rows(self._bars.bars, symbol, self.has_volume)


def pd_ffill(values: np.ndarray, before: float | None) -> np.ndarray:
    """Forward-fill NaNs (rows without the field), starting from ``before``."""
    mask = np.isnan(values)
    if not mask.any():
        return values
    out = values.copy()
    if mask[0] and before is not None:
        out[0] = before
        mask = np.isnan(out)
    idx = np.where(~mask, np.arange(len(out)), 0)
    np.maximum.accumulate(idx, out=idx)
    return out[idx]


class CandleBars:
    """Bars of one symbol from candle rows recorded at ``recorded``, combined to ``interval``."""

    def __init__(self, interval: str, recorded: str) -> None:
        self.interval = interval
        self.recorded = recorded
        self._final: dict[int, tuple[float, float, float, float, float]] = {}
        self.has_volume = False

    def feed(self, table: pa.Table) -> None:
        cols = [_column(table, f) for f in ("open", "high", "low", "close")]
        if any(c is None for c in cols) or not table.num_rows:
            return
        volume = _column(table, "volume")
        if volume is not None:
            self.has_volume = True
        else:
            volume = np.zeros(table.num_rows)
        times = table.column(TIME).cast(pa.int64()).to_numpy(zero_copy_only=False)
        final = self._final
        for t, o, h, lo, c, v in zip(times.tolist(), *(x.tolist() for x in cols),
                                     volume.tolist()):
            final[t] = (o, h, lo, c, v)  # later versions of a bar replace earlier ones

    def rows(self, symbol: str) -> list[dict]:
        if not self._final:
            return []
        times = np.array(sorted(self._final), dtype=np.int64)
        values = np.array([self._final[t] for t in times.tolist()], dtype=np.float64)
        if self.interval == self.recorded:
            bars = {int(t): list(v) for t, v in zip(times.tolist(), values.tolist())}
        else:
            combined = _Bars()
            combined.add(floor_many(times, self.interval), values[:, 0], values[:, 1],
                         values[:, 2], values[:, 3], np.nan_to_num(values[:, 4]))
            bars = combined.bars
        return _bar_rows(bars, symbol, self.has_volume)


def _bar_rows(bars: dict[int, list[float]], symbol: str, with_volume: bool) -> list[dict]:
    out = []
    for start in sorted(bars):
        o, h, lo, c, v = bars[start]
        row: dict[str, Any] = {"time": start, "symbol": symbol, "open": o, "high": h,
                               "low": lo, "close": c}
        if with_volume:
            row["volume"] = v
        out.append(row)
    return out


def build_bars(tables: Iterable[pa.Table], symbol: str, interval: str, recorded: str,
               start_ms: int | None = None, end_ms: int | None = None,
               count: int | None = None) -> list[dict]:
    """Bars of ``symbol`` at ``interval`` from tables of its rows recorded at ``recorded``
    (already limited to rows received before ``end_ms``), starting in ``[start_ms, end_ms)``,
    the newest ``count`` of them."""
    check_bar_interval(interval, recorded)
    builder: TickBars | CandleBars = (TickBars(interval) if recorded == TICK
                                      else CandleBars(interval, recorded))
    for table in tables:
        if "symbol" in table.schema.names and table.num_rows:
            table = table.filter(pc.equal(table.column("symbol"), symbol))
        builder.feed(table)
    rows = builder.rows(symbol)
    if start_ms is not None:
        rows = [r for r in rows if r["time"] >= start_ms]
    if end_ms is not None:
        rows = [r for r in rows if r["time"] < end_ms]
    if count is not None:
        rows = rows[-count:]
    return rows
