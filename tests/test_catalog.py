"""The symbol catalog on real SQLite files: ranking, filters, replacing, hostile input, files."""

from __future__ import annotations

import logging
import random
import sqlite3
import threading

import pytest

from nbfeed.errors import BadRequest
from nbfeed.hub.catalog import _BROAD, MAX_LIMIT, MAX_QUERY_CHARS, Catalog

INTERVALS = ["1m", "1h", "1d"]


def entry(source, name, label, kind="candlestick", categories=("Stocks",), **extra):
    return {"source": source, "name": name, "name_label": label, "type": kind,
            "categories": list(categories), "intervals": INTERVALS,
            "outputs": [{"name": "close", "y_axis": "price"}], **extra}


STOCKS = [
    entry("stocks", "AAPL", "Apple Inc.", categories=["Stocks", "NASDAQ"]),
    entry("stocks", "APLE", "Apple Hospitality REIT Inc.", categories=["Stocks", "NYSE"]),
    entry("stocks", "AA", "Alcoa Corporation", categories=["Stocks", "NYSE"]),
    entry("stocks", "AAP", "Advance Auto Parts Inc.", categories=["Stocks", "NYSE"]),
    entry("stocks", "MSFT", "Microsoft Corporation", categories=["Stocks", "NASDAQ"]),
    entry("stocks", "EPG", "Euro Pacific Growth Fund", categories=["Stocks", "Funds"]),
    entry("stocks", "BTCS", "BTCS Inc.", categories=["Stocks", "NASDAQ"]),
]
BINANCE = [
    entry("binance", "BTCUSDT", "Bitcoin - USD pair", categories=["Crypto"]),
    entry("binance", "ETHUSDT", "Ethereum - USD pair", categories=["Crypto"]),
    entry("binance", "BTCEUR", "Bitcoin - Euro pair", categories=["Crypto"]),
    entry("binance", "ETHBTC", "Ethereum - Bitcoin pair", categories=["Crypto"]),
]
COINBASE = [
    entry("coinbase", "BTC-USD", "Bitcoin - USD pair", categories=["Crypto"]),
    entry("coinbase", "EUR-USD", "Euro - USD pair", kind="line", categories=["FX", "Crypto"]),
]
FX = [
    entry("fx", "EURUSD", "Euro / US Dollar", kind="quote", categories=["Forex"]),
    entry("fx", "EURGBP", "Euro / British Pound", kind="quote", categories=["Forex"]),
    entry("fx", "GBPEUR", "British Pound / Euro", kind="line", categories=["Forex"]),
    entry("fx", "GBPUSD", "British Pound / US Dollar", kind="line", categories=["Forex"]),
]
ALL = {"stocks": STOCKS, "binance": BINANCE, "coinbase": COINBASE, "fx": FX}


def names(results):
    return [r["name"] for r in results]


def assert_full_text_index_matches_entries(catalog):
    """SQLite's own check that the full-text index holds exactly the rows of the entries."""
    conn = sqlite3.connect(catalog.path)
    conn.execute("INSERT INTO entries_fts (entries_fts, rank) VALUES ('integrity-check', 1)")
    conn.close()


@pytest.fixture
def cat(tmp_path):
    catalog = Catalog(tmp_path / "cache" / "catalog.db")
    for source, entries in ALL.items():
        catalog.replace_source(source, entries)
    yield catalog
    catalog.close()


# -- ranking -----------------------------------------------------------------------------------


@pytest.mark.parametrize("query", ["aapl", "AAPL", "  Aapl "])
def test_exact_symbol_comes_first_whatever_the_case(cat, query):
    assert names(cat.search(query))[0] == "AAPL"


def test_a_company_name_finds_its_symbol_shorter_label_first(cat):
    assert names(cat.search("apple")) == ["AAPL", "APLE"]
    assert names(cat.search("Apple Inc"))[0] == "AAPL"


def test_two_words_are_an_and_of_word_prefixes(cat):
    found = names(cat.search("btc usd"))
    assert set(found[:2]) == {"BTCUSDT", "BTC-USD"}
    assert "BTCEUR" not in found and "ETHUSDT" not in found
    assert set(names(cat.search("bitcoin usd"))) == {"BTCUSDT", "BTC-USD"}
    assert names(cat.search("bitc usd pa")) == names(cat.search("bitcoin usd pair"))


