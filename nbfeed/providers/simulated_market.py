"""The market behind the ``simulated`` provider: instruments, prices, volume and spreads.

Everything here is a pure function of ``(seed, symbol, time)``, so any instant can be computed on
its own, in any order, vectorized - which is what lets history and live agree exactly. Each
symbol gets its own series: the symbol's name is hashed into the keys of every random lattice,
and its asset class sets the scale of what it draws.

* **Price**: the sum of smoothed random "octaves" from seconds to months (value noise), scaled
  so that the spread of daily moves is the instrument's daily volatility, rounded to its tick.
* **Volume**: a day total per UTC day (log-normal around the instrument's typical daily volume,
  with a slow multi-week swell) spread over the day by per-minute random weights under a
  U-shaped profile, and each minute's share over its own bursty seconds. Volume is cumulative
  within each UTC day, rounded to the instrument's lot, so quote volume (since midnight) equals
  the sum of the day's bar volumes up to that time, and bars of any interval add up to the
  coarser bars that contain them.
* **Spread**: a per-instrument typical spread in basis points (pips for FX), widened by a
  per-second random factor, never under one tick.

Asset classes set the scales: stocks (tick 0.01, 1.2-3.2 % daily volatility, 2-90M shares a
day), crypto (tick 0.01, 3-5 %, coins), FX (tick 0.00001 or 0.001 for JPY pairs, 0.3-0.7 %,
tick volume).
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np

DAY = 86_400_000
MINUTE = 60_000
_MINUTES_PER_DAY = DAY // MINUTE

# (period ms, share of the daily volatility) - random-walk-like scaling: amplitude ~ sqrt(period)
_OCTAVES = [(2_000, 1.0), (15_000, 1.0), (120_000, 1.0), (900_000, 1.0), (3_600_000, 1.0),
            (4 * 3_600_000, 1.0), (DAY, 1.0), (5 * DAY, 1.0), (30 * DAY, 1.0), (180 * DAY, 1.0)]
_VECTOR_MAX = 2048  # up to this many times, price() evaluates all octaves in one 2-D array
# Salts that keep the random lattices of one symbol independent of each other.
_SALT_DAY, _SALT_SWELL, _SALT_MINUTE, _SALT_SPREAD, _SALT_SECOND = (
    np.uint64(s) << np.uint64(48) for s in (0xA1, 0xB2, 0xC3, 0xD4, 0xE5))


def mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finalizer: a well-spread hash of uint64 lattice keys (wraps on purpose)."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def _uniform(keys: np.ndarray) -> np.ndarray:
    """Hash lattice keys to floats in [0, 1)."""
    return (mix(keys) >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def _normal(keys: np.ndarray) -> np.ndarray:
    """Hash lattice keys to standard normal draws (Box-Muller on two hashes)."""
    u1 = _uniform(keys)
    u2 = _uniform(keys ^ np.uint64(0x5DEECE66D))
    return np.sqrt(-2.0 * np.log1p(-u1)) * np.cos(2.0 * math.pi * u2)


def _symbol_fraction(symbol: str, salt: int) -> float:
    """A fixed number in [0, 1) for ``symbol``: how it differs from others of its class."""
    return (zlib.crc32(f"{salt}:{symbol}".encode()) % 10_007) / 10_007


@dataclass(frozen=True)
class Instrument:
    """What kind of market one symbol trades in: the scales its series are drawn at."""

    symbol: str
    label: str
    group: str  # "Stocks" | "Crypto" | "FX"
    base_price: float
    tick: float
    daily_vol: float  # standard deviation of daily log moves
    daily_volume: float  # a typical day's volume
    volume_decimals: int  # 0: whole shares / ticks; crypto trades fractions of a coin
    spread_bp: float  # typical bid-ask spread in basis points of the price

    @property
    def price_decimals(self) -> int:
        return max(0, round(-math.log10(self.tick)))


def instrument(symbol: str, label: str, group: str, base_price: float,
               daily_vol: float | None = None) -> Instrument:
    """The :class:`Instrument` of ``symbol`` in ``group``; ``daily_vol`` overrides its class's."""
    f1, f2, f3 = (_symbol_fraction(symbol, salt) for salt in (1, 2, 3))
    if group == "Crypto":
        tick, vol = 0.01, 0.03 + 0.02 * f1
        volume = 2e6 / base_price * 10 ** (3.0 + f2)  # coins: $2-20bn a day
        decimals, spread = 4, 0.5 + 2.0 * f3
    elif group == "FX":
        tick = 0.001 if "JPY" in symbol else 0.00001
        vol, volume, decimals = 0.003 + 0.004 * f1, 1e5 * (1 + 3 * f2), 0  # tick volume
        spread = 0.5 + 1.0 * f3
    else:
        tick, vol = 0.01, 0.012 + 0.02 * f1
        volume, decimals = 10 ** (6.3 + 1.65 * f2), 0  # 2M-90M shares
        spread = 1.0 + 4.0 * f3
    return Instrument(symbol, label, group, base_price, tick,
                      vol if daily_vol is None else daily_vol, volume, decimals, spread)


