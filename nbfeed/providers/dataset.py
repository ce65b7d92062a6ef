"""Validation of the symbol lists providers return from ``get_dataset()``.

Entries follow the reference app's format (``source``, ``name``, ``name_label``, ``type``,
``categories``, ``intervals``, ``outputs`` with ``y_axis``) plus ``type: "quote"`` for quote/tick
streams. A bad entry is reported naming the provider, the entry and the field, because the author
has to find it in what may be thousands of generated entries.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import BadRequest
from ..intervals import INTERVALS, TICK

ENTRY_TYPES = ("candlestick", "line", "quote")
#: The outputs of a candlestick entry (also the default when an entry names none).
CANDLE_OUTPUTS = [
    {"name": "open", "y_axis": "price"}, {"name": "high", "y_axis": "price"},
    {"name": "low", "y_axis": "price"}, {"name": "close", "y_axis": "price"},
    {"name": "volume", "y_axis": "volume"},
]
_QUOTE_OUTPUTS = [
    {"name": f, "y_axis": "volume" if f == "volume" else "price"}
    for f in ("price", "prev_close", "change", "change_percent", "volume", "bid", "ask")
]
MAX_NAME = 200


def validate_entry(provider: str, index: int, entry: Any) -> dict:
    """Return a normalized copy of one dataset entry or raise BadRequest naming the problem."""

    def bad(field: str, why: str) -> BadRequest:
        label = entry.get("name") if isinstance(entry, Mapping) else None
        where = f"entry {index}" + (f" ({label!r})" if isinstance(label, str) else "")
        return BadRequest(f"provider {provider!r}: {where}: field {field!r} {why}")

    if not isinstance(entry, Mapping):
        raise BadRequest(f"provider {provider!r}: entry {index} must be a dict, "
                         f"got {type(entry).__name__}")
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip():
        raise bad("name", "must be a non-empty string")
    if len(name) > MAX_NAME or any(ord(c) < 32 for c in name):
        raise bad("name", f"must be at most {MAX_NAME} printable characters")
    # ``source`` is whatever name the provider was registered under (one class may serve
    # several sources), so an entry's own value is replaced rather than checked.
    kind = entry.get("type", "candlestick")
    if kind not in ENTRY_TYPES:
        raise bad("type", f"is {kind!r}; expected one of {', '.join(ENTRY_TYPES)}")
    label = entry.get("name_label", name)
    if not isinstance(label, str):
        raise bad("name_label", "must be a string")
    categories = entry.get("categories", [])
    if isinstance(categories, str):
        categories = [categories]
    if not isinstance(categories, list) or not all(isinstance(c, str) for c in categories):
        raise bad("categories", "must be a list of strings")
    default_intervals = [TICK] if kind == "quote" else ["1d"]
    intervals = entry.get("intervals", default_intervals)
    if not isinstance(intervals, list) or not intervals:
        raise bad("intervals", "must be a non-empty list")
    for iv in intervals:
        if iv not in INTERVALS:
            raise bad("intervals", f"has unknown interval {iv!r}; valid: {', '.join(INTERVALS)}")
    outputs = entry.get("outputs")
    if outputs is None:
        outputs = _QUOTE_OUTPUTS if kind == "quote" else (
            CANDLE_OUTPUTS if kind == "candlestick" else [{"name": "value", "y_axis": "value"}])
    if not isinstance(outputs, list):
        raise bad("outputs", "must be a list of {name, y_axis}")
    norm_outputs = []
    for out in outputs:
        if not isinstance(out, Mapping) or not isinstance(out.get("name"), str):
            raise bad("outputs", f"has an item without a string 'name': {out!r:.80}")
        norm_outputs.append({"name": out["name"], "y_axis": str(out.get("y_axis", "price"))})
    result = dict(entry)
    result.update(source=provider, name=name, name_label=label, type=kind,
                  categories=list(categories), intervals=list(intervals), outputs=norm_outputs)
    return result


def validate_entries(provider: str, entries: Any) -> list[dict]:
    """Validate a whole ``get_dataset()`` result; duplicates by name are an error too."""
    if entries is None:
        return []
    if isinstance(entries, (str, bytes, Mapping)) or not hasattr(entries, "__iter__"):
        raise BadRequest(f"provider {provider!r}: get_dataset() must return a list of entries, "
                         f"got {type(entries).__name__}")
    out = []
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        norm = validate_entry(provider, i, entry)
        if norm["name"] in seen:
            raise BadRequest(f"provider {provider!r}: entry {i}: duplicate name {norm['name']!r}")
        seen.add(norm["name"])
        out.append(norm)
    return out
