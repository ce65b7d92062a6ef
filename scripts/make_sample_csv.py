"""Write nbfeed's small sample CSV folder (``nbfeed/data/sample_csv``): synthetic data, not quotes.

The files are committed; this script documents how they were made and remakes them
(``python scripts/make_sample_csv.py [folder]``; a development script, not shipped in the wheel). Output is the same on every run with the
same numpy (a fixed seed; numbers are rounded to fixed decimals). What each file shows:

* ``ACME.csv`` - daily candles over two years of weekdays, ISO dates, plus a ``vwap`` column (a
  candlestick with one extra line series);
* ``DEMO-USD.csv`` - one-minute candles over two days, epoch-millisecond ``timestamp`` column;
* ``US-YIELDS.csv`` - daily line series only: ``2Y``, ``10Y`` and ``10Y-2Y`` (no candle columns).

All three are made up (random walks); the names are only there to look like what people load.
"""

from __future__ import annotations

import sys
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np

FOLDER = Path(__file__).resolve().parent.parent / "nbfeed" / "data" / "sample_csv"
SEED = 20240102


def _candles(rng: np.random.Generator, n: int, start: float, vol: float,
             base_volume: float) -> list[tuple[float, float, float, float, float]]:
    """A random walk turned into consistent open/high/low/close/volume bars."""
    closes = start * np.exp(np.cumsum(rng.normal(0.0, vol, n)))
    opens = np.r_[start, closes[:-1]] * np.exp(rng.normal(0.0, vol / 4, n))
    spread = np.abs(rng.normal(0.0, vol, (2, n))) * closes
    highs = np.maximum(opens, closes) + spread[0]
    lows = np.minimum(opens, closes) - spread[1]
    volumes = base_volume * np.exp(rng.normal(0.0, 0.35, n))
    return list(zip(opens, highs, lows, closes, volumes, strict=True))


def _weekdays(first: date, last: date) -> list[date]:
    """Monday to Friday from ``first`` to ``last`` (inclusive)."""
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    return [d for d in days if d.weekday() < 5]


def write_acme(folder: Path, rng: np.random.Generator) -> None:
    days = _weekdays(date(2024, 1, 2), date(2025, 12, 31))
    bars = _candles(rng, len(days), 120.0, 0.015, 2_500_000)
    lines = ["date,open,high,low,close,volume,vwap"]
    for day, (o, h, lo, c, v) in zip(days, bars, strict=True):
        vwap = (h + lo + 2 * c) / 4
        lines.append(f"{day.isoformat()},{o:.2f},{h:.2f},{lo:.2f},{c:.2f},{v:.0f},{vwap:.2f}")
    _write(folder / "ACME.csv", lines)


def write_demo_usd(folder: Path, rng: np.random.Generator) -> None:
    start = int(datetime(2025, 3, 3, tzinfo=timezone.utc).timestamp() * 1000)
    n = 2 * 24 * 60
    bars = _candles(rng, n, 42_000.0, 0.0008, 12.0)
    lines = ["timestamp,open,high,low,close,volume"]
    for i, (o, h, lo, c, v) in enumerate(bars):
        lines.append(f"{start + i * 60_000},{o:.2f},{h:.2f},{lo:.2f},{c:.2f},{v:.4f}")
    _write(folder / "DEMO-USD.csv", lines)


def write_yields(folder: Path, rng: np.random.Generator) -> None:
    days = _weekdays(date(2024, 1, 2), date(2025, 12, 31))
    two = 4.3 + np.cumsum(rng.normal(0.0, 0.03, len(days)))
    ten = 4.0 + np.cumsum(rng.normal(0.0, 0.025, len(days)))
    lines = ["date,2Y,10Y,10Y-2Y"]
    for day, a, b in zip(days, two, ten, strict=True):
        lines.append(f"{day.isoformat()},{a:.3f},{b:.3f},{b - a:.3f}")
    _write(folder / "US-YIELDS.csv", lines)


def _write(path: Path, lines: list[str]) -> None:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8", newline="\n")


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    folder = Path(args[0]) if args else FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    write_acme(folder, rng)
    write_demo_usd(folder, rng)
    write_yields(folder, rng)
    for path in sorted(folder.glob("*.csv")):
        print(f"{path}: {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
