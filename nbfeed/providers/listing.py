"""A provider's dataset as the catalog stores it: checked, JSON-encoded, in catalog order.

``prepare_entries`` turns ``Provider.get_dataset()`` entries (after
``nbfeed.providers.dataset.validate_entries``, or as they come) into a ``Listing``: one entry per
distinct name (the later entry wins), as columns in catalog order (shortest symbol first), each
with its JSON document. A provider's process runs it on its own listing
(``nbfeed.providers.runtime``, the ``dataset`` request) so the hub receives a few lists of text
and only writes them (``nbfeed.hub.catalog_populate``); the hub checks what arrives with
``check_listing``. The catalog prepares entries handed over as dicts itself. This module lives
with the providers, not the hub, so a provider's process never imports the hub to make one.

It refuses only what would break the catalog or could never be asked for (missing or over-long
name, wrong field types, not JSON text, an oversized entry); full validation is
``validate_entries``. It is written for speed (about 4 us per entry: orjson writes the
documents, the garbage collector is paused) and calls ``pause`` regularly so that, run in the
hub, a search thread never waits long for the GIL.

Failure behaviour: every refusal is ``nbfeed.errors.BadRequest`` naming the entry (by its name,
or its index when it has no usable name) and its source, showing the bad value cut to a
readable length and what would be accepted. Nothing here touches a database.
"""

from __future__ import annotations

import gc
import json
import reprlib
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import chain
from operator import itemgetter

import orjson

from ..errors import BadRequest

__all__ = ["Listing", "prepare_entries", "check_listing", "encode_entry", "MAX_NAME_CHARS",
           "MAX_ENTRY_BYTES", "PAUSE_EVERY"]

#: A symbol longer than this could never be asked for (``nbfeed.hub.requests.MAX_NAME_CHARS``).
MAX_NAME_CHARS = 200
#: An entry whose JSON document (UTF-8) is longer than this many bytes is refused: a symbol's
#: description, not a payload.
MAX_ENTRY_BYTES = 64 * 1024
#: ``prepare_entries`` calls its ``pause`` this often (entries): about a millisecond of work.
PAUSE_EVERY = 256

