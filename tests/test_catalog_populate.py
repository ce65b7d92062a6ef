"""Populating the catalog in bulk, on real SQLite files: searches keep answering during a refresh,
a refresh that fails halfway changes nothing, hostile entries are refused by name."""

from __future__ import annotations

import asyncio
import sqlite3
import threading

import pytest

import nbfeed.hub.catalog as catalog_module
from nbfeed.errors import BadRequest
from nbfeed.hub.catalog import Catalog
from nbfeed.providers.listing import MAX_ENTRY_BYTES, MAX_NAME_CHARS

WAIT = 60  # seconds: generous, the machine is shared; nothing here sleeps


def entry(name, label, categories=("Stocks",), **extra):
    return {"name": name, "name_label": label, "type": "candlestick",
            "categories": list(categories), "intervals": ["1m", "1d"],
            "outputs": [{"name": "close", "y_axis": "price"}], **extra}


def listing(prefix, count, word):
    return [entry(f"{prefix}{i}", f"{word} company {i}", ["Stocks", f"Group{i % 7}"])
            for i in range(count)]


def names(results):
    return [r["name"] for r in results]


def assert_index_consistent(catalog):
    """SQLite's own checks: the file, and the full-text index against the entries."""
    conn = sqlite3.connect(catalog.path)
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.execute("INSERT INTO entries_fts (entries_fts, rank) VALUES ('integrity-check', 1)")
    conn.close()


@pytest.fixture
def big(tmp_path):
    """A catalog with a large source (``OLD*``, 20k entries) and a small one beside it."""
    with Catalog(tmp_path / "catalog.db") as catalog:
        catalog.replace_source("big", listing("OLD", 20_000, "Oldword"))
        catalog.replace_source("fx", [entry("EURUSD", "Euro / US Dollar", ["Forex"])])
        yield catalog


def pause_inside_the_write(monkeypatch):
    """Make ``replace_source`` stop after writing every row, before its commit, until released.

    Returns (writing, release): ``writing`` is set once the new rows are in the open transaction.
    """
    writing, release = threading.Event(), threading.Event()
    real = catalog_module.write_source

    def write_then_wait(conn, listing):
        real(conn, listing)
        writing.set()
        assert release.wait(WAIT), "the test never released the writer"

    monkeypatch.setattr(catalog_module, "write_source", write_then_wait)
    return writing, release


def test_searches_answer_from_the_old_list_while_a_big_refresh_is_being_written(big, monkeypatch):
    writing, release = pause_inside_the_write(monkeypatch)
    new = listing("NEW", 25_000, "Newword")
    errors = []

    def refresh():
        try:
            big.replace_source("big", new)
        except Exception as exc:  # reported in the test's thread
            errors.append(exc)

    writer = threading.Thread(target=refresh)
    writer.start()
    try:
        assert writing.wait(WAIT), "the refresh never reached its write"
        # The refresh holds the write transaction with all 25k new rows in it: every kind of
        # search still answers, from the complete old list.
        assert names(big.search("old1234", limit=1)) == ["OLD1234"]
        assert names(big.search("oldword company 42"))[0] == "OLD42"
        assert big.search("newword") == [] and big.lookup("big", "NEW1") is None
        assert len(big.search("", source="big", category="group3", limit=1000)) == 1000
        assert big.sources() == {"big": 20_000, "fx": 1}
        assert names(big.search("euro")) == ["EURUSD"]
    finally:
        release.set()
        writer.join(WAIT)
    assert not errors
    assert big.sources() == {"big": 25_000, "fx": 1}
    assert names(big.search("new24999")) == ["NEW24999"]
    assert big.search("oldword") == []
    assert_index_consistent(big)


async def test_the_hub_way_searches_on_the_loop_while_a_worker_thread_refreshes(big, monkeypatch):
    # As Hub.populate does: the refresh on a worker thread (asyncio.to_thread), searches on the
    # event loop; the loop is never stuck behind the refresh.
    writing, release = pause_inside_the_write(monkeypatch)
    refresh = asyncio.ensure_future(
        asyncio.to_thread(big.replace_source, "big", listing("NEW", 25_000, "Newword")))
    try:
        assert await asyncio.to_thread(writing.wait, WAIT)
        for query in ("old7", "oldword 77", "", "euro"):
            assert big.search(query)  # on the loop thread, answered from the old list
    finally:
        release.set()
    assert await asyncio.wait_for(refresh, WAIT) == 25_000
    assert names(big.search("newword company 7"))[0] == "NEW7"