def test_symbol_prefixes_come_before_label_words(cat):
    found = names(cat.search("eur"))
    assert found[:3] == ["EURGBP", "EURUSD", "EUR-USD"]  # symbol prefix, shortest then A-Z
    assert {"EPG", "GBPEUR", "BTCEUR"} <= set(found[3:])  # "Euro" in the label


def test_shorter_symbols_first_among_prefix_matches(cat):
    assert names(cat.search("aa")) == ["AA", "AAP", "AAPL"]


def test_exact_then_prefix_then_full_text(cat):
    assert names(cat.search("btc")) == ["BTCS", "BTCEUR", "BTC-USD", "BTCUSDT"]  # prefixes
    assert names(cat.search("btc-usd")) == ["BTC-USD", "BTCUSDT"]  # exact, then both words
    assert names(cat.search("btcs")) == ["BTCS"]


def test_results_are_the_stored_entries_and_limit_applies(cat):
    (result,) = cat.search("msft")
    assert result == STOCKS[4]
    assert len(cat.search("pair", limit=2)) == 2


def test_symbols_in_scripts_without_spaces_are_found_by_any_part(tmp_path):
    """Binance lists ``这是测试币456`` (a testnet symbol since 2025-12): a user typing the coin's
    name, or any part of it, finds it; Latin queries work as before."""
    with Catalog(tmp_path / "cjk.db") as catalog:
        catalog.replace_source("binance", [
            *BINANCE,
            entry("binance", "这是测试币456", "这是测试币 / 456", categories=["Crypto"]),
            entry("binance", "币安币USDT", "币安币 / USDT", categories=["Crypto"]),
        ])
        catalog.replace_source("jp", [entry("jp", "7203", "トヨタ自動車", categories=["Stocks"])])
        assert names(catalog.search("测试币")) == ["这是测试币456"]
        assert names(catalog.search("这是测试币456")) == ["这是测试币456"]  # exact still first
        assert names(catalog.search("币")) == ["币安币USDT", "这是测试币456"]  # shorter first
        assert names(catalog.search("币", source="jp")) == []  # filters still apply
        assert names(catalog.search("自動車")) == ["7203"]  # found by its label
        assert names(catalog.search("测试币", limit=1)) == ["这是测试币456"]
        assert names(catalog.search("456")) == ["这是测试币456"]  # a word of its label
        assert names(catalog.search("USD pair")) == ["BTCUSDT", "ETHUSDT"]  # Latin as before


def test_category_words_are_searchable(cat):
    assert set(names(cat.search("forex"))) == {e["name"] for e in FX}


def test_no_match_and_empty_catalog(cat, tmp_path):
    assert cat.search("zzzzqqq") == []
    with Catalog(tmp_path / "empty.db") as empty:
        assert empty.search("aapl") == []
        assert empty.search("") == []
        assert empty.search("", source="fx") == []
        assert empty.sources() == {}
        assert empty.lookup("fx", "EURUSD") is None


# -- filters and listing -----------------------------------------------------------------------


def test_filters_narrow_every_stage(cat):
    assert names(cat.search("eur", source="fx")) == ["EURGBP", "EURUSD", "GBPEUR"]
    assert names(cat.search("eur", type="line")) == ["EUR-USD", "GBPEUR"]
    assert names(cat.search("btc", source="coinbase")) == ["BTC-USD"]
    assert names(cat.search("aapl", source="fx")) == []


def test_category_filter_ignores_case_and_sees_every_category(cat):
    assert set(names(cat.search("eur", category="fx"))) == {"EUR-USD"}
    assert set(names(cat.search("eur", category="CRYPTO"))) == {"EUR-USD", "BTCEUR"}
    assert names(cat.search("", category="nasdaq")) == ["AAPL", "BTCS", "MSFT"]
    assert names(cat.search("a", category="nyse", type="candlestick")) == ["AA", "AAP", "APLE"]


