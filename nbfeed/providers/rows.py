"""Normalizing what provider authors publish or return into nbfeed rows.

A row leaving a provider process is a flat dict: ``time`` (int epoch ms, UTC), ``symbol``, then
plain fields. Authors may hand us rows with ``date``/``timestamp`` keys, any time form
:func:`nbfeed.timeutil.to_ms` reads, reference-style keys ``<source>-<symbol>-<interval>-<field>``,
numpy scalars, or a pandas DataFrame. This module turns all of those into the one form, so the hub
never has to guess. It runs in the provider's process, where the cost is paid once per row.

Times: a whole number (``int``, numpy integer) is epoch milliseconds, the unit of the row
contract, whatever its size - so bars of 1966-1973, whose ms values are below 1e11, are not
taken for epoch seconds, nor 1970-01-01 (0) for anything else. Anything else (a float such as
``time.time()``, ISO text, a datetime) is read by :func:`~nbfeed.timeutil.to_ms`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..columns import BadRows, Columns
from ..errors import BadRequest, UpstreamError
from ..timeutil import datetimes_to_ms, to_ms

_TIME_KEYS = ("time", "date", "timestamp", "datetime", "t")


def _plain(value: Any) -> Any:
    """numpy scalars -> Python numbers (they pickle and serialize faster and safer)."""
    item = getattr(value, "item", None)
    if item is not None and not isinstance(value, (str, bytes)):
        try:
            return item()
        except (TypeError, ValueError):
            return value
    return value


def row_time_ms(value: Any) -> int:
    """A row's time as epoch ms: whole numbers are ms already (see the module docstring)."""
    value = _plain(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return to_ms(value, "time")


def normalize_row(row: Mapping[str, Any], *, source: str, symbol: str | None,
                  interval: str | None) -> dict:
    """One author row -> an nbfeed row. Raises BadRequest naming what is missing."""
    if not isinstance(row, Mapping):
        raise BadRequest(f"a row must be a dict, got {type(row).__name__}")
    out: dict[str, Any] = {}
    time_value = None
    for key in _TIME_KEYS:
        if key in row:
            time_value = row[key]
            break
    if time_value is None:
        raise BadRequest(f"row has no time (one of {', '.join(_TIME_KEYS)}): {dict(row)!r:.200}")
    out["time"] = row_time_ms(time_value)
    sym = row.get("symbol", symbol)
    if sym is None:
        sym = row.get("name")
    out["symbol"] = sym
    # Reference-style keys are "<source>-<symbol>-<interval>-<field>"; the source part is
    # whatever name the author hard-coded, which need not be the name we registered it under.
    marker = f"-{sym}-{interval}-" if sym is not None and interval is not None else None
    for key, value in row.items():
        if key in _TIME_KEYS or key == "symbol":
            continue
        if marker is not None and marker in key:
            key = key[key.index(marker) + len(marker):]
        elif "-" in key and source and key.startswith(source + "-"):
            # reference form for a symbol/interval we were not told: keep the last part
            key = key.rsplit("-", 1)[-1]
        out[key] = _plain(value)
    return out


def normalize_rows(rows: Any, *, source: str, symbol: str | None = None,
                   interval: str | None = None) -> list[dict]:
    """A row, a list of rows, or a DataFrame -> list of nbfeed rows in the given order."""
    if rows is None:
        return []
    if isinstance(rows, Mapping):
        return [normalize_row(rows, source=source, symbol=symbol, interval=interval)]
    if hasattr(rows, "to_dict") and hasattr(rows, "columns"):
        return _from_frame(rows, source=source, symbol=symbol, interval=interval)
    if isinstance(rows, (str, bytes)) or not isinstance(rows, Iterable):
        raise BadRequest(f"expected a row dict, a list of rows or a DataFrame, got "
                         f"{type(rows).__name__}")
    return [normalize_row(r, source=source, symbol=symbol, interval=interval) for r in rows]


def history_columns(rows: Any, *, source: str, symbol: str,
                    interval: str | None = None) -> Columns:
    """What ``get_history`` returned (rows, a DataFrame) as :class:`~nbfeed.columns.Columns` of
    ``symbol``: normalized like :func:`normalize_rows`, then one array per field."""
    try:
        return Columns.from_rows(normalize_rows(rows, source=source, symbol=symbol,
                                                interval=interval), symbol)
    except BadRows as exc:
        raise UpstreamError(f"get_history({symbol!r}, {interval!r}) returned bad rows: "
                            f"{exc}") from None


def _from_frame(frame: Any, *, source: str, symbol: str | None, interval: str | None) -> list[dict]:
    import pandas as pd

    df = frame
    if not any(k in df.columns for k in _TIME_KEYS):
        if isinstance(df.index, pd.DatetimeIndex):
            df = df.reset_index(names="time")
        else:
            raise BadRequest("DataFrame needs a DatetimeIndex or a time/date/timestamp column")
    for key in _TIME_KEYS:
        if key in df.columns:
            col = df[key]
            if pd.api.types.is_datetime64_any_dtype(col):
                ms, valid = datetimes_to_ms(col)
                # a missing time (NaT) becomes None, which normalize_row refuses by name
                df = df.assign(**{key: [int(t) if ok else None
                                        for t, ok in zip(ms.tolist(), valid.tolist())]})
            break
    return [normalize_row(r, source=source, symbol=symbol, interval=interval)
            for r in df.to_dict("records")]


def reference_message_rows(message: Mapping[str, Any], source: str) -> tuple[str, str, list[dict]]:
    """Rows carried by a reference-app ``send_from`` message.

    The reference form is ``{"action": "write_message", "ws_clients": [...], "source", "name",
    "interval", "args": [json.dumps({"type": "data_update", ..., "data": datapoint(s)})]}``.
    Returns ``(symbol, interval, rows)``. ``ws_clients`` is ignored: the hub routes to everyone
    subscribed to the stream, which is what those clients were.
    """
    import json

    if not isinstance(message, Mapping):
        raise BadRequest(f"send_from takes a dict, got {type(message).__name__}")
    action = message.get("action", "write_message")
    if action != "write_message":
        raise BadRequest(f"send_from: unsupported action {action!r}; only 'write_message'")
    symbol = message.get("name")
    interval = message.get("interval")
    if not isinstance(symbol, str) or not isinstance(interval, str):
        raise BadRequest("send_from: 'name' (symbol) and 'interval' are required strings")
    src = message.get("source") or source
    rows: list[dict] = []
    for arg in message.get("args") or []:
        payload = json.loads(arg) if isinstance(arg, (str, bytes)) else arg
        if not isinstance(payload, Mapping):
            raise BadRequest("send_from: each arg must be a JSON object")
        data = payload.get("data")
        if data is None:
            continue
        items = data if isinstance(data, list) else [data]
        rows.extend(normalize_row(d, source=src, symbol=symbol, interval=interval)
                    for d in items)
    return symbol, interval, rows
