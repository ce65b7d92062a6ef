"""How fast the symbol catalog answers searches on a 200k-symbol catalog, next to a LIKE scan.

Builds a catalog of ``--size`` synthetic but realistic entries in a temporary file (stocks with
company-like names and exchange suffixes, crypto pairs in two spellings, FX pairs), times
``Catalog.search`` on a mix of queries (exact symbol, symbol prefix, one word, two words, with
filters, no match / hostile), and prints p50/p99/max per kind. As the reference, the same run
times the naive search the catalog replaces, ``name LIKE '%q%' OR name_label LIKE '%q%'``
(``LIMIT 20``, so it may stop early; filters not applied) over the same table, on a subset of
the same queries. Searches are timed twice: a first pass and, as the hub would run warm, a second
pass over the same queries. Also prints the time to populate the catalog and to replace a small
and the largest source in the full catalog.

    cd /work/main && python bench/catalog_search.py [--size 200000] [--queries 300]

Target: p99 <= 5 ms per search at 200k symbols.
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import statistics
import string
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nbfeed.hub.catalog import Catalog

STOCKS = [
    ("AAPL", "Apple Inc."), ("MSFT", "Microsoft Corporation"), ("GOOGL", "Alphabet Inc."),
    ("AMZN", "Amazon.com Inc."), ("META", "Meta Platforms Inc."), ("TSLA", "Tesla Inc."),
    ("NVDA", "NVIDIA Corporation"), ("JPM", "JPMorgan Chase & Co."),
    ("APLE", "Apple Hospitality REIT Inc."), ("KO", "The Coca-Cola Company"),
    ("IBM", "International Business Machines Corporation"),
]
COINS = [
    ("BTC", "Bitcoin"), ("ETH", "Ethereum"), ("SOL", "Solana"), ("XRP", "XRP"), ("ADA", "Cardano"),
    ("DOGE", "Dogecoin"), ("DOT", "Polkadot"), ("LTC", "Litecoin"), ("LINK", "Chainlink"),
]
QUOTES = [("USDT", "TetherUS"), ("USD", "USD"), ("USDC", "USD Coin"), ("BTC", "Bitcoin"),
          ("ETH", "Ethereum"), ("EUR", "Euro")]
CURRENCIES = [
    ("EUR", "Euro"), ("USD", "US Dollar"), ("JPY", "Japanese Yen"), ("GBP", "British Pound"),
    ("CHF", "Swiss Franc"), ("AUD", "Australian Dollar"), ("CAD", "Canadian Dollar"),
    ("NZD", "New Zealand Dollar"), ("SEK", "Swedish Krona"), ("NOK", "Norwegian Krone"),
    ("MXN", "Mexican Peso"), ("ZAR", "South African Rand"), ("SGD", "Singapore Dollar"),
    ("HKD", "Hong Kong Dollar"), ("CNH", "Chinese Yuan Offshore"), ("TRY", "Turkish Lira"),
]
COMPANY_TAILS = ["Inc.", "Corp.", "Holdings", "Group", "Ltd", "PLC", "Technologies", "Systems",
                 "Pharmaceuticals", "Bancorp", "Energy", "Capital", "Industries", "Foods",
                 "Semiconductor", "Therapeutics", "Realty Trust", "Financial"]
EXCHANGES = [("", "NASDAQ"), ("", "NYSE"), (".L", "LSE"), (".T", "TSE"), (".DE", "XETRA"),
             (".PA", "EURONEXT"), (".TO", "TSX"), (".HK", "HKEX"), (".AX", "ASX")]
SYLLABLES = ["al", "ba", "cor", "da", "el", "fi", "gen", "har", "in", "jo", "ka", "lum", "mar",
             "nor", "o", "pra", "qu", "ri", "sol", "ta", "u", "ver", "wes", "xe", "yo", "zen"]
INTERVALS = ["1m", "5m", "15m", "1h", "4h", "1d"]
OUTPUTS = [{"name": "close", "y_axis": "price"}, {"name": "volume", "y_axis": "volume"}]


def _word(rng: random.Random) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 3))).capitalize()


def _ticker(rng: random.Random, low: int, high: int) -> str:
    return "".join(rng.choice(string.ascii_uppercase) for _ in range(rng.randint(low, high)))


def _entry(source: str, name: str, label: str, kind: str, categories: list[str]) -> dict:
    return {"source": source, "name": name, "name_label": label, "type": kind,
            "categories": categories, "intervals": INTERVALS, "outputs": OUTPUTS}


def make_catalog_entries(size: int, seed: int = 7) -> dict[str, list[dict]]:
    """``size`` entries by source: ~60% stocks, ~25% crypto (two spellings), ~15% FX."""
    rng = random.Random(seed)
    n_fx, n_crypto = size * 15 // 100, size * 25 // 100
    n_stocks = size - n_fx - n_crypto

    stocks: dict[str, dict] = {}
    for symbol, label in STOCKS:
        stocks[symbol] = _entry("stocks", symbol, label, "candlestick", ["Stocks", "NASDAQ"])
    while len(stocks) < n_stocks:
        suffix, exchange = rng.choice(EXCHANGES)
        symbol = _ticker(rng, 1, 5) + suffix
        words = [_word(rng) for _ in range(rng.choice([1, 1, 2, 3]))]
        label = " ".join([*words, rng.choice(COMPANY_TAILS)])
        stocks.setdefault(symbol, _entry("stocks", symbol, label, "candlestick",
                                         ["Stocks", exchange]))

    coins = list(COINS)
    while len(coins) * (len(QUOTES) - 1) * 2 < n_crypto:  # a coin is not quoted in itself
        coins.append((_ticker(rng, 3, 5), _word(rng) + rng.choice(["", "coin", " Token"])))
    binance: dict[str, dict] = {}
    coinbase: dict[str, dict] = {}
    for base, base_name in coins:
        for quote, quote_name in QUOTES:
            if base == quote or len(binance) + len(coinbase) >= n_crypto:
                continue
            label = f"{base_name} - {quote_name} pair"
            binance[base + quote] = _entry("binance", base + quote, label, "candlestick",
                                           ["Crypto", "Spot"])
            name = f"{base}-{quote}"
            coinbase[name] = _entry("coinbase", name, label, "candlestick", ["Crypto"])

    currencies = list(CURRENCIES)
    while len(currencies) * (len(currencies) - 1) < n_fx:
        currencies.append((_ticker(rng, 3, 3), f"{_word(rng)} {rng.choice(['Dollar', 'Peso'])}"))
    fx: dict[str, dict] = {}
    for base, base_name in currencies:
        for quote, quote_name in currencies:
            if base != quote and len(fx) < n_fx:
                kind = "quote" if rng.random() < 0.3 else "line"
                fx[base + quote] = _entry("fx", base + quote, f"{base_name} / {quote_name}",
                                          kind, ["Forex", "FX"])
    return {"stocks": list(stocks.values()), "binance": list(binance.values()),
            "coinbase": list(coinbase.values()), "fx": list(fx.values())}


def make_queries(by_source: dict[str, list[dict]], count: int, seed: int = 11) -> dict:
    """``count`` (query, filters) pairs per kind, drawn from the catalog's own entries."""
    rng = random.Random(seed)
    everything = [e for entries in by_source.values() for e in entries]

    def label_words(entry: dict) -> list[str]:
        return [w for w in entry["name_label"].replace("/", " ").split() if w.isalpha()]

    def one_word() -> str:
        word = rng.choice(label_words(rng.choice(everything)) or ["apple"]).lower()
        return word if rng.random() < 0.5 else word[: max(3, len(word) - 2)]

    def two_words() -> str:
        words = label_words(rng.choice(everything))
        if len(words) < 2:
            return rng.choice(["btc usd", "euro dollar", "apple inc", "bitcoin usd"])
        i = rng.randrange(len(words) - 1)
        return f"{words[i]} {words[i + 1][:4]}".lower()

    def filtered() -> tuple[str, dict]:
        filters = rng.choice([{"source": rng.choice(list(by_source))},
                              {"category": rng.choice(["crypto", "stocks", "forex", "LSE"])},
                              {"type": rng.choice(["candlestick", "line", "quote"])}])
        query = rng.choice(["", rng.choice(everything)["name"][:2].lower(), one_word()])
        return query, filters

    hostile = ['"', "*", "AND", "NEAR(", "-", "(()", 'a" OR "b', "x" * 200, "\x00abc",
               "🚀 moon", "NOT apple", "^col:val"]
    return {
        "exact": [(rng.choice(everything)["name"].lower(), {}) for _ in range(count)],
        "prefix": [(rng.choice(everything)["name"][: rng.choice([1, 2, 2, 3])].lower(), {})
                   for _ in range(count)],
        "one word": [(one_word(), {}) for _ in range(count)],
        "two words": [(two_words(), {}) for _ in range(count)],
        "filters": [filtered() for _ in range(count)],
        "no match": [(rng.choice([_ticker(rng, 6, 9).lower(), rng.choice(hostile)]), {})
                     for _ in range(count)],
    }


