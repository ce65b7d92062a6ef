"""Sort and filter of a LiveGrid, run in the kernel over the table's columns.

A transform is a dict, as ipydatagrid spells them (so code written for it keeps working):
``{"type": "sort", "column": "price", "desc": True}`` or
``{"type": "filter", "column": "price", "operator": "<", "value": 100}``. ``column`` may be
the field name or the header text. :func:`check_transforms` validates and normalises them to
field names; :func:`display_order` turns them into the storage positions of the rows in the
order the page shows them.

Sorting is stable (equal values keep arrival order from one frame to the next) and puts
missing values last in both directions. Failure behaviour: a bad transform raises
:class:`nbfeed.errors.BadRequest` naming it and what is accepted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import BadRequest
from .grid_table import GridTable

OPERATORS = ("<", ">", "<=", ">=", "=", "!=", "in", "between", "contains", "startswith",
             "endswith", "empty", "notempty")


def check_transforms(transforms: Any, headers: Mapping[str, str]) -> list[dict[str, Any]]:
    """Validated copies of ``transforms`` with ``column`` as a field name.

    ``headers`` maps each shown field to its header text.
    """
    if not isinstance(transforms, (list, tuple)):
        raise BadRequest(f"transforms must be a list of dicts, got {transforms!r:.80}")
    by_header = {h: f for f, h in headers.items()}
    out = []
    for t in transforms:
        if not isinstance(t, Mapping) or t.get("type") not in ("sort", "filter"):
            raise BadRequest(f"a transform is a dict with type 'sort' or 'filter', got {t!r:.80}")
        t = dict(t)
        column = t.get("column")
        field = column if column in headers else by_header.get(column)  # type: ignore[arg-type]
        if field is None:
            raise BadRequest(
                f"transform column {column!r} is not shown in this grid; columns: "
                f"{', '.join(headers.values())}"
            )
        t["column"] = field
        if t["type"] == "sort":
            t["desc"] = bool(t.get("desc", False))
        elif t.get("operator") not in OPERATORS:
            raise BadRequest(
                f"filter operator {t.get('operator')!r:.40} is not supported; accepted: "
                f"{', '.join(OPERATORS)}"
            )
        out.append(t)
    return out


def display_order(table: GridTable, transforms: Sequence[Mapping[str, Any]],
                  newest_first: bool) -> np.ndarray:
    """Storage positions in display order: filters applied, then the last sort, else arrival
    order (newest first if asked)."""
    n = len(table)
    order = np.arange(n)
    if newest_first:
        order = order[::-1].copy()
    sort = None
    for t in transforms:
        if t["type"] == "filter":
            keep = _filter_mask(table.array(t["column"]), t)
            order = order[keep[order]]
        else:
            sort = t
    if sort is not None and len(order):
        values = table.array(sort["column"])[order]
        order = order[_stable_argsort(values, sort["desc"])]
    return order


def _stable_argsort(values: np.ndarray, desc: bool) -> np.ndarray:
    """Positions that sort ``values`` (missing last in both directions), ties in place."""
    if values.dtype == object:
        missing = np.array([v is None for v in values], bool)
        keys = np.array(["" if v is None else str(v) for v in values], dtype=object)
    else:
        missing = np.isnan(values)
        keys = np.where(missing, 0.0, values)
    present = np.flatnonzero(~missing)
    ranked = present[np.argsort(keys[present], kind="stable")]
    if desc:
        # Reverse the order but keep ties in arrival order: sort the negated rank of each
        # distinct value.
        _, inverse = np.unique(keys[ranked], return_inverse=True)
        ranked = ranked[np.argsort(-inverse, kind="stable")]
    return np.concatenate([ranked, np.flatnonzero(missing)])


def _filter_mask(values: np.ndarray, t: Mapping[str, Any]) -> np.ndarray:
    op, value = t["operator"], t.get("value")
    text = values.dtype == object
    if op == "empty":
        return np.array([v is None for v in values], bool) if text else np.isnan(values)
    if op == "notempty":
        return ~_filter_mask(values, {"operator": "empty"})
    if op in ("contains", "startswith", "endswith"):
        needle = str(value).lower()
        test = {"contains": lambda s: needle in s, "startswith": lambda s: s.startswith(needle),
                "endswith": lambda s: s.endswith(needle)}[op]
        return np.array([v is not None and test(str(v).lower()) for v in values], bool)
    if op == "in":
        wanted = set(value if isinstance(value, (list, tuple, set)) else [value])
        return np.array([v in wanted for v in values.tolist()], bool)
    try:
        if op == "between":
            lo, hi = value
            if text:
                return np.array([v is not None and lo <= v <= hi for v in values], bool)
            return (values >= float(lo)) & (values <= float(hi))
        if text:
            compare = {"<": "__lt__", ">": "__gt__", "<=": "__le__", ">=": "__ge__",
                       "=": "__eq__", "!=": "__ne__"}[op]
            return np.array([v is not None and getattr(v, compare)(value) is True
                             for v in values], bool)
        ref = float(value)
    except (TypeError, ValueError) as exc:
        raise BadRequest(f"filter {dict(t)!r:.80}: bad value: {exc}") from None
    ops = {"<": np.less, ">": np.greater, "<=": np.less_equal, ">=": np.greater_equal,
           "=": np.equal, "!=": np.not_equal}
    return ops[op](values, ref)