def test_a_refresh_that_runs_out_of_disk_halfway_keeps_the_old_list(big):
    before = big.search("oldword company 1", limit=50)
    conn = big._writer
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    # A disk that fills up after a few hundred more pages: the 25k new rows cannot all be written.
    conn.execute(f"PRAGMA max_page_count = {pages + 300}")
    with pytest.raises(sqlite3.OperationalError, match="full"):
        big.replace_source("big", listing("NEW", 25_000, "Newword"))
    assert big.sources() == {"big": 20_000, "fx": 1}
    assert big.search("oldword company 1", limit=50) == before
    assert big.search("newword") == []
    assert_index_consistent(big)
    conn.execute("PRAGMA max_page_count = 4294967294")  # the disk has room again
    assert big.replace_source("big", listing("NEW", 25_000, "Newword")) == 25_000
    assert names(big.search("new7"))[0] == "NEW7"


def test_a_listing_that_breaks_off_halfway_keeps_the_old_list(big):
    def provider_listing():
        yield from listing("NEW", 5000, "Newword")
        raise ConnectionError("provider went away after 5000 entries")

    with pytest.raises(ConnectionError, match="after 5000 entries"):
        big.replace_source("big", provider_listing())
    assert big.sources()["big"] == 20_000
    assert names(big.search("old19999")) == ["OLD19999"]
    assert big.search("newword") == []


@pytest.mark.parametrize(("bad", "message"), [
    # lone surrogates, anywhere in the entry
    (entry("BAD\udc00", "x"), r"entry 'BAD\\udc00' of 'big' is not JSON text"),
    (entry("BAD", "label \ud800 here"), r"entry 'BAD' of 'big' is not JSON text .*surrogate"),
    (entry("BAD", "x", ["Stocks", "\udfff"]), r"entry 'BAD' of 'big' is not JSON text"),
    (entry("BAD", "x", note={"deep": "\ud83d"}), r"entry 'BAD' of 'big' is not JSON text"),
    # huge strings
    (entry("B" * (MAX_NAME_CHARS + 1), "x"),
     rf"entry 'BBB+...B+' of 'big' 'name' is longer than {MAX_NAME_CHARS} characters"),
    (entry("BAD", "y" * (MAX_ENTRY_BYTES + 10)),
     rf"entry 'BAD' of 'big' is \d+ bytes as JSON; at most {MAX_ENTRY_BYTES}"),
    (entry("BAD", "x", ["z" * MAX_ENTRY_BYTES]), r"entry 'BAD' of 'big' is \d+ bytes"),
    # missing or mistyped fields
    ({"name_label": "no name at all"}, r"entry 3 of 'big': 'name' must be a non-empty string"),
    ({"name": None}, r"entry 3 of 'big': 'name' must be a non-empty string, got None"),
    ({"name": "\t \n"}, r"entry 3 of 'big': 'name' must be a non-empty string"),
    ({"name": 12345}, r"entry 3 of 'big': 'name' must be a non-empty string, got 12345"),
    (None, r"entry 3 of 'big' must be a dict, got None"),
    (["BAD", "x"], r"entry 3 of 'big' must be a dict"),
    (entry("BAD", "x", source=None), r"entry 'BAD' of 'big' names another source"),
    (entry("BAD", "x", ["Stocks", None]), r"entry 'BAD' of 'big' 'categories' is not a list"),
    # not JSON: deep nesting, NaN, objects
    ("deeply nested", r"entry 'BAD' of 'big' is not JSON text"),
    (entry("BAD", "x", price=float("inf")), r"entry 'BAD' of 'big' is not JSON text"),
    (entry("BAD", "x", when=object()), r"entry 'BAD' of 'big' is not JSON text"),
])
def test_hostile_entries_are_refused_naming_the_entry_and_change_nothing(big, bad, message):
    if bad == "deeply nested":
        deep: list = []
        for _ in range(100_000):
            deep = [deep]
        bad = entry("BAD", "x", nested=deep)
    good = listing("NEW", 3, "Newword")
    with pytest.raises(BadRequest, match=message):
        big.replace_source("big", [*good, bad, *listing("MORE", 3, "Moreword")])
    assert big.sources() == {"big": 20_000, "fx": 1}
    assert big.search("newword") == []
    assert names(big.search("old77", limit=1)) == ["OLD77"]


def test_the_error_for_a_huge_entry_is_short(big):
    with pytest.raises(BadRequest) as caught:
        big.replace_source("big", [entry("BAD", "y" * 10_000_000)])
    assert len(str(caught.value)) < 600  # the client sees a sentence, not ten megabytes


