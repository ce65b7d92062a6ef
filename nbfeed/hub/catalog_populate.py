"""Writing one source's entries into the catalog in bulk: the populate path of ``Catalog``.

``write_source(conn, source, prepared)`` makes the rows of
``nbfeed.hub.catalog_input.prepare_entries`` the whole list of ``source`` inside the caller's
write transaction, with a fixed number of statements whatever the number of entries:

- the old rows of the source go with three set-wise DELETEs (their full-text postings with one
  ``'delete'`` INSERT ... SELECT, unless the whole index is rebuilt below);
- the new rows go in with one prepared INSERT each for ``entries`` and ``entry_categories``
  (``executemany``: SQLite compiles the statement once and steps it per row), in catalog order,
  so the ids of a source are contiguous and its shortest symbols come first;
- the full-text index is filled once at the end, from the entries table, by one statement:
  ``'rebuild'`` when this source is most of the catalog (deleting postings costs as much as
  adding them), else one INSERT ... SELECT of the new id range.

Why no staging table: the catalog file is in WAL mode and searches run on their own connection,
so they read the last committed catalog and never wait for this transaction, however long it
runs; the switch to the new list is the commit itself. A staging copy would only add a second
write of every row. What can make searches wait during a populate is the GIL: the per-entry
Python work is done before the transaction, in ``prepare_entries``, which pauses with
``let_readers_in`` every few hundred entries; here Python only hands rows to SQLite, which
releases the GIL while it steps.

Failure behaviour: nothing here commits or rolls back; on any error (disk full, interrupted) the
caller rolls the transaction back and the source stays as it was.
"""

from __future__ import annotations

import sqlite3
import time

from .catalog_input import PreparedEntries

__all__ = ["write_source", "let_readers_in", "FTS_COLUMNS"]

FTS_COLUMNS = "name, name_label, categories, tags"


def let_readers_in() -> None:
    """Release the GIL for a moment so a thread waiting for it (a search) can run now.

    A thread busy in Python keeps the GIL for up to ``sys.getswitchinterval()`` (5 ms) each time
    another thread asks for it, and a search asks once per SQLite call (each releases it): a few
    dozen such waits made searches take hundreds of milliseconds while a listing was prepared.
    """
    time.sleep(0)


def write_source(conn: sqlite3.Connection, source: str, prepared: PreparedEntries) -> None:
    """Replace every row of ``source`` by ``prepared`` (inside the caller's transaction)."""
    rows = prepared.rows
    old = conn.execute("SELECT entries FROM sources WHERE source = ?", (source,)).fetchone()
    old = old[0] if old else 0
    total = conn.execute("SELECT coalesce(sum(entries), 0) FROM sources").fetchone()[0]
    # Deleting a row from the full-text index costs as much as adding one; when this source
    # is most of the catalog, indexing everything afresh is cheaper and leaves no garbage.
    rebuild = 2 * old > total
    if old:
        if not rebuild:
            conn.execute(
                f"INSERT INTO entries_fts (entries_fts, rowid, {FTS_COLUMNS})"
                f" SELECT 'delete', id, {FTS_COLUMNS} FROM entries WHERE source = ?",
                (source,),
            )
        conn.execute(
            "DELETE FROM entry_categories WHERE entry_id IN"
            " (SELECT id FROM entries WHERE source = ?)",
            (source,),
        )
        conn.execute("DELETE FROM entries WHERE source = ?", (source,))
        conn.execute("DELETE FROM sources WHERE source = ?", (source,))
    if rows:
        first = conn.execute("SELECT coalesce(max(id), 0) + 1 FROM entries").fetchone()[0]
        tags = _tags(conn, source, prepared.profiles)
        conn.executemany(
            "INSERT INTO entries (id, source, name, name_lc, name_len, name_label, type,"
            " categories, tags, doc) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            # Generators, not lists: each row is built just before SQLite steps it, so this
            # thread gives up the GIL between rows instead of after one long Python loop.
            (
                (first + i, source, name, name_lc, name_len, label, kind, text, tags[profile], doc)
                for i, (name_len, name_lc, name, label, kind, text, doc, profile)
                in enumerate(rows)
            ),
        )
        conn.executemany(
            "INSERT INTO entry_categories (category, name_lc, entry_id) VALUES (?, ?, ?)",
            ((c, row[1], first + i) for i, row in enumerate(rows) for c in row[7][1]),
        )
        conn.execute("INSERT INTO sources VALUES (?, ?)", (source, len(rows)))
    if rebuild:
        conn.execute("INSERT INTO entries_fts (entries_fts) VALUES ('rebuild')")
    elif rows:
        conn.execute(
            f"INSERT INTO entries_fts (rowid, {FTS_COLUMNS})"
            f" SELECT id, {FTS_COLUMNS} FROM entries WHERE id >= ?",
            (first,),
        )


def _tags(
    conn: sqlite3.Connection, source: str, profiles: set[tuple[str, tuple[str, ...]]]
) -> dict[tuple[str, tuple[str, ...]], str]:
    """profile -> the tags text of its entries (filter tokens), creating missing tokens."""
    values = {f"source:{source}"}
    for kind, categories in profiles:
        values.add(f"type:{kind}")
        values.update(f"category:{c}" for c in categories)
    tokens = dict(conn.execute("SELECT value, token FROM filter_tokens"))
    for value in sorted(values - tokens.keys()):
        # Letters then base-36 digits: one word for the tokenizer, short in the index.
        token = value[0] + _base36(len(tokens))
        conn.execute("INSERT INTO filter_tokens VALUES (?, ?)", (value, token))
        tokens[value] = token
    return {
        (kind, categories): " ".join([tokens[f"source:{source}"], tokens[f"type:{kind}"],
                                      *(tokens[f"category:{c}"] for c in categories)])
        for kind, categories in profiles
    }


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    text = ""
    while True:
        number, digit = divmod(number, 36)
        text = digits[digit] + text
        if not number:
            return text
