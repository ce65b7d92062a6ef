"""The symbol catalog: every provider's dataset entries in one SQLite file, and symbol search.

A ``Catalog`` stores the entries of ``Provider.get_dataset()`` (docs/internals.md, "Dataset
entries") per source and answers "which symbols match what the user typed" in about a millisecond
on hundreds of thousands of symbols. It replaces a ``LIKE '%q%'`` full-table scan:

- a lower-case copy of every symbol sits in B-tree indexes, so an exact symbol (``aapl``) is an
  index lookup and a symbol prefix (``eu``) a few index range scans, shortest symbols first;
- an FTS5 table indexes the symbol, its label and its categories, so words (``apple``,
  ``btc usd``) are answered from the full-text index and ranked by bm25;
- filters go through profiles: a profile is one source's entries of one type with one set of
  categories (a source has a handful). A filter on source, type or category is the set of
  profiles it leaves, and each profile has one token in the full-text index, so a filter
  narrows the full-text match itself instead of discarding rows after it.

Results come in this order: exact symbol matches (case-insensitive), then symbols starting with
the query, then entries having every query word as a word prefix in the symbol, the label or the
categories, best bm25 first. Ties go to the shorter symbol, then alphabetical, then the source. An
empty query lists entries alphabetically by symbol (filters still apply).

The work per search is bounded, also for broad queries. bm25 needs each word's document
frequency, which FTS5 finds by reading the word's whole posting list (tens of milliseconds for
``t`` or ``stocks`` among 200k symbols). So a word found in more than ``_BROAD`` entries still
filters but is left out of the score (bm25 would weigh it near zero anyway), and at most
``MAX_RANKED`` full-text matches (or ``limit``, if more) are scored: the first ones in catalog
order, where each source's entries are stored shortest symbol first. ``inc`` or ``usd pair``
thus get good matches fast rather than the provably best of 50,000.

Queries are text, never FTS syntax: the catalog splits a query into words itself and quotes each
one, so ``"``, ``*``, ``AND``, ``NEAR(``, ``-`` or parentheses are just characters and can never
raise an SQLite error. Control characters (NUL included) count as spaces. A query longer than
``MAX_QUERY_CHARS`` is refused with ``BadRequest`` (a symbol search box never needs more); of a
long query only the first ``MAX_QUERY_TERMS`` distinct words are used. These checks live in
``nbfeed.hub.catalog_input``; the preparation of entries for writing in
``nbfeed.providers.listing``.

Populating (``replace_source``) is done in bulk and split in two. The entries are checked,
JSON-encoded and put in catalog order as columns (``providers.listing.prepare_entries``, a
``Listing``) - for a live provider in its own process, so the hub receives a few lists of text
- and then written in one transaction with a fixed number of prepared statements, the
full-text index filled once (``nbfeed.hub.catalog_populate``). Entries handed over as dicts
(the bus, tests) are prepared in the calling thread first. ``bench/catalog_populate.py`` has
the figures: writing is about 13 us of the hub's CPU per entry at 200k entries on the 2-core
test machine, two thirds of it the full-text index; preparing about 4 us in the provider.

Thread safety and processes: one ``Catalog`` may be shared by threads (the hub calls it from a
worker thread). A file catalog keeps two connections, each behind its own lock: writes
(``replace_source``) are serialized on one, reads on the other, and because the file is in WAL
mode a search running during a long ``replace_source`` sees the catalog as it was before, never
half of it, and never waits for it: the new list appears at the commit. The populating thread
gives the GIL up every few hundred entries while it prepares rows, and holds it only briefly
between rows while SQLite writes, so searches on other threads keep answering in milliseconds.
Other processes may open the same file: readers are never blocked, a second writer waits up to
``BUSY_TIMEOUT_S``. A ``":memory:"`` catalog has a single connection and lock (a search waits
for a populate to finish).

Failure behaviour: the catalog is a cache of what providers list, rebuilt by populating. A
catalog an older nbfeed made (an older schema) is emptied and made anew in place, in one
transaction. A file at the catalog path that is not an nbfeed catalog nbfeed can read (not
SQLite, another application's database, a newer nbfeed's schema) is moved aside to
``<name>.bad-<n>`` (with its ``-wal``/``-shm`` files), logged, and a fresh catalog is created:
never overwritten, never deleted. A
``replace_source`` that fails (bad entry, disk full) rolls back and leaves the source as it was.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from ..errors import BadRequest
from ..providers.listing import Listing, check_listing, prepare_entries
from .catalog_input import (
    ENTRY_TYPES,
    MAX_LIMIT,
    MAX_QUERY_CHARS,
    MAX_QUERY_TERMS,
    check_limit,
    check_text,
    fts_match,
    normalize_query,
    query_words,
    unspaced_script,
)
from .catalog_populate import let_readers_in, profile_token, write_source

__all__ = [
    "Catalog",
    "ENTRY_TYPES",
    "MAX_QUERY_CHARS",
    "MAX_QUERY_TERMS",
    "MAX_LIMIT",
    "MAX_RANKED",
    "BUSY_TIMEOUT_S",
]

log = logging.getLogger(__name__)

MAX_RANKED = 250
BUSY_TIMEOUT_S = 10.0

_APPLICATION_ID = 0x6E626663  # "nbfc": marks a file as an nbfeed catalog
_SCHEMA_VERSION = 2
# Greater than any other character: `name_lc < prefix || _TOP` bounds a prefix range scan.
_TOP = "\U0010ffff"
# bm25 column weights (symbol, label, categories, tags): a word in the symbol says more than one
# in the label, a category word ("stocks") says little, and tags are only for filtering.
_BM25 = "bm25(entries_fts, 10.0, 4.0, 1.0, 0.0)"
_TIE_BREAK = "e.name_len, e.name_lc, e.source"
# A query word on more entries than this filters full-text matches but does not score them.
_BROAD = 2000
_FTS_HASH_BYTES = 16 * 1024 * 1024
# A filter matching more profiles than this is checked per match, not inside the full-text match.
_MAX_TAGS = 64
# A filtered listing of at most this many entries is sorted; a bigger one walks the symbol index.
_FEW = 5000

_SCHEMA = f"""
PRAGMA application_id = {_APPLICATION_ID};
PRAGMA user_version = {_SCHEMA_VERSION};
-- A source's entries have the contiguous ids first_id .. first_id + entries - 1.
CREATE TABLE sources (
    source TEXT PRIMARY KEY, entries INTEGER NOT NULL, first_id INTEGER NOT NULL
) WITHOUT ROWID;
-- A profile: one source's entries of one type with one set of categories (a handful per
-- source). Filters on source, type and category are answered by profiles.
CREATE TABLE profiles (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    type TEXT NOT NULL,
    entries INTEGER NOT NULL
);
CREATE TABLE profile_categories (
    category TEXT NOT NULL,     -- lower case: the category filter ignores case
    profile INTEGER NOT NULL,
    PRIMARY KEY (category, profile)
) WITHOUT ROWID;
CREATE TABLE entries (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    profile INTEGER NOT NULL,
    name TEXT NOT NULL,
    name_lc TEXT NOT NULL,
    name_len INTEGER NOT NULL,  -- of name_lc: prefix matches are read shortest first
    name_label TEXT NOT NULL,
    categories TEXT NOT NULL,   -- the categories joined by spaces, for full-text search
    doc TEXT NOT NULL,          -- the entry as given, JSON
    -- The profile's token in the full-text index (catalog_populate.profile_token); computed
    -- when read, never stored.
    tags TEXT GENERATED ALWAYS AS (char(57344) || profile) VIRTUAL
);
-- No UNIQUE (source, name): replace_source writes a whole source with distinct names, and one
-- index less makes populating faster. entries_by_name also serves lookup() and listings.
CREATE INDEX entries_by_name ON entries (name_lc, source);
CREATE INDEX entries_by_length ON entries (name_len, name_lc);
CREATE VIRTUAL TABLE entries_fts USING fts5 (
    name, name_label, categories, tags,
    content = 'entries', content_rowid = 'id',
    tokenize = 'unicode61 remove_diacritics 2',
    -- Prefix indexes make a word prefix one posting list read lazily; without one, SQLite
    -- merges the lists of every matching word up front (milliseconds for "stoc"; with only
    -- '1 2 3', populating took 15% less CPU but a broad word like "pair" 4 ms instead of 1).
    prefix = '1 2 3 4 5 6',
    -- Which column a word is in, not where: queries are words, never phrases, and the index
    -- is a sixth smaller to write.
    detail = column
);
"""


class Catalog:
    """Dataset entries of every source in an SQLite file (or ``":memory:"``), with symbol search."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._closed = False
        if self.path == ":memory:":
            self._writer = _connect(self.path)
            _init_schema(self._writer)
            self._reader = self._writer
            self._write_lock = self._read_lock = threading.Lock()
            return
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._writer = _open_file(self.path)
        self._reader = _connect(self.path, cache_mb=8)
        self._reader.execute("PRAGMA query_only = ON")
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Catalog({self.path!r}{', closed' if self._closed else ''})"

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing -------------------------------------------------------------------------------

    def replace_source(self, source: str, entries: Listing | Iterable[Mapping[str, Any]]) -> int:
        """Make ``entries`` the whole list of ``source``'s symbols; return how many are stored.

        ``entries`` are dataset entries (dicts), or a ``Listing`` of them that
        ``providers.listing.prepare_entries`` made elsewhere (a provider's process does, so the hub
        only writes). One transaction: readers see the old list or the new one, never a mix,
        and on any error (a malformed entry raises ``BadRequest`` naming it) the old list stays.
        An entry without a ``source`` gets this one; an entry naming another source is refused.
        Two entries with the same ``name`` are one symbol: the later entry wins. An empty list
        removes the source.
        """
        check_text("source", source)
        # Every check and all per-entry Python work happen here, before the write lock is taken.
        if isinstance(entries, Listing):
            listing = check_listing(source, entries)
        else:
            listing = prepare_entries(source, entries, pause=let_readers_in)
        with self._write() as conn:
            try:
                conn.execute("BEGIN IMMEDIATE")
                write_source(conn, listing)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            # Fresh statistics after a large change keep the planner on the right indexes;
            # analysis_limit samples each index instead of reading all of it (SQLite's advice).
            conn.execute("PRAGMA optimize")
        log.debug("catalog %s: %s now has %d entries", self.path, source, len(listing))
        return len(listing)

    # -- reading -------------------------------------------------------------------------------

    def search(
        self,
        query: str | None = "",
        source: str | None = None,
        category: str | None = None,
        type: str | None = None,  # shadows the builtin: the name the wire protocol uses
        limit: int = 20,
    ) -> list[dict]:
        """Entries matching ``query`` (best first), optionally only of one source/category/type.

        ``limit`` must be a positive int; above ``MAX_LIMIT`` it is lowered to it. ``category``
        ignores case. An unknown source or category finds nothing. Raises ``BadRequest`` for a
        query that is not text or too long, a bad limit, or a ``type`` other than candlestick,
        line or quote.
        """
        text = normalize_query(query)
        limit = check_limit(limit)
        for field, value in (("source", source), ("category", category), ("type", type)):
            if value is not None:
                check_text(field, value)
        if type is not None and type not in ENTRY_TYPES:
            raise BadRequest(f"type must be one of {', '.join(ENTRY_TYPES)}; got {type!r:.80}")

        with self._read() as conn:
            scope = None
            if source is not None or category is not None or type is not None:
                scope = _Scope.of(conn, source, type, category)
                if not scope.profiles:  # no entry has this source, type or category
                    return []
            if not text:
                return self._list(conn, scope, limit)
            where = scope.where if scope else ""
            found: dict[int, str] = {}
            self._collect(
                conn, found, limit,
                f"SELECT e.id, e.doc FROM entries e WHERE e.name_lc = ?{where}"
                f" ORDER BY {_TIE_BREAK} LIMIT ?",
                (text,),
            )
            # Prefix matches, one symbol length at a time: each is an index range read in
            # order, and the shortest symbols come first without sorting every match.
            longest = conn.execute("SELECT max(name_len) FROM entries").fetchone()[0] or 0
            for length in range(len(text) + 1, longest + 1):
                if len(found) >= limit:
                    break
                self._collect(
                    conn, found, limit,
                    "SELECT e.id, e.doc FROM entries e WHERE e.name_len = ? AND e.name_lc > ?"
                    f" AND e.name_lc < ?{where} ORDER BY e.name_lc, e.source LIMIT ?",
                    (length, text, text + _TOP),
                )
            self._full_text(conn, found, limit, _as_tokens(conn, query_words(text)), scope)
            if len(found) < limit and unspaced_script(text):
                self._inside_words(conn, found, limit, text, where)
        return [orjson.loads(doc) for doc in found.values()]

    @classmethod
    def _inside_words(cls, conn: sqlite3.Connection, found: dict[int, str], limit: int,
                      text: str, where: str) -> None:
        """The last stage, only for queries in scripts written without spaces (Chinese,
        Japanese, Thai...): the tokenizer keeps ``这是测试币456`` as one word, so ``测试币``
        is neither a word nor a word prefix of it. A scan of symbols and labels finds it
        inside; tens of milliseconds on 200k entries, paid only by such queries."""
        cls._collect(
            conn, found, limit,
            "SELECT e.id, e.doc FROM entries e"
            f" WHERE (instr(e.name_lc, ?) > 0 OR instr(lower(e.name_label), ?) > 0){where}"
            f" ORDER BY {_TIE_BREAK} LIMIT ?",
            (text, text),
        )

    @classmethod
    def _full_text(
        cls, conn: sqlite3.Connection, found: dict[int, str], limit: int, words: list[str],
        scope: _Scope | None,
    ) -> None:
        """The full-text stage: entries having every word, ranked by bm25 of the selective ones.

        bm25 weighs each word by how rare it is, and finding that out reads the word's whole
        posting list: tens of milliseconds for ``t`` or ``stocks`` in a big catalog. A word on
        more than ``_BROAD`` entries would get a weight near zero anyway, so it still filters
        but is left out of the score; with only broad words, the tie-break orders the matches.
        Only the first ``max(limit, MAX_RANKED)`` matches in catalog order are scored.

        A filter narrows the match itself, by the tokens of its profiles; a filter matching more
        than ``_MAX_TAGS`` profiles (a source giving nearly every symbol its own categories) is
        checked on each match instead: slower for broad words, same results.
        """
        if not words or len(found) >= limit:
            return
        selective = [
            w for w in words
            if conn.execute(
                "SELECT count(*) FROM (SELECT 1 FROM entries_fts WHERE entries_fts MATCH ?"
                f" LIMIT {_BROAD})",
                (fts_match([w], []),),
            ).fetchone()[0] < _BROAD
        ]
        tags = scope.tags if scope else []
        if scope is not None and tags is None:
            candidates = (
                "SELECT f.rowid AS id FROM entries_fts f JOIN entries e ON e.id = f.rowid"
                f" WHERE f.entries_fts MATCH ?{scope.where} LIMIT {max(limit, MAX_RANKED)}"
            )
            tags = []
        else:
            candidates = (
                "SELECT rowid AS id FROM entries_fts WHERE entries_fts MATCH ?"
                f" LIMIT {max(limit, MAX_RANKED)}"
            )
        if selective:
            # `+rowid`: a plain `rowid IN` would be handed to FTS5, which reruns the MATCH once
            # per listed rowid; as an expression it filters the rows of one MATCH instead.
            ranked = (
                f"SELECT rowid AS id, {_BM25} AS score FROM entries_fts"
                f" WHERE entries_fts MATCH ? AND +rowid IN ({candidates})"
            )
            params: tuple = (fts_match(selective, []), fts_match(words, tags))
        else:
            ranked = f"SELECT id, 0 AS score FROM ({candidates})"
            params = (fts_match(words, tags),)
        cls._collect(
            conn, found, limit,
            f"SELECT e.id, e.doc FROM ({ranked}) AS m JOIN entries e ON e.id = m.id"
            f" ORDER BY m.score, {_TIE_BREAK} LIMIT ?",
            params,
        )

    @staticmethod
    def _collect(
        conn: sqlite3.Connection, found: dict[int, str], limit: int, sql: str, params: tuple
    ) -> None:
        """Add the rows of one ranking stage to ``found`` (in order, skipping earlier stages')."""
        wanted = limit - len(found)
        if wanted <= 0:
            return
        # Rows found by an earlier stage come back here too: ask for enough to skip them.
        for entry_id, doc in conn.execute(sql, (*params, wanted + len(found))).fetchall():
            if entry_id not in found:
                found[entry_id] = doc
                if len(found) == limit:
                    return

    @staticmethod
    def _list(conn: sqlite3.Connection, scope: _Scope | None, limit: int) -> list[dict]:
        """Entries in symbol order (an empty query), of ``scope`` if given."""
        if scope is None:
            sql, params = "SELECT doc FROM entries e ORDER BY e.name_lc, e.source LIMIT ?", ()
        elif scope.tags is not None and scope.entries <= _FEW:
            # Few entries: their ids from the full-text index (one posting list per profile),
            # sorted - rather than walking the symbol index past everything else.
            sql = (
                "SELECT e.doc FROM entries e WHERE e.id IN (SELECT rowid FROM entries_fts"
                " WHERE entries_fts MATCH ?) ORDER BY e.name_lc, e.source LIMIT ?"
            )
            params = (fts_match([], scope.tags),)
        else:
            # Many entries: walk the symbol index in order; matches are dense enough that
            # about limit * catalog / matching index entries are read.
            sql = (
                "SELECT e.doc FROM entries e INDEXED BY entries_by_name"
                f" WHERE 1{scope.where} ORDER BY e.name_lc, e.source LIMIT ?"
            )
            params = ()
        return [orjson.loads(doc) for (doc,) in conn.execute(sql, (*params, limit))]

    def lookup(self, source: str, name: str) -> dict | None:
        """The entry ``name`` of ``source`` exactly as stored (case-sensitive), or None."""
        check_text("source", source)
        check_text("name", name)
        with self._read() as conn:
            row = conn.execute(
                "SELECT doc FROM entries WHERE source = ? AND name_lc = ? AND name = ?",
                (source, name.lower(), name),
            ).fetchone()
        return orjson.loads(row[0]) if row else None

    def sources(self) -> dict[str, int]:
        """Every source with at least one entry -> its number of entries."""
        with self._read() as conn:
            return dict(conn.execute("SELECT source, entries FROM sources ORDER BY source"))

    def close(self) -> None:
        """Close the database; safe to call twice. Later calls raise ``RuntimeError``."""
        with self._write_lock:
            if self._closed:
                return
            self._closed = True
            if self._reader is not self._writer:
                with self._read_lock:
                    self._reader.close()
            self._writer.close()

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._read_lock:
            self._check_open()
            yield self._reader

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._write_lock:
            self._check_open()
            yield self._writer

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"catalog {self.path} is closed")


