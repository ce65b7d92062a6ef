"""Writing one source's entries into the catalog in bulk: the populate path of ``Catalog``.

``write_source(conn, listing)`` makes a ``nbfeed.providers.listing.Listing`` the whole list of
its source inside the caller's write transaction, with a fixed number of statements whatever the
number of entries:

- the old rows of the source go by their id range (a source's ids are contiguous), their
  full-text postings with one ``'delete'`` INSERT ... SELECT unless the whole index is rebuilt
  below, and the source's profiles with them;
- the source's profiles (its distinct type and categories) get fresh ids; an entry stores only
  its profile id, and the full-text index one token standing for it (``profile_token``), so a
  filter on source, type or category is a handful of tokens ORed inside the full-text match;
- the new rows go in with one prepared INSERT (``executemany`` over the listing's columns:
  SQLite compiles the statement once and steps it per row), in catalog order, so the ids of a
  source are contiguous and its shortest symbols come first;
- the full-text index is filled once at the end, from the entries table, by one statement:
  ``'rebuild'`` when this source is most of the catalog (deleting postings costs as much as
  adding them), else one INSERT ... SELECT of the new id range.

Why no staging table: the catalog file is in WAL mode and searches run on their own connection,
so they read the last committed catalog and never wait for this transaction, however long it
runs; the switch to the new list is the commit itself. A staging copy would only add a second
write of every row. What can make searches wait during a populate is the GIL; here Python only
hands column values to SQLite, which releases the GIL while it steps (and the per-entry Python
work of a provider's listing was done in the provider's process).

Failure behaviour: nothing here commits or rolls back; on any error (disk full, interrupted) the
caller rolls the transaction back and the source stays as it was.
"""

from __future__ import annotations

import sqlite3
import time
from collections import Counter
from itertools import count, repeat

from ..providers.listing import Listing

__all__ = ["write_source", "let_readers_in", "profile_token", "FTS_COLUMNS"]

FTS_COLUMNS = "name, name_label, categories, tags"


def let_readers_in() -> None:
    """Release the GIL for a moment so a thread waiting for it (a search) can run now.

    A thread busy in Python keeps the GIL for up to ``sys.getswitchinterval()`` (5 ms) each time
    another thread asks for it, and a search asks once per SQLite call (each releases it): a few
    dozen such waits made searches take hundreds of milliseconds while a listing was prepared.
    """
    time.sleep(0)


def profile_token(profile: int) -> str:
    """The full-text token standing for a profile in the ``tags`` column.

    A private-use character (a letter to the tokenizer) and the id: no word a user types can
    start with it, so tags never crowd the prefix lists that query words read.
    """
    return f"\ue000{profile}"


def write_source(conn: sqlite3.Connection, listing: Listing) -> None:
    """Replace every row of ``listing.source`` by ``listing`` (inside the caller's transaction)."""
    source = listing.source
    old = conn.execute("SELECT entries, first_id FROM sources WHERE source = ?",
                       (source,)).fetchone()
    total = conn.execute("SELECT coalesce(sum(entries), 0) FROM sources").fetchone()[0]
    # Deleting a row from the full-text index costs as much as adding one; when this source
    # is most of the catalog, indexing everything afresh is cheaper and leaves no garbage.
    rebuild = old is not None and 2 * old[0] > total
    if old is not None:
        span = (old[1], old[1] + old[0] - 1)
        if not rebuild:
            conn.execute(
                f"INSERT INTO entries_fts (entries_fts, rowid, {FTS_COLUMNS})"
                f" SELECT 'delete', id, {FTS_COLUMNS} FROM entries WHERE id BETWEEN ? AND ?",
                span,
            )
        conn.execute("DELETE FROM entries WHERE id BETWEEN ? AND ?", span)
        conn.execute("DELETE FROM profile_categories WHERE profile IN"
                     " (SELECT id FROM profiles WHERE source = ?)", (source,))
        conn.execute("DELETE FROM profiles WHERE source = ?", (source,))
        conn.execute("DELETE FROM sources WHERE source = ?", (source,))
    n = len(listing.names)
    if n:
        first = conn.execute("SELECT coalesce(max(id), 0) + 1 FROM entries").fetchone()[0]
        base = conn.execute("SELECT coalesce(max(id), 0) + 1 FROM profiles").fetchone()[0]
        counts = Counter(listing.profile_of)
        for i, (kind, categories) in enumerate(listing.profiles):
            conn.execute("INSERT INTO profiles VALUES (?, ?, ?, ?)",
                         (base + i, source, kind, counts[i]))
            conn.executemany("INSERT INTO profile_categories VALUES (?, ?)",
                             ((c, base + i) for c in categories))
        conn.executemany(
            "INSERT INTO entries (id, source, profile, name, name_lc, name_len, name_label,"
            " categories, doc) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            # Iterators over the columns, built in C: SQLite steps each row as it comes.
            zip(count(first), repeat(source), map(base.__add__, listing.profile_of),
                listing.names, listing.names_lc, map(len, listing.names_lc), listing.labels,
                listing.categories, listing.docs),
        )
        conn.execute("INSERT INTO sources VALUES (?, ?, ?)", (source, n, first))
    if rebuild:
        conn.execute("INSERT INTO entries_fts (entries_fts) VALUES ('rebuild')")
    elif n:
        conn.execute(
            f"INSERT INTO entries_fts (rowid, {FTS_COLUMNS})"
            f" SELECT id, {FTS_COLUMNS} FROM entries WHERE id >= ?",
            (first,),
        )
