"""Column definitions of a LiveGrid: nbfeed's own form and OpenBB Workspace's ``columnsDefs``.

A column is one field of the stream's rows shown (or kept hidden) in the grid. Three spellings
are accepted and normalised to :class:`Column`:

- a field name: ``"price"`` (known quote/candle fields get a sensible number format);
- nbfeed's own form: ``Column("price", flash=True, fmt=",.2f")`` or the same as a dict
  ``{"field": "price", "flash": True, "fmt": ",.2f"}``;
- a Workspace ``columnsDefs`` entry (recognised by ``headerName`` or any Workspace-only key):
  ``{"field": "price", "headerName": "Price", "renderFn": "showCellChange",
  "renderFnParams": {"colorValueKey": "change"}, "enableCellChangeWs": False, ...}``.

Workspace mapping (see ``docs/WORKSPACE.md``):

==========================  ===============================================================
Workspace                   LiveGrid
==========================  ===============================================================
``headerName``              ``label`` (the header text; transforms use it as column name)
``enableCellChangeWs``      ``live`` (False: the cell keeps the first value it got)
``renderFn: showCellChange``  ``flash=True`` (green up / red down, fades after ``flash_ms``);
                            with ``colorValueKey`` the colour follows that field's sign
``renderFn: greenRed``      ``green_red=True`` (text colour by sign; of ``colorValueKey``
                            when given, else of the cell itself)
``titleCase, hoverCard,``   accepted, not drawn
``cellOnClick, columnColor``
``formatterFn``             ``int`` -> ``,.0f``; ``none`` -> no format; ``percent`` -> suffix %;
                            ``normalized`` -> x100; ``normalizedPercent`` -> x100 and %;
                            ``dateToYear`` -> ``%Y``
``decimalPlaces`` 0-6       fixed decimals (``,.Nf``)
``prefix``/``suffix``       text around the formatted number
``cellDataType``            ``kind``: number / text / time (``date``, ``dateString``)
``width``                   column width in pixels
``hide``                    kept in the grid's data (usable as ``colorValueKey``), not shown
``align``                   horizontal alignment
others (``pinned``,         accepted and ignored
``minWidth``...)
==========================  ===============================================================

Every bad value raises :class:`nbfeed.errors.BadRequest` naming the column, the key and what
would be accepted.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

from ..errors import BadRequest
from ..intervals import interval_ms, is_bar
from ..openbb.schema import COLUMN_KEYS, FORMATTER_FNS, MAX_DECIMALS, RENDER_FNS

KINDS = ("number", "text", "time", "age")
_WORKSPACE_KEYS = COLUMN_KEYS
_WORKSPACE_ONLY_KEYS = _WORKSPACE_KEYS - {"field", "prefix", "suffix", "width", "hide", "align"}
_CELL_DATA_TYPES = {"text": "text", "number": "number", "boolean": "text", "date": "time",
                    "dateString": "time", "object": "text"}
_ALIGNS = ("left", "center", "right")

# d3-format specifier: [[fill]align][sign][symbol][0][width][,][.precision][~][type]
_D3_FORMAT = re.compile(r"^(?:.?[<>=^])?[-+( ]?[$#]?0?\d*,?(?:\.\d+)?~?[eEfgGrsPpdoxXbcn%]?$")

AUTO_FMT = "auto"
"""Number format of prices: decimals by the row's tick size (the decimals its prices carry,
at most five significant digits, at least two decimals), with thousands separators. So EURUSD
shows 1.0845 and AAPL 187.12 in the same column, and a cell only changes when its price does."""

# Field defaults used when a known quote/candle field is named without options.
_PRICE = {"fmt": AUTO_FMT}
_FIELD_DEFAULTS: dict[str, dict[str, Any]] = {
    "symbol": {"kind": "text", "label": "Symbol"},
    "time": {"kind": "time", "label": "Time"},
    "price": {**_PRICE, "label": "Price"},
    "prev_close": {**_PRICE, "label": "Prev close"},
    "change": {**_PRICE, "label": "Change", "green_red": True},
    "change_percent": {"fmt": ",.2f", "suffix": "%", "label": "Change %", "green_red": True},
    "bid": {**_PRICE, "label": "Bid"},
    "ask": {**_PRICE, "label": "Ask"},
    "volume": {"fmt": ",.0f", "label": "Volume", "flash": False},
    "age": {"kind": "age", "label": "Age"},
    "open": {**_PRICE, "label": "Open"},
    "high": {**_PRICE, "label": "High"},
    "low": {**_PRICE, "label": "Low"},
    "close": {**_PRICE, "label": "Close"},
}
QUOTE_COLUMNS = ("symbol", "price", "change", "change_percent", "bid", "ask", "volume", "time")
CANDLE_COLUMNS = ("symbol", "time", "open", "high", "low", "close", "volume")
QUOTE_FIELDS = frozenset({"time", "symbol", "price", "prev_close", "change", "change_percent",
                          "volume", "bid", "ask"})
CANDLE_FIELDS = frozenset({"time", "symbol", "open", "high", "low", "close", "volume"})


@dataclass(frozen=True)
class Column:
    """One grid column. Only ``field`` is required; ``None`` means "pick the default".

    - ``field``: the row key it shows; ``label``: header text (default: the field).
    - ``live``: False freezes the cell at the first value it receives.
    - ``flash``: paint the cell green when it rose, red when it fell, fading after the grid's
      ``flash_ms`` (default: on for live numbers, off for key fields, times and volume).
    - ``flash_sign``: colour the flash by the sign of this other field instead of the
      direction of the change (Workspace ``showCellChange`` + ``colorValueKey``).
    - ``green_red``: text green when positive, red when negative; ``sign_field`` picks the
      field whose sign decides (default: the cell itself).
    - ``fmt``: d3-format specifier for numbers (``",.2f"``), d3-time-format for times
      (``"%H:%M:%S"``); ``prefix``/``suffix`` wrap the formatted text; ``scale`` multiplies
      the number before formatting.
    - ``kind``: ``number`` (float), ``text``, ``time`` (epoch ms, shown in the grid's
      timezone, UTC by default) or ``age`` (the column named ``age``: seconds since the row's
      ``time``, counted in the browser, so it keeps ticking while no update arrives).
    - ``width`` in pixels; ``hide`` keeps the field in the grid's data but off screen.
    """

    field: str
    label: str | None = None
    live: bool = True
    flash: bool | None = None
    flash_sign: str | None = None
    green_red: bool = False
    sign_field: str | None = None
    fmt: str | None = None
    prefix: str = ""
    suffix: str = ""
    scale: float = 1.0
    kind: str | None = None
    width: int | None = None
    hide: bool = False
    align: str | None = None

    @property
    def header(self) -> str:
        """The column's name in the browser (its header text)."""
        return self.label if self.label is not None else self.field


