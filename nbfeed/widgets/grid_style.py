"""How a LiveGrid paints flashes and signs: a kernel-side style code, browser-side expressions.

ipydatagrid has no flash and no timer-driven repaint, and its renderers can only compute a
colour from the cell and from other columns of the same row (``VegaExpr`` reading
``cell.metadata.data['<column>']``). So the kernel keeps the state and ships it as one extra
text column, the *style column*: one character per *slot*, where a slot is either

- a flash slot of a flashing column: ``U``/``u`` rose (strong/weak), ``D``/``d`` fell,
  blank when calm; the kernel steps strong -> weak -> blank over ``flash_ms`` (the fade), or
- a sign slot of a ``green_red`` column coloured by another field (Workspace
  ``colorValueKey``): ``+``, ``-`` or blank.

Each visible column's ``TextRenderer`` reads its slot with ``substring``. A grid without
slots has no style column at all.

Hiding the style column (decided and tested): it is the last column, its header is a
zero-width space (an empty-looking header), its text is transparent and its width is 10 px,
the smallest width Lumino's DataGrid allows - a thin blank strip at the right edge. It cannot
be left out of the schema, because the browser only lets an expression read columns of the
schema, and it must be in every data reply, which LiveGrid guarantees by always answering with
all columns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from ipydatagrid import TextRenderer, VegaExpr

from .grid_columns import Column

STYLE_COLUMN = "\u200b"
"""Name (and header text) of the style column: a zero-width space, so the header looks empty."""
STYLE_COLUMN_WIDTH = 10
"""Lumino DataGrid's minimum column width; narrower is not possible."""

UP_STRONG, UP_WEAK, DOWN_STRONG, DOWN_WEAK = "U", "u", "D", "d"
FLASH_COLOURS = {
    UP_STRONG: "rgba(27, 135, 63, 0.55)",
    UP_WEAK: "rgba(27, 135, 63, 0.25)",
    DOWN_STRONG: "rgba(217, 45, 32, 0.55)",
    DOWN_WEAK: "rgba(217, 45, 32, 0.25)",
}
TEXT_GREEN, TEXT_RED = "#1b873f", "#d92d20"
# Flash codes kept by the table, indexed into this alphabet when encoding.
_FLASH_CHARS = np.array([" ", UP_STRONG, UP_WEAK, DOWN_STRONG, DOWN_WEAK])
_SIGN_CHARS = np.array(["-", " ", "+"])


@dataclass(frozen=True)
class StyleSlot:
    """One character of the style column: ``kind`` is ``flash`` or ``sign``."""

    column: str
    kind: str
    source: str


class StyleLayout:
    """The slots of a grid, in order, and the encoder that turns table state into the column."""

    def __init__(self, columns: Sequence[Column]) -> None:
        slots: list[StyleSlot] = []
        for col in columns:
            if col.hide:
                continue
            if col.flash:
                slots.append(StyleSlot(col.field, "flash", col.field))
            if col.green_red and col.sign_field is not None and col.sign_field != col.field:
                slots.append(StyleSlot(col.field, "sign", col.sign_field))
        self.slots: tuple[StyleSlot, ...] = tuple(slots)
        self._index = {(s.column, s.kind): i for i, s in enumerate(slots)}

    def __bool__(self) -> bool:
        return bool(self.slots)

    def slot(self, column: str, kind: str) -> int | None:
        """Position of a column's slot in the style string, or None if it has none."""
        return self._index.get((column, kind))

    def encode(
        self, n: int, flash_codes: Mapping[str, np.ndarray], values: Mapping[str, np.ndarray]
    ) -> np.ndarray:
        """The style column for ``n`` rows: flash codes (0-4) per flash column, signs of values."""
        out = np.full(n, "", dtype=object)
        if not self.slots or n == 0:
            return out
        parts = []
        for s in self.slots:
            if s.kind == "flash":
                parts.append(_FLASH_CHARS[flash_codes[s.source][:n]])
            else:
                signs = np.sign(np.nan_to_num(values[s.source][:n], nan=0.0)).astype(np.int8)
                parts.append(_SIGN_CHARS[signs + 1])
        joined = parts[0].astype(object)
        for p in parts[1:]:
            joined = joined + p.astype(object)
        return joined


