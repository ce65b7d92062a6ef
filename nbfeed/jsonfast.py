"""JSON on nbfeed's hot paths (socket frames, history replies, the kernel's reading of them).

orjson when available (a core dependency: measured 6x faster than the standard library on quote
rows, where float formatting dominates), the standard library otherwise. Both turn NaN and
infinities into ``null``, which browsers can parse, instead of bare ``NaN``.

Hostile text: JSON can spell a lone surrogate (``"\ud800"``), which is not Unicode and cannot
be written as UTF-8. :func:`loads` refuses it with a ``ValueError`` naming where it sits
(``id``, ``rows[3].name``), so input is refused at the door; :func:`dumpb` never fails on one
(it writes U+FFFD instead), so one bad string that got in another way cannot break a reply for
everyone. :func:`lone_surrogate_at` finds one in Python objects that never were JSON.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

#: Deepest nesting :func:`loads` accepts (orjson's own limit; the fallback enforces it too).
MAX_DEPTH = 1024
_SURROGATE = re.compile("[\ud800-\udfff]")

try:
    import orjson
except ImportError:  # pragma: no cover - orjson ships wheels for every common platform
    orjson = None


def nan_to_none(value: Any) -> Any:
    """``None`` for a NaN or infinite float (JSON has neither), else ``value`` unchanged.

    The one place nbfeed decides what a missing number becomes in JSON and in tables.
    """
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _clean(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return nan_to_none(obj)


def lone_surrogate_at(obj: Any, where: str = "") -> str | None:
    """Where the first string (key or value) holding a lone surrogate sits in ``obj`` - ``id``,
    ``rows[3].name``, or ``where`` itself for a bare string - or None when there is none.

    Walks dicts, lists and tuples without recursion, so any depth is safe."""
    stack: list[tuple[Any, str]] = [(obj, where)]
    while stack:
        value, path = stack.pop()
        if isinstance(value, str):
            if _SURROGATE.search(value):
                return path or "the text"
        elif isinstance(value, dict):
            items = []
            for key, item in value.items():
                key_path = f"{path}.{key}" if path else str(key)
                if isinstance(key, str) and _SURROGATE.search(key):
                    return f"a field name in {path or 'the object'}"
                items.append((item, key_path))
            stack.extend(reversed(items))
        elif isinstance(value, (list, tuple)):
            stack.extend((item, f"{path}[{i}]") for i, item in reversed(list(enumerate(value))))
    return None


def _replace_surrogates(obj: Any) -> Any:
    """``obj`` with every lone surrogate written as U+FFFD (only called once dumping failed)."""
    if isinstance(obj, str):
        return _SURROGATE.sub("\ufffd", obj)
    if isinstance(obj, dict):
        return {_replace_surrogates(k): _replace_surrogates(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_replace_surrogates(v) for v in obj]
    return obj


if orjson is not None:
    _OPTS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY

    def dumpb(obj: Any) -> bytes:
        """``obj`` as compact UTF-8 JSON bytes (unknown types via ``str``; lone surrogates as
        U+FFFD). Raises ``ValueError`` for what JSON cannot hold (nesting beyond 254 levels)."""
        try:
            return orjson.dumps(obj, default=str, option=_OPTS)
        except orjson.JSONEncodeError as exc:
            if "surrogates" not in str(exc):
                raise ValueError(f"cannot be written as JSON: {exc}") from None
        try:
            return orjson.dumps(_replace_surrogates(obj), default=str, option=_OPTS)
        except (orjson.JSONEncodeError, RecursionError) as exc:
            raise ValueError(f"cannot be written as JSON: {exc}") from None

else:  # pragma: no cover

    def dumpb(obj: Any) -> bytes:
        try:
            try:
                text = json.dumps(obj, separators=(",", ":"), allow_nan=False, default=str)
            except ValueError:
                text = json.dumps(_clean(obj), separators=(",", ":"), default=str)
            return text.encode("utf-8", "surrogateescape")
        except (RecursionError, UnicodeEncodeError):
            return dumpb(_replace_surrogates(obj))


def dumps(obj: Any) -> str:
    """``obj`` as a compact JSON string."""
    return dumpb(obj).decode()


def _stdlib_loads(data: str | bytes | bytearray | memoryview) -> Any:
    if isinstance(data, memoryview):
        data = bytes(data)
    try:
        return json.loads(data, parse_constant=_no_constant)
    except RecursionError:
        raise ValueError(f"nesting deeper than {MAX_DEPTH} levels") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8: {exc.reason} at byte {exc.start}") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _refuse_surrogates(data: str | bytes | bytearray | memoryview) -> ValueError:
    """The error for a document orjson refused over a lone surrogate, naming where it is."""
    try:
        where = lone_surrogate_at(_stdlib_loads(data))
    except ValueError as exc:
        return exc
    return ValueError(f"{where or 'a string'}: text with a lone surrogate (like \\ud800) is "
                      "not valid Unicode")


if orjson is not None:

    def loads(data: str | bytes | bytearray | memoryview) -> Any:
        """Parse JSON text or UTF-8 bytes. Raises ``ValueError`` (saying why, briefly) for
        anything that is not JSON: NaN literals, invalid UTF-8, nesting deeper than
        ``MAX_DEPTH``, and lone surrogates (naming the field that holds one)."""
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            reason = str(exc)
            if "surrogate" in reason:
                raise _refuse_surrogates(data) from None
            if "depth limit" in reason or "recursion" in reason.lower():
                raise ValueError(f"nesting deeper than {MAX_DEPTH} levels") from None
            raise ValueError(reason[:200]) from None

else:  # pragma: no cover

    def loads(data: str | bytes | bytearray | memoryview) -> Any:
        value = _stdlib_loads(data)
        where = lone_surrogate_at(value)
        if where is not None:
            raise _refuse_surrogates(data)
        return value