class MarketPath:
    """The deterministic price, volume and spread series of one instrument."""

    def __init__(self, seed: int, inst: Instrument) -> None:
        self.inst = inst
        self.key = np.uint64((zlib.crc32(inst.symbol.encode()) << 20) ^ (seed & 0xFFFFF))
        self.base = inst.base_price
        self.amps = [(np.int64(period), inst.daily_vol * math.sqrt(period / DAY) * share,
                      np.uint64(i + 1) << np.uint64(56))
                     for i, (period, share) in enumerate(_OCTAVES)]
        # The same octaves as columns, for evaluating all of them at once on small arrays.
        self._periods = np.asarray([p for p, _, _ in self.amps], dtype=np.int64)[:, None]
        self._periods_f = self._periods.astype(np.float64)
        self._amps2 = np.asarray([amp * 2.0 for _, amp, _ in self.amps])[:, None]
        self._keys = np.asarray([self.key ^ salt for _, _, salt in self.amps],
                                dtype=np.uint64)[:, None]
        self._prev_close: tuple[int, float] = (-1, 0.0)  # (midnight, price then)
        self._intraday: dict[int, np.ndarray] = {}  # day -> cumulative volume fractions
        self._totals: dict[int, float] = {}  # day -> that day's volume
        self._seconds: dict[int, np.ndarray] = {}  # minute -> cumulative second shares

    # ---- price ----------------------------------------------------------------------------

    def round_price(self, values: np.ndarray) -> np.ndarray:
        """Prices on the instrument's tick grid."""
        return np.round(values, self.inst.price_decimals)

    def price(self, t: np.ndarray) -> np.ndarray:
        """Prices at epoch-ms times ``t`` (int64 array)."""
        t = np.asarray(t, dtype=np.int64)
        if t.size <= _VECTOR_MAX:
            return self._price_small(t)
        total = np.zeros(t.shape, dtype=np.float64)
        for period, amp, salt in self.amps:
            k = t // period
            f = (t - k * period) / float(period)
            f = f * f * (3.0 - 2.0 * f)  # smoothstep: continuous, no kinks at lattice points
            ku = k.astype(np.uint64)
            a = mix(ku ^ self.key ^ salt).astype(np.float64) / 2.0**64
            b = mix((ku + np.uint64(1)) ^ self.key ^ salt).astype(np.float64) / 2.0**64
            total += amp * 2.0 * ((a + (b - a) * f) - 0.5)
        return self.round_price(self.base * np.exp(total))

    def _price_small(self, t: np.ndarray) -> np.ndarray:
        """:meth:`price` with every octave in one (octaves x n) array: ~10 numpy calls instead
        of ~100, which is what a live burst of a few rows costs. Same operations in the same
        order, so the results are bit-for-bit those of the loop."""
        flat = t.reshape(1, -1)
        k = flat // self._periods
        f = (flat - k * self._periods) / self._periods_f
        f = f * f * (3.0 - 2.0 * f)
        ku = k.astype(np.uint64)
        a = mix(ku ^ self._keys).astype(np.float64) / 2.0**64
        b = mix((ku + np.uint64(1)) ^ self._keys).astype(np.float64) / 2.0**64
        terms = self._amps2 * ((a + (b - a) * f) - 0.5)
        total = np.zeros(flat.shape[1], dtype=np.float64)
        for term in terms:  # summed octave by octave, as the loop does
            total += term
        return self.round_price(self.base * np.exp(total.reshape(t.shape)))

    def prev_close(self, midnight: int) -> float:
        """The price at ``midnight`` (UTC), remembered for the day's quotes."""
        day, price = self._prev_close
        if day != midnight:
            price = float(self.price(np.asarray([midnight]))[0])
            self._prev_close = (midnight, price)
        return price

    # ---- volume ---------------------------------------------------------------------------

    def day_volume(self, days: np.ndarray) -> np.ndarray:
        """Total volume of each UTC day number (days since the epoch), rounded to the lot."""
        days = np.asarray(days, dtype=np.int64)
        du = days.astype(np.uint64)
        daily = _normal(du ^ self.key ^ _SALT_DAY)
        # A slow swell over ~3 weeks: busy and quiet stretches, not independent days only.
        k = days // 21
        f = (days - k * 21) / 21.0
        f = f * f * (3.0 - 2.0 * f)
        ku = k.astype(np.uint64)
        a = _normal(ku ^ self.key ^ _SALT_SWELL)
        b = _normal((ku + np.uint64(1)) ^ self.key ^ _SALT_SWELL)
        swell = a + (b - a) * f
        total = self.inst.daily_volume * np.exp(0.3 * daily + 0.25 * swell - 0.076)
        return np.round(total, self.inst.volume_decimals)

    def _fractions(self, day: int, keep: bool = True) -> np.ndarray:
        """Cumulative share of ``day``'s volume at each minute boundary (1441 values, 0 -> 1).

        Kept for the next call only with ``keep``: live streams ask for the same day
        thousands of times, a history request for each day once - caching those filled 64
        days x 11.5 KB per symbol, megabytes per provider over a day of requests."""
        cum = self._intraday.get(day)
        if cum is None:
            minutes = np.arange(_MINUTES_PER_DAY, dtype=np.uint64)
            # Days before 1970 are negative: wrap them into the key space like the arrays do
            # (np.uint64(-1) raises instead of wrapping).
            day_key = np.array(day, dtype=np.int64).astype(np.uint64)
            keys = (day_key * np.uint64(_MINUTES_PER_DAY) + minutes) ^ self.key
            bursts = -np.log1p(-_uniform(keys ^ _SALT_MINUTE))  # exponential: bursty minutes
            x = (np.arange(_MINUTES_PER_DAY) + 0.5) / _MINUTES_PER_DAY
            profile = 0.55 + 1.8 * (x - 0.5) ** 2  # busier at the ends of the UTC day
            cum = np.concatenate([[0.0], np.cumsum(profile * (0.25 + bursts))])
            cum /= cum[-1]
            if keep:
                if len(self._intraday) > 4:  # live streams touch one or two days
                    self._intraday.clear()
                self._intraday[day] = cum
        return cum

    def volume_since_midnight(self, t: np.ndarray) -> np.ndarray:
        """Volume traded from the UTC midnight before each time ``t`` up to ``t``."""
        t = np.asarray(t, dtype=np.int64)
        first = int(t.flat[0]) // DAY if t.size else 0
        if t.size and int(t.min()) // DAY == first == int(t.max()) // DAY:
            # A live burst: one day, one cached total (the hot path of every quote).
            total = self._day_total(first)
            return np.round(total * self._day_share(first, t), self.inst.volume_decimals)
        days = t // DAY
        out = np.zeros(t.shape, dtype=np.float64)
        totals = self.day_volume(days)
        for day in np.unique(days).tolist():
            sel = days == day
            out[sel] = self._day_share(day, t[sel], keep=False)
        return np.round(totals * out, self.inst.volume_decimals)

    def _day_share(self, day: int, t: np.ndarray, keep: bool = True) -> np.ndarray:
        """Share of ``day``'s volume traded by each time ``t`` of that day: the minute's share
        from the day's curve, spread inside the minute over its own bursty seconds (``keep``:
        see :meth:`_fractions`)."""
        fractions = self._fractions(day, keep=keep)
        offset = t - day * DAY
        minute = offset // MINUTE
        before = fractions[minute]
        inside = fractions[np.minimum(minute + 1, _MINUTES_PER_DAY)] - before
        return before + inside * self._second_share(t // MINUTE, (offset % MINUTE) / MINUTE)

    def _second_share(self, minutes: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Share of each minute's volume traded by fraction ``x`` of it (0 -> 1), from 60
        random per-second weights of that minute (``minutes``: minute numbers since the epoch)."""
        first, last = int(minutes.min()), int(minutes.max())
        if last - first <= 1:  # a live burst: one or two minutes, remembered
            cum = np.stack([self._seconds_of(m) for m in range(first, last + 1)])
            where = minutes - first
        else:
            uniq, where = np.unique(minutes, return_inverse=True)
            cum = self._second_fractions(uniq)
        pos = x * 60.0
        second = np.minimum(pos.astype(np.int64), 59)
        a = cum[where, second]
        return a + (cum[where, second + 1] - a) * (pos - second)

    def _second_fractions(self, minutes: np.ndarray) -> np.ndarray:
        """Per minute (rows), the cumulative share of its volume at each second (61 columns)."""
        keys = (minutes.astype(np.uint64)[:, None] * np.uint64(60)
                + np.arange(60, dtype=np.uint64)[None, :]) ^ self.key ^ _SALT_SECOND
        weights = 0.15 - np.log1p(-_uniform(keys))
        cum = np.concatenate([np.zeros((len(minutes), 1)), np.cumsum(weights, axis=1)], axis=1)
        cum /= cum[:, -1:]
        return cum

    def _seconds_of(self, minute: int) -> np.ndarray:
        cum = self._seconds.get(minute)
        if cum is None:
            if len(self._seconds) > 16:
                self._seconds.clear()
            cum = self._seconds[minute] = self._second_fractions(np.asarray([minute]))[0]
        return cum

    def _day_total(self, day: int) -> float:
        cached = self._totals.get(day)
        if cached is None:
            if len(self._totals) > 64:
                self._totals.clear()
            cached = self._totals[day] = float(self.day_volume(np.asarray([day]))[0])
        return cached

    def volume_between(self, t0: np.ndarray, t1: np.ndarray) -> np.ndarray:
        """Volume traded in each ``[t0, t1)`` (any lengths, across days)."""
        t0 = np.asarray(t0, dtype=np.int64)
        t1 = np.asarray(t1, dtype=np.int64)
        if t0.size == 0:
            return np.zeros(0)
        first = int(t0.min() // DAY)
        last = int(t1.max() // DAY)
        # Whole days before each day, from `first`; then the part of the day itself.
        whole = np.concatenate([[0.0], np.cumsum(self.day_volume(np.arange(first, last + 1)))])

        def cumulative(t: np.ndarray) -> np.ndarray:
            days = t // DAY
            part = np.zeros(t.shape, dtype=np.float64)
            inside = t != days * DAY
            if inside.any():
                part[inside] = self.volume_since_midnight(t[inside])
            return whole[days - first] + part

        return np.round(np.maximum(cumulative(t1) - cumulative(t0), 0.0),
                        self.inst.volume_decimals)

    # ---- spread ---------------------------------------------------------------------------

    def quote_sides(self, t: np.ndarray, prices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Bid and ask around ``prices`` at times ``t``: on the tick grid, strictly apart."""
        seconds = (np.asarray(t, dtype=np.int64) // 1000).astype(np.uint64)
        widen = 1.0 + 0.8 * -np.log1p(-_uniform(seconds ^ self.key ^ _SALT_SPREAD))
        tick = self.inst.tick
        half = np.maximum(prices * self.inst.spread_bp * 1e-4 * widen / 2.0, tick / 2.0)
        bid = self.round_price(np.floor((prices - half) / tick + 1e-9) * tick)
        ask = self.round_price(np.ceil((prices + half) / tick - 1e-9) * tick)
        bid = np.minimum(bid, self.round_price(prices - tick))
        ask = np.maximum(ask, self.round_price(prices + tick))
        return bid, ask