def renderers(columns: Sequence[Column], layout: StyleLayout) -> dict[str, TextRenderer]:
    """One TextRenderer per visible column (keyed by header), plus the style column's."""
    out: dict[str, TextRenderer] = {}
    for col in columns:
        if not col.hide:
            out[col.header] = column_renderer(col, layout)
    if layout:
        # Transparent text: the code letters must not show in the 10 px strip.
        out[STYLE_COLUMN] = TextRenderer(text_color="transparent")
    return out


def column_renderer(col: Column, layout: StyleLayout) -> TextRenderer:
    """Format, alignment, flash background and sign colour of one column."""
    opts: dict[str, object] = {}
    if col.kind == "number":
        opts["horizontal_alignment"] = col.align or "right"
        opts["text_value"] = VegaExpr(_number_text(col))
        if col.fmt and col.scale == 1:
            opts["format"] = col.fmt
    elif col.kind == "time":
        opts["horizontal_alignment"] = col.align or "left"
        opts["format_type"] = "time"
        opts["format"] = col.fmt or "%H:%M:%S"
        opts["text_value"] = VegaExpr(f"cell.value !== cell.value ? ' ' : {_wrap(col)}")
    else:
        opts["horizontal_alignment"] = col.align or "left"
        if col.prefix or col.suffix:
            opts["text_value"] = VegaExpr(_wrap(col))
    flash_slot = layout.slot(col.field, "flash")
    if flash_slot is not None:
        opts["background_color"] = VegaExpr(_flash_background(flash_slot))
    if col.green_red:
        sign_slot = layout.slot(col.field, "sign")
        opts["text_color"] = VegaExpr(
            _sign_colour_from_slot(sign_slot) if sign_slot is not None else _sign_colour_of_value()
        )
    return TextRenderer(**opts)


def _number_text(col: Column) -> str:
    # NaN (a field not received yet) shows blank rather than "NaN"; an empty string would make
    # ipydatagrid fall back to the raw value, so it is a single space.
    if col.scale != 1:
        body = f"format(cell.value * {float(col.scale)!r}, {_literal(col.fmt or '')})"
        text = _concat(col.prefix, body, col.suffix)
    else:
        text = _wrap(col)
    return f"cell.value !== cell.value ? ' ' : {text}"


def _wrap(col: Column) -> str:
    return _concat(col.prefix, "default_value", col.suffix)


def _concat(prefix: str, body: str, suffix: str) -> str:
    parts = ([_literal(prefix)] if prefix else []) + [body] + ([_literal(suffix)] if suffix else [])
    return " + ".join(parts)


def _style_char(slot: int) -> str:
    return f"substring(cell.metadata.data['\\u200b'], {slot}, {slot + 1})"


def _flash_background(slot: int) -> str:
    ch = _style_char(slot)
    expr = "default_value"
    for code in (DOWN_WEAK, DOWN_STRONG, UP_WEAK, UP_STRONG):
        expr = f"({ch} == '{code}' ? '{FLASH_COLOURS[code]}' : {expr})"
    return expr


def _sign_colour_from_slot(slot: int) -> str:
    ch = _style_char(slot)
    return f"({ch} == '+' ? '{TEXT_GREEN}' : ({ch} == '-' ? '{TEXT_RED}' : default_value))"


def _sign_colour_of_value() -> str:
    return f"(cell.value > 0 ? '{TEXT_GREEN}' : (cell.value < 0 ? '{TEXT_RED}' : default_value))"


def _literal(text: str) -> str:
    """A Vega string literal. Everything but letters, digits and spaces is \\u-escaped, so user
    text can neither end the literal nor look like ``cell.metadata.data[...]`` to ipydatagrid's
    rewriting regex."""
    out = []
    for ch in text:
        if ch.isascii() and (ch.isalnum() or ch == " "):
            out.append(ch)
        else:
            out.extend(f"\\u{unit:04x}" for unit in _utf16_units(ch))
    return "'" + "".join(out) + "'"


def _utf16_units(ch: str) -> list[int]:
    data = ch.encode("utf-16-be")
    return [int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2)]
