"""What callers hand the catalog, checked: provider entries as rows, a typed query as FTS5 words.

``nbfeed.hub.catalog.Catalog`` stores and searches; this module holds the pure functions on its
input side, with no SQLite connection and no state:

- ``prepare_entries`` turns ``Provider.get_dataset()`` entries into the rows ``Catalog`` writes:
  one per distinct name (the later entry wins), shortest symbol first, each carrying its JSON
  document. It refuses only what would break the catalog (missing name, wrong field types, not
  JSON text); full validation is ``nbfeed.providers.dataset.validate_entries``.
- ``normalize_query`` makes what the user typed comparable with stored symbols (lower case, control
  characters as spaces, runs of spaces as one); ``query_words`` picks the words for full-text
  search (at most ``MAX_QUERY_TERMS``); ``fts_match`` builds an FTS5 query for the catalog's
  ``entries_fts`` columns in which every word is quoted, so nothing typed is read as FTS syntax.
- ``check_text`` and ``check_limit`` check the other search and write arguments; ``ENTRY_TYPES``
  are the accepted entry types.

Failure behaviour: every refusal is ``nbfeed.errors.BadRequest`` saying which field or entry is
wrong, showing the bad value (cut to a readable length) and what would be accepted: an empty,
non-string or lone-surrogate text, a query longer than ``MAX_QUERY_CHARS``, a limit that is not a
positive int, a malformed entry (named by index or name, with its source). A limit above
``MAX_LIMIT`` is lowered to it, not refused. Nothing here touches the database, so a refusal
leaves the catalog as it was.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping

from ..errors import BadRequest

ENTRY_TYPES = ("candlestick", "line", "quote")
MAX_QUERY_CHARS = 200
MAX_QUERY_TERMS = 8
MAX_LIMIT = 1000

# Words as FTS5's unicode61 tokenizer sees them: letters and digits (underscore is punctuation).
_WORD = re.compile(r"[^\W_]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# One encoder for all entries: json.dumps with options builds a new one per call.
_JSON = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def check_text(field: str, value: object) -> None:
    """Refuse ``value`` unless it is a non-empty string SQLite can store (no lone surrogates)."""
    if not isinstance(value, str) or not value:
        raise BadRequest(f"{field} must be a non-empty string, got {value!r:.80}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest(f"{field} is not valid text (lone surrogate): {value!r:.80}") from None



def prepare_entries(source: str, entries: object) -> list[tuple]:
    """Check ``entries``; one row per distinct name, shortest first (the catalog order).

    A row is (name, name_lc, name_len, label, type, categories as text, doc, lower-case
    categories). Full validation is ``nbfeed.providers.dataset.validate_entries``; this only
    refuses what would break the catalog itself (missing name, wrong field types, not JSON).
    """
    if isinstance(entries, (str, bytes, Mapping)) or not isinstance(entries, Iterable):
        raise BadRequest(f"entries of {source!r} must be a list of dicts, got {entries!r:.80}")
    by_name: dict[str, tuple] = {}
    for index, entry in enumerate(entries):
        if not isinstance(entry, Mapping):
            raise BadRequest(f"entry {index} of {source!r} must be a dict, got {entry!r:.80}")
        name = entry.get("name")
        label = entry.get("name_label", "")
        kind = entry.get("type", "")
        categories = entry.get("categories", [])
        if not isinstance(name, str) or not name.strip():
            raise BadRequest(
                f"entry {index} of {source!r}: 'name' must be a non-empty string, got {name!r:.80}"
            )
        problem = (
            "names another source" if entry.get("source", source) != source
            else "'name_label' is not a string" if not isinstance(label, str)
            else "'type' is not a string" if not isinstance(kind, str)
            else "'categories' is not a list of strings"
            if not isinstance(categories, (list, tuple))
            or not all(isinstance(c, str) for c in categories)
            else None
        )
        if problem is None:
            try:
                doc = _JSON.encode(entry if "source" in entry else {"source": source, **entry})
                if not doc.isascii():
                    doc.encode("utf-8")  # lone surrogates cannot be stored
            except (TypeError, ValueError) as exc:  # UnicodeEncodeError is a ValueError
                problem = f"is not JSON text ({exc})"
        if problem is not None:
            raise BadRequest(f"entry {name!r:.80} of {source!r} {problem}: {entry!r:.200}")
        name_lc = name.lower()
        by_name[name] = (name, name_lc, len(name_lc), label, kind, " ".join(categories), doc,
                         sorted({c.lower() for c in categories}))
    # Catalog order: a query matching more than MAX_RANKED entries ranks the first ones.
    return sorted(by_name.values(), key=lambda row: (row[2], row[1], row[0]))


def normalize_query(query: object) -> str:
    """The query as compared with symbols: lower case, single spaces, "" for None or blank."""
    if query is None:
        return ""
    if not isinstance(query, str):
        raise BadRequest(f"query must be a string, got {query!r:.80}")
    if len(query) > MAX_QUERY_CHARS:
        raise BadRequest(
            f"query is {len(query)} characters long; at most {MAX_QUERY_CHARS} are accepted"
        )
    if query:
        check_text("query", query)
    return " ".join(_CONTROL.sub(" ", query).split()).lower()


def query_words(text: str) -> list[str]:
    """The words of a query for full-text search (at most ``MAX_QUERY_TERMS``).

    A word that is a prefix of another query word adds nothing (the longer word's match
    satisfies it) and is dropped; words past ``MAX_QUERY_TERMS`` are dropped to bound the work
    of hostile queries.
    """
    words = list(dict.fromkeys(_WORD.findall(text)))
    kept = [w for w in words if not any(o != w and o.startswith(w) for o in words)]
    return kept[:MAX_QUERY_TERMS]


def fts_match(words: list[str], tags: list[str]) -> str:
    """An FTS5 query: every word as a word prefix in symbol, label or categories, every tag.

    Each word is quoted, so nothing the user typed is read as FTS syntax, and words never
    match the tags column.
    """
    quoted = " ".join(f'"{w}"*' for w in words)
    match = f"{{name name_label categories}}: ({quoted})"
    if tags:
        match += " AND tags: ({})".format(" ".join(f'"{t}"' for t in tags))
    return match


def check_limit(limit: object) -> int:
    """A positive int limit, lowered to ``MAX_LIMIT``."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0:
        raise BadRequest(f"limit must be a positive integer, got {limit!r:.80}")
    return min(limit, MAX_LIMIT)