def _as_tokens(conn: sqlite3.Connection, words: list[str]) -> list[str]:
    """``words`` split where the full-text tokenizer splits them, so each is one token.

    The index stores which column a word is in, not where (``detail = column``), so a quoted
    string of two tokens - a phrase - is an error there, not a search. ``query_words`` splits
    like the tokenizer for every character but a few (the tokenizer knows Unicode 6.1: 21
    later letters, such as U+19B0, are separators to it); the tokenizer itself says which, once
    per character.
    """
    tokens: list[str] = []
    for word in words:
        if word.isascii():
            tokens.append(word)
            continue
        piece = ""
        for ch in word:
            if not ch.isascii() and _separates(conn, ch):
                if piece:
                    tokens.append(piece)
                piece = ""
            else:
                piece += ch
        if piece:
            tokens.append(piece)
    return list(dict.fromkeys(tokens))[:MAX_QUERY_TERMS]


_SEPARATES: dict[str, bool] = {}


def _separates(conn: sqlite3.Connection, ch: str) -> bool:
    """Whether the full-text tokenizer splits words at ``ch`` (asked once per character)."""
    known = _SEPARATES.get(ch)
    if known is None:
        try:
            conn.execute("SELECT 1 FROM entries_fts WHERE entries_fts MATCH ? LIMIT 1",
                         (f'"a{ch}b"',)).fetchall()
            known = False
        except sqlite3.OperationalError:  # "phrase queries are not supported": two tokens
            known = True
        if len(_SEPARATES) < 100_000:  # bounded: hostile queries cannot grow it without end
            _SEPARATES[ch] = known
    return known