# Bad values in error messages: short, and safe for deeply nested or huge values.
_SHOWN = reprlib.Repr()
_SHOWN.maxlevel, _SHOWN.maxstring, _SHOWN.maxother, _SHOWN.maxdict = 3, 80, 80, 8
# One encoder for all entries: json.dumps with options builds a new one per call.
_JSON = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def _not_json(value: object) -> object:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _fast_encoder() -> Callable[[object], str]:
    """``_JSON.encode`` without its per-call cost (a new C encoder each call) and without its
    circular-reference bookkeeping: a cycle ends in RecursionError, which ``prepare_entries``
    hands to ``_refusal`` (whose ``_JSON`` names it)."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # a Python without the _json accelerator
        return _JSON.encode
    encoder = make(None, _not_json, json.encoder.encode_basestring, None, ":", ",",
                   False, False, False)
    join = "".join
    return lambda value: join(encoder(value, 0))


_STRICT = _fast_encoder()
_ORJSON = orjson.dumps


def encode_entry(entry: object) -> bytes:
    """``entry`` as UTF-8 JSON, by the standard library's rules; raises for what is not JSON.

    orjson writes it (a tenth of the time of the standard library's encoder, most of the
    Python work of populating), but orjson and JSON differ at the edges, and the standard
    library decides: what orjson refuses (keys that are not text, ints beyond 64 bits,
    nesting past 254) is encoded by the standard library if it can; what orjson writes as
    ``null`` (NaN, infinities) the standard library refuses, so a document containing
    ``null`` is checked by it too. Lone surrogates are refused by both (UnicodeEncodeError).
    """
    try:
        doc = _ORJSON(entry)
    except TypeError:  # orjson.JSONEncodeError is one
        return _STRICT(entry).encode()
    if b"null" in doc:
        _STRICT(entry)  # ValueError for NaN or infinity; the null was a real None otherwise
    return doc



@dataclass(slots=True)
class Listing:
    """One source's entries ready to write, as columns in catalog order.

    Built by ``prepare_entries`` - in the provider's own process for a live provider, so the
    hub receives a handful of lists of strings instead of one dict per symbol and spends no
    time checking or JSON-encoding them. Entry ``i`` is ``names[i]`` (``names_lc[i]`` in lower
    case), ``labels[i]``, ``categories[i]`` (its categories joined by spaces, for full-text
    search), ``docs[i]`` (the entry as JSON text) and ``profiles[profile_of[i]]``. Entries are
    distinct by name and sorted by ``(len(name_lc), name_lc, name)``: shortest symbol first,
    the catalog order. A profile is ``(type, lower-case categories)``; the entries of a source
    share a handful, and the catalog filters by type and category through them.
    """

    source: str
    names: list[str]
    names_lc: list[str]
    labels: list[str]
    categories: list[str]
    docs: list[bytes]
    profile_of: list[int]
    profiles: list[tuple[str, tuple[str, ...]]]

    def __len__(self) -> int:
        return len(self.names)

    def __reduce__(self) -> tuple:
        """Pickled as joined texts, a few thousand entries a piece: the form it crosses the
        provider's pipe in.

        Unpickled as lists of strings, a listing is one long call that holds the GIL (130 ms
        for 200k entries, in the hub's reader thread: every search and stream of the hub
        waited, and 930 ms when listings came as dicts). Each piece here is split by a Python
        call of its own, between which other threads get the GIL: a few milliseconds each.
        """
        n = len(self.names)
        return (_unpack, (self.source, *(_pieces(column, n) for column in (
            self.names, self.names_lc, self.labels, self.categories, self.docs)),
            array("l", self.profile_of).tobytes(), self.profiles))


#: Entries per pickled piece of a listing's column: 4 MB of JSON documents at most (64 KiB
#: each); a few milliseconds to split.
_PIECE = 8192


class _Joined:
    """Texts (or bytes) joined by NUL for pickling; unpickles as the list of them."""

    __slots__ = ("items",)

    def __init__(self, items: list) -> None:
        self.items = items

    def __reduce__(self) -> tuple:
        nul = "\0" if self.items and isinstance(self.items[0], str) else b"\0"
        joined = nul.join(self.items)
        if joined.count(nul) != len(self.items) - 1:  # a text holds a NUL itself: as it is
            return (list, (self.items,))
        return (_split, (joined, nul))


def _split(joined: str | bytes, nul: str | bytes) -> list:
    # A Python call per piece, not a C one: the unpickling thread gives the GIL up between.
    return joined.split(nul)


def _pieces(column: list, n: int) -> list[_Joined]:
    return [_Joined(column[i:i + _PIECE]) for i in range(0, n, _PIECE)]


def _unpack(source: str, names: list[list[str]], names_lc: list[list[str]],
            labels: list[list[str]], categories: list[list[str]], docs: list[list[bytes]],
            profile_of: bytes, profiles: list) -> Listing:
    def whole(pieces: list[list]) -> list:
        return list(chain.from_iterable(pieces))

    return Listing(source, whole(names), whole(names_lc), whole(labels), whole(categories),
                   whole(docs), array("l", profile_of).tolist(), profiles)


def prepare_entries(
    source: str, entries: object, pause: Callable[[], None] | None = None
) -> Listing:
    """Check ``entries`` in one pass; one entry per name (the later one wins), in catalog order.

    Full validation is ``nbfeed.providers.dataset.validate_entries``; this only refuses what would
    break the catalog itself or could not be a symbol: a missing or blank name, a name longer
    than ``MAX_NAME_CHARS``, wrong field types, an entry naming another source, an entry that is
    not JSON text (lone surrogates, NaN, sets) or whose JSON is longer than ``MAX_ENTRY_BYTES``.

    ``pause`` is called every ``PAUSE_EVERY`` entries and between sorting steps: the catalog
    passes a call that lets other threads (searches) take the GIL, so a big listing being
    prepared on a worker thread never holds the interpreter for more than about a millisecond.
    """
    if isinstance(entries, (str, bytes, Mapping)) or not isinstance(entries, Iterable):
        raise BadRequest(f"entries of {source!r} must be a list of dicts, got {entries!r:.80}")
    with _collector_paused():
        return _prepare(source, entries, pause)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off while a listing is prepared, back on after.

    Every row is a new tuple the collector tracks; every 700 of them start a collection, and
    every so often one walks the whole heap - millions of objects in a process holding a big
    listing: two fifths of the time of preparing 200k entries. Nothing made here forms a
    cycle, so nothing is left for the collector; one that was already off stays off.
    """
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


def _prepare(source: str, entries: Iterable, pause: Callable[[], None] | None) -> Listing:
    encode = encode_entry
    # The document of an entry without "source" gets it first, spliced in as text: cheaper
    # than copying the entry into a new dict.
    with_source = b'{"source":' + encode(source) + b","
    missing = object()
    # categories text -> its lower-case categories, sorted and distinct; few distinct lists.
    lowered: dict[str, tuple[str, ...]] = {}
    by_name: dict[str, tuple] = {}
    for index, entry in enumerate(entries):
        if pause is not None and not index % PAUSE_EVERY:
            pause()
        # The fast path: plain types, checked with as few operations as possible; anything
        # unusual goes to _refusal, which says precisely what is wrong (or accepts it).
        try:
            name = entry["name"]
            label = entry.get("name_label", "")
            kind = entry.get("type", "")
            categories = entry.get("categories", ())
            given = entry.get("source", missing)
            text = " ".join(categories)  # TypeError unless every category is a string
            doc = encode(entry)
        except Exception:  # whatever it is, _refusal names the actual problem
            raise _refusal(source, index, entry) from None
        if (type(name) is not str or type(label) is not str or type(kind) is not str
                or type(categories) not in (list, tuple) or not 0 < len(name) <= MAX_NAME_CHARS
                or not name.strip() or len(doc) > MAX_ENTRY_BYTES
                or (given is not missing and not (type(given) is str and given == source))):
            raise _refusal(source, index, entry)
        if given is missing:
            doc = with_source + doc[1:]
        lower = lowered.get(text)
        if lower is None:
            lower = lowered[text] = tuple(sorted({c.lower() for c in categories}))
        name_lc = name.lower()
        by_name[name] = (len(name_lc), name_lc, name, label, text, doc, (kind, lower))
    rows = _catalog_order(by_name.values(), pause)
    del by_name
    profile_ids: dict[tuple[str, tuple[str, ...]], int] = {}
    profile_of = [profile_ids.setdefault(row[6], len(profile_ids)) for row in rows]
    if not rows:
        return Listing(source, [], [], [], [], [], [], [])
    _, names_lc, names, labels, texts, docs, _ = map(list, zip(*rows))
    return Listing(source, names, names_lc, labels, texts, docs, profile_of, list(profile_ids))