def test_empty_query_lists_alphabetically(cat):
    assert names(cat.search("", source="fx")) == ["EURGBP", "EURUSD", "GBPEUR", "GBPUSD"]
    assert names(cat.search(None, type="quote")) == ["EURGBP", "EURUSD"]
    everything = names(cat.search("", limit=100))
    assert everything == sorted(everything, key=str.lower)
    assert len(everything) == sum(len(e) for e in ALL.values())


def test_unknown_filter_values_find_nothing(cat):
    assert cat.search("", source="nope") == []
    assert cat.search("eur", category="nope") == []


def test_filters_hold_when_a_word_matches_more_than_can_be_ranked(tmp_path):
    # "usd" and "pair" are on more binance entries than are scored; the few fx ones must still
    # be found when filtering, and no binance entry may slip through.
    n = _BROAD + 500
    with Catalog(tmp_path / "broad.db") as catalog:
        catalog.replace_source("binance", [
            entry("binance", f"C{i}USDT", f"Coin{i} - USD pair", categories=["Crypto"])
            for i in range(n)
        ])
        catalog.replace_source("fx", [
            entry("fx", f"X{i}", f"Pair {i}", kind="quote", categories=["Forex"])
            for i in range(5)
        ])
        assert sorted(names(catalog.search("pair", source="fx"))) == [f"X{i}" for i in range(5)]
        assert len(catalog.search("pair", category="forex")) == 5
        assert len(catalog.search("pair", type="quote")) == 5
        assert len(catalog.search("usd pair", limit=1000)) == 1000
        assert len(catalog.search("usd pair")) == 20
        # Broad words filter; the selective one ranks (shortest symbol wins the bm25 tie).
        found = names(catalog.search("coin17 usd"))
        assert found[0] == "C17USDT" and all(name.startswith("C17") for name in found)


def test_bad_filters_and_limits_are_refused_by_name(cat):
    with pytest.raises(BadRequest, match="type must be one of candlestick, line, quote; got 'bar'"):
        cat.search("x", type="bar")
    for limit in (0, -1, "20", 2.5, True, None):
        with pytest.raises(BadRequest, match="limit must be a positive integer"):
            cat.search("x", limit=limit)
    with pytest.raises(BadRequest, match="source must be a non-empty string, got 42"):
        cat.search("x", source=42)
    with pytest.raises(BadRequest, match="category"):
        cat.search("x", category="")


def test_limit_is_clamped(tmp_path):
    with Catalog(tmp_path / "big.db") as catalog:
        catalog.replace_source("s", [entry("s", f"S{i:04}", "Same") for i in range(1200)])
        assert len(catalog.search("", limit=10_000)) == MAX_LIMIT
        assert len(catalog.search("same", limit=10_000)) == MAX_LIMIT


# -- hostile queries ---------------------------------------------------------------------------