def _stats_ms(samples_ns: list[int]) -> tuple[float, float, float]:
    ms = sorted(s / 1e6 for s in samples_ns)
    p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
    return statistics.median(ms), p99, ms[-1]


def _time_searches(cat: Catalog, queries: dict) -> dict[str, list[int]]:
    samples: dict[str, list[int]] = {}
    for kind, pairs in queries.items():
        samples[kind] = []
        for query, filters in pairs:
            t = time.perf_counter_ns()
            cat.search(query, **filters)
            samples[kind].append(time.perf_counter_ns() - t)
    return samples


def _time_like(path: Path, queries: dict, per_kind: int) -> dict[str, list[int]]:
    """The naive search: a LIKE scan of symbol and label (filters not applied: cheaper)."""
    conn = sqlite3.connect(path)
    samples: dict[str, list[int]] = {}
    for kind, pairs in queries.items():
        samples[kind] = []
        for query, _filters in pairs[:per_kind]:
            t = time.perf_counter_ns()
            conn.execute("SELECT doc FROM entries WHERE name LIKE ?1 OR name_label LIKE ?1"
                         " LIMIT 20", (f"%{query}%",)).fetchall()
            samples[kind].append(time.perf_counter_ns() - t)
    conn.close()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=200_000, help="catalog entries")
    parser.add_argument("--queries", type=int, default=300, help="queries per kind")
    parser.add_argument("--like-queries", type=int, default=25,
                        help="queries per kind for the LIKE reference (it is slow)")
    args = parser.parse_args()

    by_source = make_catalog_entries(args.size)
    queries = make_queries(by_source, args.queries)
    print(f"sqlite {sqlite3.sqlite_version}, python {sys.version.split()[0]}, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "catalog.db"
        cat = Catalog(path)
        t0 = time.perf_counter()
        for source, entries in by_source.items():
            cat.replace_source(source, entries)
        populate_s = time.perf_counter() - t0
        counts = cat.sources()
        total = sum(counts.values())
        print(f"catalog: {total} entries {counts}, file {path.stat().st_size / 1e6:.0f} MB")
        print(f"populate, empty -> {total}: {populate_s:.2f} s "
              f"({populate_s / total * 1e6:.0f} us per entry)")
        for source in ("fx", "stocks"):
            t0 = time.perf_counter()
            cat.replace_source(source, by_source[source])
            print(f"replace {source!r} ({counts[source]} entries) in the full catalog: "
                  f"{time.perf_counter() - t0:.2f} s")

        cold = _time_searches(cat, queries)
        warm = _time_searches(cat, queries)
        like = _time_like(path, queries, args.like_queries)
        print(f"\n{'kind':<10} {'n':>4} | {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} | "
              f"first pass: {'p99':>6} {'max':>6} | LIKE: {'p50':>6} {'p99':>6} | LIKE/us p50, p99")
        for kind in queries:
            p50, p99, worst = _stats_ms(warm[kind])
            _, cold_p99, cold_max = _stats_ms(cold[kind])
            like_p50, like_p99, _ = _stats_ms(like[kind])
            print(f"{kind:<10} {len(warm[kind]):>4} | {p50:>7.3f} {p99:>7.3f} {worst:>7.3f} | "
                  f"{'':>12}{cold_p99:>6.2f} {cold_max:>6.2f} |       {like_p50:>6.2f} "
                  f"{like_p99:>6.2f} | {like_p50 / p50:>6.0f}x {like_p99 / p99:>4.0f}x")
        every = [s for samples in warm.values() for s in samples]
        p50, p99, worst = _stats_ms(every)
        _, cold_p99, cold_max = _stats_ms([s for samples in cold.values() for s in samples])
        like_p50, like_p99, _ = _stats_ms([s for samples in like.values() for s in samples])
        print(f"{'all':<10} {len(every):>4} | {p50:>7.3f} {p99:>7.3f} {worst:>7.3f} | "
              f"{'':>12}{cold_p99:>6.2f} {cold_max:>6.2f} |       {like_p50:>6.2f} "
              f"{like_p99:>6.2f} | {like_p50 / p50:>6.0f}x {like_p99 / p99:>4.0f}x")
        print(f"target: p99 <= 5 ms per search at 200k symbols; "
              f"load average now {os.getloadavg()[0]:.1f}")
        cat.close()


if __name__ == "__main__":
    main()