_COLUMN_KEYS = frozenset(f.name for f in fields(Column))
_NBFEED_ALIASES = {"name": "field"}


def default_column_names(is_bar: bool, latest_columns: Sequence[str] = ()) -> list[str]:
    """Columns shown when the user names none: the stream's own fields, else the standard set."""
    if latest_columns:
        first = [c for c in ("symbol", "time")[: 2 if is_bar else 1] if c in latest_columns]
        last = [] if is_bar or "time" not in latest_columns else ["time"]
        return first + [c for c in latest_columns if c not in first + last] + last
    return list(CANDLE_COLUMNS if is_bar else QUOTE_COLUMNS)


def standard_fields(is_bar: bool) -> frozenset[str]:
    """Fields nbfeed's row contract defines for candle or quote streams (docs/internals.md)."""
    return CANDLE_FIELDS if is_bar else QUOTE_FIELDS


def parse_columns(
    specs: Iterable[str | Mapping[str, Any] | Column],
    *,
    key_fields: Sequence[str],
    known_fields: Iterable[str] | None = None,
    time_fmt: str = "%H:%M:%S",
) -> list[Column]:
    """Normalise column specs to :class:`Column` objects with every default resolved.

    ``key_fields`` are the row id fields (never live-updated, never flashed). ``known_fields``,
    when given, is the set of fields the stream is known to send; a column naming anything else
    is rejected (typos would otherwise show an empty column forever). The returned list keeps
    the user's order; key fields the user did not list are appended as hidden columns so the
    grid's data always carries the row id.
    """
    if isinstance(specs, (str, bytes, Mapping, Column)):
        raise BadRequest(
            f"columns must be a list of column names or definitions, got {_short(specs)}"
        )
    try:
        raw = list(specs)
    except TypeError:
        raise BadRequest(
            f"columns must be a list of column names or definitions, got {_short(specs)}"
        ) from None
    if not raw:
        raise BadRequest("columns is empty; name at least one field, e.g. ['symbol', 'price']")
    known = None if known_fields is None else set(known_fields) | set(key_fields)
    out: list[Column] = []
    for i, spec in enumerate(raw):
        col = _one_column(spec, i)
        if known is not None and col.field not in known:
            raise BadRequest(
                f"unknown column {col.field!r}: this stream's rows have "
                f"{', '.join(sorted(known))}"
            )
        out.append(col)
    seen_fields: set[str] = set()
    for col in out:
        if col.field in seen_fields:
            raise BadRequest(f"column {col.field!r} is listed twice")
        seen_fields.add(col.field)
    for key in key_fields:
        if key not in seen_fields:
            out.append(Column(key, hide=True))
            seen_fields.add(key)
    resolved = [_resolve(col, key_fields, time_fmt) for col in out]
    _check_references(resolved)
    return resolved