def test_any_iterable_of_mappings_is_a_listing(tmp_path):
    with Catalog(tmp_path / "c.db") as catalog:
        generated = (entry(f"G{i}", f"Generated {i}", ("Tuple", "Categories")) for i in range(500))
        assert catalog.replace_source("gen", generated) == 500
        assert names(catalog.search("generated 499")) == ["G499"]
        assert len(catalog.search("", category="tuple", limit=1000)) == 500
        assert catalog.lookup("gen", "G7")["categories"] == ["Tuple", "Categories"]


def test_catalog_order_is_shortest_symbol_first_whatever_the_input_order(tmp_path):
    # Listings arrive in any order; full-text matches are ranked within the first ones in
    # catalog order (shortest symbol first), so the bulk path must store them in that order.
    symbols = [f"{'X' * (1 + i % 5)}{chr(65 + i % 26)}{i}" for i in range(3000)]
    with Catalog(tmp_path / "c.db") as catalog:
        catalog.replace_source("s", [entry(s, "Same words") for s in reversed(symbols)])
        conn = sqlite3.connect(catalog.path)
        stored = [n for (n,) in conn.execute("SELECT name FROM entries ORDER BY id")]
        conn.close()
        assert stored == sorted(symbols, key=lambda s: (len(s), s.lower(), s))
        assert_index_consistent(catalog)


def test_a_catalog_made_before_bulk_populate_is_kept_and_tuned(tmp_path):
    path = tmp_path / "catalog.db"
    with Catalog(path) as catalog:
        catalog.replace_source("fx", [entry("EURUSD", "Euro / US Dollar", ["Forex"])])
    conn = sqlite3.connect(path)  # as an nbfeed before this change left it: default FTS5 config
    conn.execute("DELETE FROM entries_fts_config WHERE k = 'hashsize'")
    conn.commit()
    conn.close()
    with Catalog(path) as catalog:
        assert names(catalog.search("euro")) == ["EURUSD"]  # not moved aside, not emptied
        catalog.replace_source("big", listing("NEW", 3000, "Newword"))
        assert names(catalog.search("newword company 2999")) == ["NEW2999"]
        assert_index_consistent(catalog)
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT v FROM entries_fts_config WHERE k = 'hashsize'").fetchone() \
        == (catalog_module._FTS_HASH_BYTES,)
    conn.close()
    assert not list(tmp_path.glob("*.bad-*"))


def test_json_edges_are_decided_by_the_standard_library(tmp_path):
    # orjson writes the documents, but what is accepted stays what JSON accepts.
    with Catalog(tmp_path / "c.db") as catalog:
        deep: list = []
        for _ in range(300):  # deeper than orjson nests, well within JSON
            deep = [deep]
        accepted = [
            entry("KEYS", "Int keys", meta={1: "one", 2.5: "x"}),
            entry("HUGE", "Big int", lot=2**70),
            entry("NULL", "Real null", expiry=None),
            entry("DEEP", "Deep list", nested=deep),
            entry("TEXT", "Unicode 这是测试币 ünïcode"),
        ]
        assert catalog.replace_source("edge", accepted) == 5
        assert catalog.lookup("edge", "KEYS")["meta"] == {"1": "one", "2.5": "x"}
        assert catalog.lookup("edge", "HUGE")["lot"] == 2**70
        assert catalog.lookup("edge", "NULL")["expiry"] is None
        assert catalog.lookup("edge", "TEXT")["name_label"] == "Unicode 这是测试币 ünïcode"
        for bad in (entry("NAN", "x", price=float("nan")), entry("INF", "x", low=-float("inf"))):
            with pytest.raises(BadRequest, match="is not JSON text"):
                catalog.replace_source("edge", [*accepted, bad])
        assert catalog.sources() == {"edge": 5}


def test_a_listing_made_in_another_process_is_written_as_it_came(tmp_path):
    from nbfeed.providers.listing import prepare_entries

    prepared = prepare_entries("ps", listing("P", 3000, "Processword"))
    with Catalog(tmp_path / "c.db") as catalog:
        assert catalog.replace_source("ps", prepared) == 3000
        assert names(catalog.search("processword company 2999")) == ["P2999"]
        assert catalog.lookup("ps", "P5")["source"] == "ps"
        assert_index_consistent(catalog)


