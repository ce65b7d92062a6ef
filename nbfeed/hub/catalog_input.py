"""What callers hand the catalog's search, checked: a typed query as FTS5 words, filters, limits.

``nbfeed.hub.catalog.Catalog`` stores and searches; this module holds the pure functions on its
query side, with no SQLite connection and no state (the entries side, a provider's listing,
is ``nbfeed.providers.listing``):

- ``normalize_query`` makes what the user typed comparable with stored symbols (lower case, control
  characters as spaces, runs of spaces as one); ``query_words`` picks the words for full-text
  search (at most ``MAX_QUERY_TERMS``); ``fts_match`` builds an FTS5 query for the catalog's
  ``entries_fts`` columns in which every word is quoted, so nothing typed is read as FTS syntax.
- ``check_text`` and ``check_limit`` check the other search and write arguments; ``ENTRY_TYPES``
  are the accepted entry types.

Failure behaviour: every refusal is ``nbfeed.errors.BadRequest`` saying which argument is
wrong, showing the bad value (cut to a readable length) and what would be accepted: an empty,
non-string or lone-surrogate text, a query longer than ``MAX_QUERY_CHARS``, a limit that is not a
positive int. A limit above ``MAX_LIMIT`` is lowered to it, not refused.
"""

from __future__ import annotations

import re

from ..errors import BadRequest

ENTRY_TYPES = ("candlestick", "line", "quote")
MAX_QUERY_CHARS = 200
MAX_QUERY_TERMS = 8
MAX_LIMIT = 1000

# Words as FTS5's unicode61 tokenizer sees them: letters and digits (underscore is punctuation).
_WORD = re.compile(r"[^\W_]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def check_text(field: str, value: object) -> None:
    """Refuse ``value`` unless it is a non-empty string SQLite can store (no lone surrogates)."""
    if not isinstance(value, str) or not value:
        raise BadRequest(f"{field} must be a non-empty string, got {value!r:.80}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest(f"{field} is not valid text (lone surrogate): {value!r:.80}") from None



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
    """An FTS5 query: every word as a word prefix in symbol, label or categories, and any of
    ``tags`` (a filter's profile tokens) if given.

    Each word is quoted, so nothing the user typed is read as FTS syntax, and words never
    match the tags column.
    """
    parts = []
    if words:
        quoted = " ".join(f'"{w}"*' for w in words)
        parts.append(f"{{name name_label categories}}: ({quoted})")
    if tags:
        parts.append("tags: ({})".format(" OR ".join(f'"{t}"' for t in tags)))
    return " AND ".join(parts)


def check_limit(limit: object) -> int:
    """A positive int limit, lowered to ``MAX_LIMIT``."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0:
        raise BadRequest(f"limit must be a positive integer, got {limit!r:.80}")
    return min(limit, MAX_LIMIT)


#: Scripts written without spaces between words: CJK ideographs, kana, Hangul syllables, Thai,
#: Lao, Khmer, Myanmar. A symbol in them is one long word to the full-text tokenizer.
_UNSPACED = ((0x0E00, 0x0EFF), (0x1000, 0x109F), (0x1780, 0x17FF), (0x3040, 0x30FF),
             (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xAC00, 0xD7AF), (0xF900, 0xFAFF),
             (0x20000, 0x3134F))


def unspaced_script(text: str) -> bool:
    """Whether ``text`` has a character of a script written without spaces (see
    :data:`_UNSPACED`): such a query is also looked for inside words."""
    return any(lo <= ord(ch) <= hi for ch in text if ord(ch) >= 0x0E00 for lo, hi in _UNSPACED)