def _one_column(spec: object, index: int) -> Column:
    if isinstance(spec, Column):
        col = spec
    elif isinstance(spec, str):
        col = Column(spec)
    elif isinstance(spec, Mapping):
        col = _from_workspace(spec) if _is_workspace(spec) else _from_dict(spec)
    else:
        raise BadRequest(
            f"columns[{index}]: expected a field name, a dict or nbfeed.Column, got {_short(spec)}"
        )
    _check_column(col)
    return col


def _is_workspace(spec: Mapping[str, Any]) -> bool:
    return any(key in _WORKSPACE_ONLY_KEYS for key in spec)


def _from_dict(spec: Mapping[str, Any]) -> Column:
    values = {_NBFEED_ALIASES.get(k, k): v for k, v in spec.items()}
    name = values.get("field", "?")
    unknown = sorted(str(k) for k in values if k not in _COLUMN_KEYS)
    if unknown:
        raise BadRequest(
            f"column {name!r}: unknown key(s) {', '.join(map(repr, unknown))}; accepted: "
            f"{', '.join(sorted(_COLUMN_KEYS))} (or Workspace columnsDefs keys)"
        )
    if "field" not in values:
        raise BadRequest(f"column definition {_short(dict(spec))} has no 'field'")
    return Column(**values)


def _from_workspace(spec: Mapping[str, Any]) -> Column:
    name = spec.get("field")
    if not isinstance(name, str) or not name:
        raise BadRequest(f"Workspace column {_short(dict(spec))} needs a 'field' (a string)")
    unknown = sorted(str(k) for k in spec if k not in _WORKSPACE_KEYS)
    if unknown:
        raise BadRequest(
            f"column {name!r}: unknown Workspace key(s) {', '.join(map(repr, unknown))}; "
            f"accepted: {', '.join(sorted(_WORKSPACE_KEYS))}"
        )
    opts: dict[str, Any] = {"field": name}
    if "headerName" in spec:
        opts["label"] = _text(spec["headerName"], name, "headerName")
    if "enableCellChangeWs" in spec:
        opts["live"] = _flag(spec["enableCellChangeWs"], name, "enableCellChangeWs")
    if "hide" in spec:
        opts["hide"] = _flag(spec["hide"], name, "hide")
    if "width" in spec:
        opts["width"] = spec["width"]
    if "align" in spec:
        opts["align"] = spec["align"]
    if "prefix" in spec:
        opts["prefix"] = _text(spec["prefix"], name, "prefix")
    if "suffix" in spec:
        opts["suffix"] = _text(spec["suffix"], name, "suffix")
    if "cellDataType" in spec:
        cdt = spec["cellDataType"]
        if cdt not in _CELL_DATA_TYPES:
            raise BadRequest(
                f"column {name!r}: unknown cellDataType {cdt!r}; accepted: "
                f"{', '.join(_CELL_DATA_TYPES)}"
            )
        opts["kind"] = _CELL_DATA_TYPES[cdt]
    params = spec.get("renderFnParams") or {}
    if not isinstance(params, Mapping):
        raise BadRequest(f"column {name!r}: renderFnParams must be an object, got {_short(params)}")
    color_key = params.get("colorValueKey")
    if color_key is not None and not (isinstance(color_key, str) and color_key):
        raise BadRequest(
            f"column {name!r}: renderFnParams.colorValueKey must be a field name, "
            f"got {_short(color_key)}"
        )
    render_fns = _render_fns(spec.get("renderFn"), name)
    # Workspace highlights only where showCellChange is asked for.
    opts["flash"] = "showCellChange" in render_fns
    if opts["flash"] and color_key:
        opts["flash_sign"] = color_key
    if "greenRed" in render_fns:
        opts["green_red"] = True
        opts["sign_field"] = color_key
    opts.update(_workspace_format(spec, name))
    return Column(**opts)