class _Scope(NamedTuple):
    """What a search's filters leave: the matching profiles, as SQL and as full-text tokens.

    ``where`` is an ``AND e.profile IN (...)`` clause for queries on ``entries e``; ``tags`` the
    profiles' full-text tokens, or None when there are more than ``_MAX_TAGS`` of them;
    ``entries`` how many entries the profiles have.
    """

    profiles: list[int]
    entries: int
    where: str
    tags: list[str] | None

    @classmethod
    def of(cls, conn: sqlite3.Connection, source: str | None, type: str | None,
           category: str | None) -> _Scope:
        sql, params = "SELECT p.id, p.entries FROM profiles p WHERE 1", []
        if source is not None:
            sql += " AND p.source = ?"
            params.append(source)
        if type is not None:
            sql += " AND p.type = ?"
            params.append(type)
        if category is not None:
            sql += (" AND p.id IN (SELECT profile FROM profile_categories"
                    " WHERE category = ?)")
            params.append(category.lower())
        rows = conn.execute(sql, params).fetchall()
        profiles = [profile for profile, _ in rows]
        # Ids read from the catalog itself: integers, safe to spell into the SQL.
        where = f" AND e.profile IN ({','.join(map(str, profiles))})"
        tags = [profile_token(p) for p in profiles] if len(profiles) <= _MAX_TAGS else None
        return cls(profiles, sum(n for _, n in rows), where, tags)