HOSTILE = [
    '"', '""', '"aapl', "*", "aapl*", "AND", "OR", "NOT", "NEAR(", "NEAR(a b, 2)", "-", "-aapl",
    "(", ")", "(()", "a AND b", 'a" OR "b', "^aapl", "name:aapl", "{name}: x", "+", "'", "';--",
    "%", "_", "\\", "\x00", "aa\x00pl", "\x00\x01\x1f", "🚀", "🚀 moon", "apple 🍎", "∞", "ﷺ",
    "é", "e\u0301", "İstanbul", "中国银行", "x" * MAX_QUERY_CHARS, "a " * (MAX_QUERY_CHARS // 2),
    "\u202e", "\ufeff", "\U0010ffff", "\uff41\uff41\uff50\uff4c",
]


@pytest.mark.parametrize("query", HOSTILE)
def test_hostile_queries_return_results_not_errors(cat, query):
    results = cat.search(query)
    assert isinstance(results, list)
    cat.search(query, source="fx", category="forex", type="quote")


def test_fts_syntax_is_plain_text(cat):
    assert names(cat.search('"aapl'))[0] == "AAPL"
    assert names(cat.search("aapl*"))[0] == "AAPL"
    assert names(cat.search("aa\x00pl")) == []  # NUL is a space: "aa pl" matches no entry
    assert names(cat.search("apple AND")) == []  # "and" is a word to find, not an operator


def test_random_junk_never_raises(cat):
    rng = random.Random(1)
    alphabet = '"*()-+^:{}[]<>,.;!?\'\\%_ \x00\t\n' + "aepANDORNOTNEAR" + "é中🚀\u0301"
    for _ in range(300):
        query = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        cat.search(query)


def test_oversized_and_non_text_queries_are_refused(cat):
    with pytest.raises(BadRequest, match="query is 10240 characters long; at most 200"):
        cat.search("x" * 10_240)
    with pytest.raises(BadRequest, match="query must be a string, got b'aapl'"):
        cat.search(b"aapl")
    with pytest.raises(BadRequest, match="lone surrogate"):
        cat.search("\ud800")


# -- replacing ---------------------------------------------------------------------------------


def test_replacing_a_source_twice_keeps_one_copy(cat):
    cat.replace_source("fx", FX)
    assert cat.sources()["fx"] == len(FX)
    assert names(cat.search("", source="fx")) == ["EURGBP", "EURUSD", "GBPEUR", "GBPUSD"]
    assert names(cat.search("british")) == ["EURGBP", "GBPEUR", "GBPUSD"]  # shorter label first


def test_replacing_one_source_leaves_the_others_alone(cat):
    before = {s: cat.search("", source=s, limit=100) for s in ("stocks", "binance", "coinbase")}
    assert cat.replace_source("fx", [entry("fx", "USDJPY", "US Dollar / Yen", kind="quote")]) == 1
    for source, results in before.items():
        assert cat.search("", source=source, limit=100) == results
    assert names(cat.search("", source="fx")) == ["USDJPY"]
    assert cat.search("eurusd") == []  # gone from the symbol index...
    assert names(cat.search("euro british")) == []  # ...and from the full-text index
    assert names(cat.search("yen")) == ["USDJPY"]
    assert_full_text_index_matches_entries(cat)


def test_replacing_most_of_the_catalog(cat):
    # Once "stocks" is most of the catalog, replacing it re-indexes everything afresh.
    cat.replace_source("stocks", [entry("stocks", f"S{i}", f"Stock number {i}") for i in range(40)])
    cat.replace_source("stocks", [entry("stocks", f"T{i}", f"Stock ticker {i}") for i in range(30)])
    assert cat.sources()["stocks"] == 30
    assert names(cat.search("apple")) == names(cat.search("number")) == []
    assert names(cat.search("ticker 7")) == ["T7"]
    assert names(cat.search("btc usd"))[:2] == ["BTC-USD", "BTCUSDT"]
    assert_full_text_index_matches_entries(cat)
    cat.replace_source("stocks", [])
    assert cat.search("ticker") == []
    assert names(cat.search("euro british")) == ["EURGBP", "GBPEUR"]
    assert_full_text_index_matches_entries(cat)


def test_an_empty_list_removes_the_source(cat):
    assert cat.replace_source("coinbase", []) == 0
    assert "coinbase" not in cat.sources()
    assert cat.search("", source="coinbase") == []
    assert "BTC-USD" not in names(cat.search("btc"))


def test_duplicate_names_keep_the_later_entry(cat):
    first, second = entry("dup", "X", "First"), entry("dup", "X", "Second")
    assert cat.replace_source("dup", [first, second]) == 1
    assert cat.lookup("dup", "X") == second
    assert names(cat.search("first")) == []


def test_entries_are_stored_as_given(cat):
    odd = {"name": "ODD", "name_label": "Ünïcödé \u2013 \u201clabel\u201d", "type": "line",
           "categories": [], "intervals": [], "outputs": [], "extra": {"nested": [1, 2.5, None]}}
    cat.replace_source("odd", [odd])
    assert cat.lookup("odd", "ODD") == {"source": "odd", **odd}  # the source is filled in
    assert cat.search("unicode")[0]["extra"] == {"nested": [1, 2.5, None]}


@pytest.mark.parametrize(("bad", "message"), [
    ({"name_label": "no name"}, r"entry 1 of 'fx': 'name' must be a non-empty string"),
    ({"name": "  "}, r"'name' must be a non-empty string"),
    ({"name": "X", "source": "other"}, r"entry 'X' of 'fx' names another source"),
    ({"name": "X", "name_label": 5}, r"entry 'X' of 'fx' 'name_label' is not a string"),
    ({"name": "X", "type": None}, r"'type' is not a string"),
    ({"name": "X", "categories": "Forex"}, r"'categories' is not a list of strings"),
    ({"name": "X", "categories": [1]}, r"'categories' is not a list of strings"),
    ({"name": "X", "intervals": {1, 2}}, r"entry 'X' of 'fx' is not JSON text"),
    ({"name": "X", "price": float("nan")}, r"is not JSON text"),
    ({"name": "X\ud800"}, r"is not JSON text"),
])
def test_a_bad_entry_is_refused_by_name_and_changes_nothing(cat, bad, message):
    with pytest.raises(BadRequest, match=message):
        cat.replace_source("fx", [FX[0], bad])
    assert cat.sources()["fx"] == len(FX)
    assert names(cat.search("", source="fx")) == ["EURGBP", "EURUSD", "GBPEUR", "GBPUSD"]


def test_bad_arguments_to_replace_and_lookup(cat):
    with pytest.raises(BadRequest, match="entries of 'fx' must be a list of dicts"):
        cat.replace_source("fx", {"name": "X"})
    with pytest.raises(BadRequest, match="entry 0 of 'fx' must be a dict"):
        cat.replace_source("fx", ["EURUSD"])
    with pytest.raises(BadRequest, match="source must be a non-empty string"):
        cat.replace_source("", FX)
    with pytest.raises(BadRequest, match="name must be a non-empty string, got None"):
        cat.lookup("fx", None)


# -- lookup, sources, files --------------------------------------------------------------------


def test_lookup_is_exact(cat):
    assert cat.lookup("fx", "EURUSD") == FX[0]
    assert cat.lookup("fx", "eurusd") is None
    assert cat.lookup("stocks", "EURUSD") is None
    assert cat.lookup("nope", "EURUSD") is None


def test_sources_counts_entries(cat):
    assert cat.sources() == {"binance": 4, "coinbase": 2, "fx": 4, "stocks": 7}


def test_the_catalog_survives_reopening(cat, tmp_path):
    path = cat.path
    expected = cat.search("eur")
    cat.close()
    with Catalog(path) as again:
        assert again.search("eur") == expected
        assert again.sources() == {"binance": 4, "coinbase": 2, "fx": 4, "stocks": 7}
        again.replace_source("fx", FX[:1])
    with Catalog(path) as third:
        assert third.sources()["fx"] == 1


def test_memory_catalog(tmp_path):
    with Catalog(":memory:") as catalog:
        catalog.replace_source("fx", FX)
        assert names(catalog.search("euro dollar")) == ["EURUSD"]
    assert not list(tmp_path.iterdir())


def test_closed_catalog_says_so(tmp_path):
    catalog = Catalog(tmp_path / "c.db")
    catalog.close()
    catalog.close()  # twice is fine
    with pytest.raises(RuntimeError, match="is closed"):
        catalog.search("x")
    assert "closed" in repr(catalog)


def test_a_file_that_is_not_a_catalog_is_moved_aside(tmp_path, caplog):
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not SQLite" * 100)
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE entries (important TEXT)")
        conn.execute("INSERT INTO entries VALUES ('keep me')")
    conn.close()
    with caplog.at_level(logging.WARNING, logger="nbfeed.hub.catalog"):
        for path in (garbage, foreign):
            with Catalog(path) as catalog:
                catalog.replace_source("fx", FX)
                assert catalog.sources() == {"fx": 4}
    assert (tmp_path / "garbage.db.bad-1").read_bytes() == b"this is not SQLite" * 100
    kept = sqlite3.connect(tmp_path / "foreign.db.bad-1")
    assert kept.execute("SELECT important FROM entries").fetchall() == [("keep me",)]
    kept.close()
    assert "foreign.db is not an nbfeed catalog" in caplog.text
    assert "moved to" in caplog.text


def test_a_locked_catalog_is_an_error_not_moved_aside(tmp_path, monkeypatch):
    path = tmp_path / "locked.db"
    Catalog(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA locking_mode = EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    monkeypatch.setattr("nbfeed.hub.catalog.BUSY_TIMEOUT_S", 0.1)
    with pytest.raises(sqlite3.OperationalError, match=r"cannot open the catalog .*locked\.db"):
        Catalog(path)
    holder.close()
    assert not list(tmp_path.glob("*.bad-*"))
    with pytest.raises(sqlite3.OperationalError, match="cannot open the catalog"):
        Catalog(tmp_path)  # a directory


# -- threads -----------------------------------------------------------------------------------


def test_readers_see_the_old_or_the_new_list_never_a_mix(tmp_path):
    path = tmp_path / "concurrent.db"
    old = [entry("src", f"OLD{i}", f"Old {i}") for i in range(3000)]
    new = [entry("src", f"NEW{i}", f"New {i}") for i in range(2000)]
    with Catalog(path) as catalog:
        catalog.replace_source("src", old)
        errors = []

        def write():
            try:
                catalog.replace_source("src", new)
            except Exception as exc:  # reported below, in the test's thread
                errors.append(exc)

        writer = threading.Thread(target=write)
        writer.start()
        seen = set()
        while writer.is_alive() or not seen:
            count = catalog.sources()["src"]
            listed = {r["name"][:3] for r in catalog.search("", source="src", limit=1000)}
            assert count in (3000, 2000) and len(listed) == 1
            seen |= listed
        writer.join()
        assert not errors
        assert catalog.sources() == {"src": 2000}
        assert names(catalog.search("new 1999")) == ["NEW1999"]


def test_another_thread_may_search(cat):
    results = []
    thread = threading.Thread(target=lambda: results.append(cat.search("apple")))
    thread.start()
    thread.join(timeout=60)
    assert names(results[0]) == ["AAPL", "APLE"]


def test_a_catalog_an_older_nbfeed_made_is_made_anew_in_place(tmp_path, caplog):
    path = tmp_path / "catalog.db"
    with sqlite3.connect(path) as conn:  # the shape schema 1 had: filter tokens, 4-column FTS
        conn.executescript("""
            PRAGMA application_id = 1851942499;
            PRAGMA user_version = 1;
            CREATE TABLE sources (source TEXT PRIMARY KEY, entries INTEGER NOT NULL);
            CREATE TABLE filter_tokens (value TEXT PRIMARY KEY, token TEXT NOT NULL);
            CREATE TABLE entries (id INTEGER PRIMARY KEY, name TEXT, tags TEXT, doc TEXT);
            CREATE INDEX entries_by_name ON entries (name);
            CREATE VIRTUAL TABLE entries_fts USING fts5 (name, tags, content = 'entries',
                                                         content_rowid = 'id');
            INSERT INTO sources VALUES ('old', 1);
            INSERT INTO entries VALUES (1, 'OLD', 's0', '{"name": "OLD"}');
        """)
    conn.close()
    with caplog.at_level(logging.INFO, logger="nbfeed.hub.catalog"), Catalog(path) as catalog:
        assert catalog.sources() == {}  # a cache: the next populate fills it
        catalog.replace_source("fx", FX)
        assert "EURUSD" in [e["name"] for e in catalog.search("eur")]
    assert "has schema 1: made anew as schema 2" in caplog.text
    assert not list(tmp_path.glob("*.bad-*"))
    with Catalog(path) as catalog:  # and it stays: opened again, nothing is remade
        assert catalog.sources() == {"fx": 4}


@pytest.mark.parametrize("query", [
    "apple\u19b0inc",            # U+19B0: a letter to Python, a separator to the tokenizer
    "apple \u19b0\u19b1\u19c8 inc",
    "\u19b0",
    "a\u19b0b\u19b1c\u19b2d\u19b3e\u19b4f\u19b5g\u19b6h\u19b7i\u19b8j\u19b9k",  # past 8 terms
])
def test_letters_the_tokenizer_splits_on_are_word_breaks_not_errors(query):
    # The full-text index keeps no positions, so a quoted word the tokenizer reads as two
    # tokens would be a phrase - an SQLite error - unless split first.
    catalog = Catalog(":memory:")
    catalog.replace_source("s", [{"name": "AAPL", "name_label": "Apple Inc.",
                                  "categories": ["Stocks"]}])
    found = [e["name"] for e in catalog.search(query)]
    assert found == (["AAPL"] if "apple" in query else [])
    assert [e["name"] for e in catalog.search("apple")] == ["AAPL"]  # and it still serves