def _render_fns(value: object, name: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        items = [part.strip() for part in value.split(",") if part.strip()]
    elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        items = list(value)
    else:
        raise BadRequest(
            f"column {name!r}: renderFn must be a string, a comma list or a list of strings, "
            f"got {_short(value)}"
        )
    for item in items:
        if item not in RENDER_FNS:
            raise BadRequest(
                f"column {name!r}: unknown renderFn {item!r}; accepted: "
                f"{', '.join(sorted(RENDER_FNS))}"
            )
    return items


def _workspace_format(spec: Mapping[str, Any], name: str) -> dict[str, Any]:
    places = spec.get("decimalPlaces")
    if places is not None and (
        isinstance(places, bool) or not isinstance(places, int)
        or not 0 <= places <= MAX_DECIMALS
    ):
        raise BadRequest(
            f"column {name!r}: decimalPlaces must be an integer 0-{MAX_DECIMALS}, "
            f"got {_short(places)}"
        )
    formatter = spec.get("formatterFn")
    if formatter is not None and formatter not in FORMATTER_FNS:
        raise BadRequest(
            f"column {name!r}: unknown formatterFn {_short(formatter)}; accepted: "
            f"{', '.join(sorted(FORMATTER_FNS))}"
        )
    fixed = f",.{places}f" if places is not None else None
    out: dict[str, Any] = {}
    if formatter == "int":
        out["fmt"] = ",.0f"
    elif formatter == "none":
        out["fmt"] = ""
    elif formatter == "percent":
        out["fmt"] = fixed or ",.2f"
        out["suffix"] = str(spec.get("suffix", "")) + "%"
    elif formatter == "normalized":
        out["fmt"] = fixed or ",.2f"
        out["scale"] = 100.0
    elif formatter == "normalizedPercent":
        out["fmt"] = f".{places if places is not None else 2}%"
    elif formatter == "dateToYear":
        out["fmt"] = "%Y"
        out["kind"] = "time"
    elif fixed is not None:
        out["fmt"] = fixed
    return out


def _check_column(col: Column) -> None:
    name = col.field
    if not isinstance(name, str) or not name or len(name) > 200:
        raise BadRequest(f"column field must be a non-empty string, got {_short(name)}")
    if col.label is not None:
        _text(col.label, name, "label")
    for key in ("live", "green_red", "hide"):
        _flag(getattr(col, key), name, key)
    if col.flash is not None:
        _flag(col.flash, name, "flash")
    for key in ("flash_sign", "sign_field"):
        value = getattr(col, key)
        if value is not None and not (isinstance(value, str) and value):
            raise BadRequest(f"column {name!r}: {key} must be a field name, got {_short(value)}")
    if col.kind is not None and col.kind not in KINDS:
        raise BadRequest(
            f"column {name!r}: unknown kind {col.kind!r}; accepted: {', '.join(KINDS)}"
        )
    if col.fmt is not None and (not isinstance(col.fmt, str) or len(col.fmt) > 64):
        raise BadRequest(f"column {name!r}: fmt must be a short string, got {_short(col.fmt)}")
    _text(col.prefix, name, "prefix")
    _text(col.suffix, name, "suffix")
    if isinstance(col.scale, bool) or not isinstance(col.scale, (int, float)) or not (
        col.scale == col.scale and abs(col.scale) < 1e12 and col.scale != 0
    ):
        raise BadRequest(
            f"column {name!r}: scale must be a non-zero number, got {_short(col.scale)}"
        )
    if col.width is not None and (
        isinstance(col.width, bool) or not isinstance(col.width, int) or not 10 <= col.width <= 2000
    ):
        raise BadRequest(
            f"column {name!r}: width must be an integer 10-2000 pixels, got {_short(col.width)}"
        )
    if col.align is not None and col.align not in _ALIGNS:
        raise BadRequest(
            f"column {name!r}: unknown align {_short(col.align)}; accepted: {', '.join(_ALIGNS)}"
        )


def _resolve(col: Column, key_fields: Sequence[str], time_fmt: str) -> Column:
    """Fill the defaults: known-field formats, kinds, flash on live numbers."""
    defaults = dict(_FIELD_DEFAULTS.get(col.field, {}))
    changes: dict[str, Any] = {}
    explicit = {f.name for f in fields(Column) if getattr(col, f.name) != _DEFAULT_VALUES[f.name]}
    for key, value in defaults.items():
        if key not in explicit:
            changes[key] = value
    is_key = col.field in key_fields
    kind = col.kind or changes.get("kind") or ("text" if is_key else "number")
    changes["kind"] = kind
    if is_key:
        changes["live"] = False
    flash = col.flash if "flash" in explicit else changes.get("flash")
    if flash is None:
        flash = kind == "number" and not is_key
    if kind == "age":
        changes["live"] = False
    if flash and kind != "number":
        raise BadRequest(f"column {col.field!r}: only number columns can flash (kind is {kind!r})")
    changes["flash"] = bool(flash) and col.live and not is_key
    if kind == "time" and "fmt" not in explicit:
        changes["fmt"] = time_fmt
    fmt = col.fmt if "fmt" in explicit else changes.get("fmt")
    if kind == "number" and fmt and fmt != AUTO_FMT and not _D3_FORMAT.match(fmt):
        raise BadRequest(
            f"column {col.field!r}: {fmt!r} is not a d3-format specifier (examples: ',.2f', "
            "'.1%', ',d', '$,.2f')"
        )
    if col.sign_field is not None:
        changes["green_red"] = True
    elif col.green_red and kind != "number":
        raise BadRequest(
            f"column {col.field!r}: green_red colours by the cell's sign, which needs a number "
            f"column (kind is {kind!r}); or name a number field in sign_field"
        )
    return replace(col, **changes)


_DEFAULT_VALUES = {f.name: f.default for f in fields(Column)}


def _check_references(columns: list[Column]) -> None:
    by_field = {c.field: c for c in columns}
    for col in columns:
        for key in ("flash_sign", "sign_field"):
            ref = getattr(col, key)
            if ref is None:
                continue
            target = by_field.get(ref)
            if target is None:
                raise BadRequest(
                    f"column {col.field!r}: {key} {ref!r} is not one of the grid's columns; add "
                    f"it (hidden if you like: {{'field': {ref!r}, 'hide': True}})"
                )
            if target.kind != "number":
                raise BadRequest(f"column {col.field!r}: {key} {ref!r} must be a number column")
    headers: dict[str, str] = {}
    for col in columns:
        if col.hide:
            continue
        if col.header in headers:
            raise BadRequest(
                f"columns {headers[col.header]!r} and {col.field!r} share the header "
                f"{col.header!r}; give one a different label"
            )
        headers[col.header] = col.field


def _flag(value: object, name: str, key: str) -> bool:
    if not isinstance(value, bool):
        raise BadRequest(f"column {name!r}: {key} must be true or false, got {_short(value)}")
    return value


def _text(value: object, name: str, key: str) -> str:
    if not isinstance(value, str) or len(value) > 200:
        raise BadRequest(f"column {name!r}: {key} must be a short string, got {_short(value)}")
    return value


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def browser_spec(col: Column) -> dict[str, Any]:
    """What the browser needs to draw one visible column (``static/grid.js`` reads it)."""
    return {
        "field": col.field, "header": col.header, "kind": col.kind, "fmt": col.fmt or "",
        "prefix": col.prefix, "suffix": col.suffix, "scale": float(col.scale),
        "align": col.align or ("right" if col.kind in ("number", "age") else "left"),
        "flash": bool(col.flash), "greenRed": bool(col.green_red),
        "signField": col.sign_field, "width": col.width,
    }


def with_support_fields(spec: list[Column], price: str | None) -> list[Column]:
    """``spec`` plus the hidden columns the browser needs: ``time`` (ages, stale rows) and the
    ``price`` field whose decimals the row's other prices follow (for a stream's grid)."""
    have = {c.field for c in spec}
    extra = []
    if "time" not in have:
        extra.append(Column("time", kind="time", flash=False, hide=True))
    if price is not None and price not in have and any(c.fmt == AUTO_FMT for c in spec):
        extra.append(Column(price, fmt=AUTO_FMT, flash=False, hide=True))
    return spec + extra


def browser_columns(spec: Sequence[Column], widths: Mapping[str, int]) -> list[dict[str, Any]]:
    """The visible columns as ``static/grid.js`` reads them; ``widths`` (header or field ->
    pixels) fixes a column's width, else it fits its content."""
    fields_ = {c.field for c in spec}
    ref = next((name for name in ("price", "close") if name in fields_), None)
    out = []
    for col in spec:
        if col.hide:
            continue
        js = browser_spec(col)
        js["width"] = widths.get(col.header, widths.get(col.field, col.width))
        if col.fmt == AUTO_FMT:
            js["ref"] = ref or col.field  # decimals follow the row's price
        out.append(js)
    return out


def time_format(interval: str) -> str:
    """How a row's time reads: to the second for quotes and sub-minute bars, to the minute for
    intraday bars, the date alone for daily and longer ones."""
    if not is_bar(interval):
        return "%H:%M:%S"
    ms = interval_ms(interval)
    if ms < 60_000:
        return "%Y-%m-%d %H:%M:%S"
    return "%Y-%m-%d %H:%M" if ms < 86_400_000 else "%Y-%m-%d"