def check_listing(source: str, listing: object) -> Listing:
    """``listing`` if it has the shape of a ``Listing`` of ``source``, else ``BadRequest``.

    For listings made in another process (a provider's): columns of one length, profiles that
    exist. The texts themselves are not looked at one by one - that took 70 ms per 120k
    entries, in C calls that kept searches waiting for the GIL - because they were made by
    ``prepare_entries`` and arrived by pickle, which a process able to forge them could use to
    run code in the hub anyway. A text of the wrong type still fails the write (SQLite
    refuses a missing value), which rolls back and keeps the old list.
    """
    if not isinstance(listing, Listing) or listing.source != source:
        raise BadRequest(f"not a listing of {source!r}: {_SHOWN.repr(listing)}")
    n = len(listing.names)
    for column in (listing.names, listing.names_lc, listing.labels, listing.categories,
                   listing.docs, listing.profile_of):
        if type(column) is not list or len(column) != n:
            raise BadRequest(f"malformed listing of {source!r}: its columns are not lists of"
                             f" one length ({n} names)")
    profiles = listing.profiles
    if (type(profiles) is not list
            or (n and not 0 <= min(listing.profile_of) <= max(listing.profile_of) < len(profiles))
            or not all(type(p) is tuple and len(p) == 2 and type(p[0]) is str
                       and type(p[1]) is tuple and all(type(c) is str for c in p[1])
                       for p in profiles)):
        raise BadRequest(f"malformed listing of {source!r}: bad profiles")
    return listing


def _catalog_order(rows: Iterable[tuple], pause: Callable[[], None] | None) -> list[tuple]:
    """``rows`` sorted by (name_len, name_lc, name), in small sorts.

    One ``sorted()`` of 100k rows holds the GIL for a quarter second; sorting per symbol length
    and first letter keeps each sort to a few thousand rows, with ``pause`` between them.
    """
    buckets: dict[tuple, list[tuple]] = {}
    for row in rows:
        key = (row[0], row[1][:1])
        bucket = buckets.get(key)
        if bucket is None:
            buckets[key] = [row]
        else:
            bucket.append(row)
    ordered: list[tuple] = []
    by_name, by_name_lc = itemgetter(2), itemgetter(1)
    for key in sorted(buckets):
        bucket = buckets[key]
        # By (name_lc, name): two stable sorts on one string each take a third of the time of
        # one sort comparing tuples (the second finds the rows almost in order already).
        bucket.sort(key=by_name)
        bucket.sort(key=by_name_lc)
        ordered += bucket
        if pause is not None and len(bucket) > PAUSE_EVERY:
            pause()
    return ordered


def _refusal(source: str, index: int, entry: object) -> BadRequest:
    """The error for an entry the fast path of ``prepare_entries`` did not accept."""
    if not isinstance(entry, Mapping):
        return BadRequest(
            f"entry {index} of {source!r} must be a dict, got {_SHOWN.repr(entry)}")
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip():
        return BadRequest(f"entry {index} of {source!r}: 'name' must be a non-empty string, "
                          f"got {_SHOWN.repr(name)}")
    label = entry.get("name_label", "")
    kind = entry.get("type", "")
    categories = entry.get("categories", [])
    problem = (
        f"'name' is longer than {MAX_NAME_CHARS} characters ({len(name)})"
        if len(name) > MAX_NAME_CHARS
        else "names another source" if entry.get("source", source) != source
        else "'name_label' is not a string" if not isinstance(label, str)
        else "'type' is not a string" if not isinstance(kind, str)
        else "'categories' is not a list of strings"
        if not isinstance(categories, (list, tuple))
        or not all(isinstance(c, str) for c in categories)
        else None
    )
    if problem is None:
        try:
            doc = _JSON.encode(entry).encode("utf-8")  # lone surrogates cannot be stored
        except (TypeError, ValueError, RecursionError) as exc:  # UnicodeEncodeError: ValueError
            problem = f"is not JSON text ({exc})"
        else:
            problem = (f"is {len(doc)} bytes as JSON; at most {MAX_ENTRY_BYTES} are accepted"
                       if len(doc) > MAX_ENTRY_BYTES else "is not a plain dict of JSON values")
    return BadRequest(f"entry {_SHOWN.repr(name)} of {source!r} {problem}: {_SHOWN.repr(entry)}")