# -- opening -----------------------------------------------------------------------------------


def _connect(path: str, cache_mb: int = 32) -> sqlite3.Connection:
    # Autocommit mode (isolation_level=None): transactions are spelled out where they are needed.
    conn = sqlite3.connect(
        path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
    )
    if path != ":memory:":
        conn.execute("PRAGMA journal_mode = WAL")
        # In WAL mode NORMAL loses at most the last commits on power loss, never consistency;
        # acceptable for a cache that populating rebuilds.
        conn.execute("PRAGMA synchronous = NORMAL")
        # Populating 200k entries writes a WAL the size of the catalog: give the space back.
        conn.execute("PRAGMA journal_size_limit = 33554432")
    # Populating inserts into indexes at random places: a bigger page cache (it grows only as
    # pages are used) keeps that from rereading pages. Searches touch few pages.
    conn.execute(f"PRAGMA cache_size = -{cache_mb * 1024}")
    conn.execute("PRAGMA analysis_limit = 1000")
    return conn


def _init_schema(conn: sqlite3.Connection) -> None:
    conn.executescript(f"BEGIN; {_SCHEMA} COMMIT;")
    _configure_full_text(conn)


def _remake(conn: sqlite3.Connection) -> None:
    """Drop everything in an older nbfeed catalog and create the current schema, atomically."""
    tables = [name for (name,) in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        " AND sql NOT LIKE 'CREATE TABLE ''%'")]  # shadow tables go with their FTS table
    drops = "".join(f'DROP TABLE IF EXISTS "{name}"; ' for name in tables)
    try:
        conn.executescript(f"BEGIN IMMEDIATE; {drops}{_SCHEMA} COMMIT;")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    _configure_full_text(conn)