@pytest.mark.parametrize("spoil, message", [
    (lambda good: setattr(good, "source", "other"), "not a listing of 'ps'"),
    (lambda good: good.names.pop(), r"not lists of one length \(9 names\)"),
    (lambda good: setattr(good, "docs", tuple(good.docs)), "not lists of one length"),
    (lambda good: good.profile_of.__setitem__(0, 99), "bad profiles"),
    (lambda good: good.profile_of.__setitem__(0, -1), "bad profiles"),
    (lambda good: good.profiles.__setitem__(0, ("candlestick", ["not", "a tuple"])),
     "bad profiles"),
])
def test_a_malformed_listing_is_refused_and_changes_nothing(tmp_path, spoil, message):
    from nbfeed.providers.listing import prepare_entries

    with Catalog(tmp_path / "c.db") as catalog:
        catalog.replace_source("ps", listing("OLD", 10, "Oldword"))
        bad = prepare_entries("ps", listing("NEW", 10, "Newword"))
        spoil(bad)
        with pytest.raises(BadRequest, match=message):
            catalog.replace_source("ps", bad)
        with pytest.raises(BadRequest, match="must be a list of dicts"):
            catalog.replace_source("ps", {"names": ["X"]})  # nor is a dict that looks like one
        assert catalog.sources() == {"ps": 10}
        assert names(catalog.search("oldword company 9")) == ["OLD9"]


@pytest.mark.parametrize("max_tags, few", [(64, 5000), (2, 5000), (64, 10), (2, 10)])
def test_filters_find_the_same_entries_whichever_way_they_are_answered(
        tmp_path, monkeypatch, max_tags, few):
    # A filter is answered inside the full-text match (a few profiles) or checked per match
    # (many), and a filtered listing sorted (few entries) or read off the symbol index (many).
    monkeypatch.setattr(catalog_module, "_MAX_TAGS", max_tags)
    monkeypatch.setattr(catalog_module, "_FEW", few)
    entries = [entry(f"S{i:03}", f"Shared word {i}", ["Stocks", f"Group{i % 5}"])
               for i in range(200)]
    entries += [entry(f"F{i:03}", f"Shared word {i}", ["Forex"], type="line")
                for i in range(50)]
    with Catalog(tmp_path / "c.db") as catalog:
        catalog.replace_source("mix", entries)
        catalog.replace_source("other", [entry("S000X", "Shared word other", ["Stocks"])])
        group3 = sorted(e["name"] for e in entries if "Group3" in e["categories"])
        assert names(catalog.search("", category="GROUP3", limit=1000)) == group3
        assert sorted(names(catalog.search("shared", category="group3", limit=1000))) == group3
        assert names(catalog.search("shared word 13", category="group3")) \
            == ["S013", "S133", "S138"]  # "13" is a word prefix of 133 and 138
        assert names(catalog.search("s00", category="group3")) == ["S003", "S008"]
        assert names(catalog.search("", type="line", limit=3)) == ["F000", "F001", "F002"]
        assert names(catalog.search("", source="mix", category="stocks", limit=2)) \
            == ["S000", "S001"]
        assert names(catalog.search("s000", category="stocks")) == ["S000", "S000X"]
        assert names(catalog.search("s000", category="stocks", source="other")) == ["S000X"]
        assert catalog.search("shared", category="forex", type="candlestick") == []
        assert catalog.search("", category="group9") == []


def test_a_listing_with_a_missing_text_fails_its_write_and_changes_nothing(tmp_path):
    from nbfeed.providers.listing import prepare_entries

    with Catalog(tmp_path / "c.db") as catalog:
        catalog.replace_source("ps", listing("OLD", 10, "Oldword"))
        bad = prepare_entries("ps", listing("NEW", 10, "Newword"))
        bad.labels[3] = None
        with pytest.raises(sqlite3.IntegrityError, match="name_label"):
            catalog.replace_source("ps", bad)
        assert catalog.sources() == {"ps": 10}
        assert names(catalog.search("oldword company 9")) == ["OLD9"]
        assert catalog.search("newword") == []


def test_a_listing_crosses_a_pipe_in_pieces_and_arrives_whole():
    import pickle

    from nbfeed.providers import listing as listing_module
    from nbfeed.providers.listing import prepare_entries

    entries = listing("P", 20_000, "Pipeword")  # more than two pieces
    entries[7]["name"] = "NUL\0INSIDE"  # a text holding the separator travels as it is
    entries += [entry("这是测试币456", "UTF-8 symbol")]
    prepared = prepare_entries("ps", entries)
    assert len(prepared) > 2 * listing_module._PIECE
    assert pickle.loads(pickle.dumps(prepared)) == prepared
    empty = prepare_entries("ps", [])
    assert pickle.loads(pickle.dumps(empty)) == empty