def _configure_full_text(conn: sqlite3.Connection) -> None:
    """Let the full-text index gather 16 MiB of postings in memory before writing a segment.

    FTS5's default is 1 MiB: a populate of 100k+ entries then writes dozens of segments and
    merges them again and again; with 16 MiB it writes a few (a fifth less CPU to index).
    Stored in the index's config table, so set once per file (also on files made before); a
    file another process is writing keeps the default until it is opened again.
    """
    current = conn.execute(
        "SELECT v FROM entries_fts_config WHERE k = 'hashsize'").fetchone()
    if current is None or current[0] != _FTS_HASH_BYTES:
        try:
            conn.execute("INSERT INTO entries_fts (entries_fts, rank) VALUES ('hashsize', ?)",
                         (_FTS_HASH_BYTES,))
        except sqlite3.OperationalError as exc:  # another process writing: next open, then
            log.debug("catalog: full-text hash size left for later: %s", exc)


def _open_file(path: str) -> sqlite3.Connection:
    """Open (or create) the catalog file, moving aside whatever else is at ``path``.

    A catalog that cannot be opened now (locked, unreadable, a directory) is an error, never a
    reason to move it.
    """
    conn = None
    try:
        conn = _connect(path)
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if app_id == _APPLICATION_ID and version == _SCHEMA_VERSION:
            _configure_full_text(conn)
            return conn
        if app_id == _APPLICATION_ID and 0 < version < _SCHEMA_VERSION:
            # Made by an older nbfeed: our own cache, emptied and made anew in place (the
            # next populate fills it); nothing else's data is at stake.
            log.info("catalog %s has schema %d: made anew as schema %d", path, version,
                     _SCHEMA_VERSION)
            _remake(conn)
            return conn
        if app_id == 0 and not conn.execute("SELECT 1 FROM sqlite_master").fetchone():
            _init_schema(conn)
            return conn
        conn.close()
        reason = f"application_id {app_id:#x}, schema version {version}"
    except sqlite3.OperationalError as exc:
        if conn is not None:
            conn.close()
        raise sqlite3.OperationalError(f"cannot open the catalog {path}: {exc}") from exc
    except sqlite3.DatabaseError as exc:  # "file is not a database", "malformed"
        if conn is not None:
            conn.close()
        reason = str(exc)
    moved = _move_aside(path)
    log.warning("%s is not an nbfeed catalog (%s): moved to %s", path, reason, moved)
    conn = _connect(path)
    _init_schema(conn)
    return conn


def _move_aside(path: str) -> str:
    n = 1
    while Path(f"{path}.bad-{n}").exists():
        n += 1
    target = f"{path}.bad-{n}"
    Path(path).rename(target)
    # A stale write-ahead log next to a new database would be replayed into it.
    for suffix in ("-wal", "-shm"):
        if Path(path + suffix).exists():
            Path(path + suffix).rename(target + suffix)
    return target
