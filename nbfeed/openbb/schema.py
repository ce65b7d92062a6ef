"""What OpenBB Workspace accepts in ``widgets.json`` and ``apps.json``, as a validator.

Workspace rejects a whole backend when one widget entry is invalid, so everything nbfeed serves
(generated widgets and the ones notebooks publish) goes through :func:`widget_problems` first.
The enums and required fields follow ``docs/WORKSPACE.md`` (the client's behaviour as read from
OpenBB's docs, examples and frontend). The validator is deliberately stricter than the client:
unknown keys are reported too, because a typo such as ``enableCellChangeWS`` would silently do
nothing in Workspace.

The vocabulary (``RENDER_FNS``, ``FORMATTER_FNS``, ``CELL_DATA_TYPES``, ``COLUMN_KEYS``,
``MAX_DECIMALS``, :func:`render_fns`) is written here once, for everything in nbfeed that reads or
writes Workspace's ``columnsDefs``. Pure functions, no Jupyter and no hub imports.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ..errors import BadRequest, shown

WIDGET_TYPES = frozenset({
    "table", "chart", "markdown", "metric", "live_grid", "newsfeed", "html", "advanced_charting",
    "pdf", "multi_file_viewer", "live_feed", "chart-highcharts",
})
PARAM_TYPES = frozenset({"text", "date", "ticker", "number", "boolean", "endpoint", "tabs",
                         "button", "form"})
CELL_DATA_TYPES = frozenset({"text", "number", "boolean", "date", "dateString", "object"})
CHART_DATA_TYPES = frozenset({"category", "series", "time", "excluded"})
FORMATTER_FNS = frozenset({"int", "none", "percent", "normalized", "normalizedPercent",
                           "dateToYear"})
RENDER_FNS = frozenset({"greenRed", "titleCase", "hoverCard", "cellOnClick", "columnColor",
                        "showCellChange"})
NAMED_COLORS = frozenset({"green", "red", "blue"})
PINNED = frozenset({"left", "right"})
ALIGN = frozenset({"left", "center", "right"})
GROUP_TYPES = frozenset({"param", "endpointParam"})
MAX_GRID_W = 40
MAX_GRID_H = 100
MAX_DECIMALS = 6
MIN_INTERVAL_MS = 1000

WIDGET_KEYS = frozenset({
    "name", "description", "endpoint", "type", "category", "subCategory", "source", "gridData",
    "params", "data", "wsEndpoint", "runButton", "refetchInterval", "staleTime", "raw",
    "exportable", "searchCategory", "defaultViz", "widgetId",
})
COLUMN_KEYS = frozenset({
    "field", "headerName", "cellDataType", "chartDataType", "formatterFn", "decimalPlaces",
    "prefix", "suffix", "width", "minWidth", "maxWidth", "flex", "hide", "pinned", "align",
    "headerTooltip", "enableCellChangeWs", "renderFn", "renderFnParams",
})
PARAM_KEYS = frozenset({
    "paramName", "type", "value", "label", "description", "show", "options", "multiSelect",
    "optionsEndpoint", "optionsParams", "style",
})
GRID_KEYS = frozenset({"w", "h", "minW", "minH", "maxW", "maxH"})
DATA_KEYS = frozenset({"dataKey", "wsRowIdColumn", "table"})
TABLE_KEYS = frozenset({"showAll", "transpose", "enableCharts", "chartView", "columnsDefs"})
APP_KEYS = frozenset({"name", "description", "img", "img_dark", "img_light",
                      "allowCustomization", "tabs", "groups"})
LAYOUT_KEYS = frozenset({"i", "x", "y", "w", "h", "state", "groups"})

_HEX = re.compile(r"^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6}|[0-9a-fA-F]{8})$")
_DATE_VALUE = re.compile(r"^(?:\$currentDate(?:[+-]\d+[hdwMy])?|\d{4}-\d{2}-\d{2}(?:[T ].*)?)$")
_GROUP_NAME = re.compile(r"^Group \d+$")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _text(problems: list[str], where: str, obj: Mapping, key: str, *, required: bool = False,
          empty_ok: bool = False) -> None:
    if key not in obj:
        if required:
            problems.append(f"{where}: missing required {key!r}")
        return
    value = obj[key]
    if not isinstance(value, str) or (not empty_ok and not value.strip()):
        problems.append(f"{where}: {key!r} must be a non-empty string, got {shown(value, 60)}")


def _flag(problems: list[str], where: str, obj: Mapping, key: str) -> None:
    if key in obj and not isinstance(obj[key], bool):
        problems.append(f"{where}: {key!r} must be true or false, got {shown(obj[key], 60)}")


def _unknown(problems: list[str], where: str, obj: Mapping, allowed: frozenset) -> None:
    extra = sorted(str(k) for k in obj if k not in allowed)
    if extra:
        problems.append(f"{where}: unknown key(s) {', '.join(extra)}")


def render_fns(value: Any) -> list[str] | None:
    """``renderFn`` as a list of names (string, comma list or array), or None if malformed."""
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    return None


def column_problems(col: Any, where: str) -> list[str]:
    """Problems of one ``columnsDefs`` entry (empty list: valid)."""
    if not isinstance(col, Mapping):
        return [f"{where}: must be an object, got {type(col).__name__}"]
    problems: list[str] = []
    _unknown(problems, where, col, COLUMN_KEYS)
    _text(problems, where, col, "field", required=True)
    _text(problems, where, col, "headerName", required=True, empty_ok=True)
    field = col.get("field")
    if isinstance(field, str) and "." in field:
        # The grid reads dotted fields as paths into nested objects: the cell stays empty.
        problems.append(f"{where}: field {field!r} must not contain '.'")
    for key, allowed in (("cellDataType", CELL_DATA_TYPES), ("chartDataType", CHART_DATA_TYPES),
                         ("formatterFn", FORMATTER_FNS), ("pinned", PINNED), ("align", ALIGN)):
        if key in col and col[key] not in allowed:
            problems.append(f"{where}: {key} {shown(col[key], 40)} is not one of "
                            f"{', '.join(sorted(allowed))}")
    if "decimalPlaces" in col and not (_is_int(col["decimalPlaces"])
                                       and 0 <= col["decimalPlaces"] <= MAX_DECIMALS):
        problems.append(f"{where}: decimalPlaces must be a whole number 0-{MAX_DECIMALS}, got "
                        f"{shown(col['decimalPlaces'], 40)}")
    for key in ("prefix", "suffix", "headerTooltip"):
        _text(problems, where, col, key, empty_ok=True)
    for key in ("width", "minWidth", "maxWidth", "flex"):
        if key in col and not (_is_number(col[key]) and col[key] > 0):
            problems.append(f"{where}: {key} must be a positive number, got {shown(col[key], 40)}")
    for key in ("hide", "enableCellChangeWs"):
        _flag(problems, where, col, key)
    if "renderFn" in col:
        names = render_fns(col["renderFn"])
        if names is None:
            problems.append(f"{where}: renderFn must be a string or a list of strings")
        else:
            bad = [n for n in names if n not in RENDER_FNS]
            if bad:
                problems.append(f"{where}: renderFn {', '.join(bad)} not one of "
                                f"{', '.join(sorted(RENDER_FNS))}")
    params = col.get("renderFnParams")
    if params is not None:
        if not isinstance(params, Mapping):
            problems.append(f"{where}: renderFnParams must be an object")
        else:
            if "colorValueKey" in params:
                _text(problems, f"{where}.renderFnParams", params, "colorValueKey")
            for i, rule in enumerate(params.get("colorRules") or []):
                color = rule.get("color") if isinstance(rule, Mapping) else None
                if not isinstance(color, str) or not (color in NAMED_COLORS or _HEX.match(color)):
                    problems.append(f"{where}.renderFnParams.colorRules[{i}]: color must be "
                                    f"green, red, blue or a hex code, got {shown(color, 40)}")
    return problems


def param_problems(param: Any, where: str) -> list[str]:
    """Problems of one ``params`` entry (empty list: valid)."""
    if not isinstance(param, Mapping):
        return [f"{where}: must be an object, got {type(param).__name__}"]
    problems: list[str] = []
    _unknown(problems, where, param, PARAM_KEYS)
    _text(problems, where, param, "paramName", required=True)
    ptype = param.get("type")
    if ptype not in PARAM_TYPES:
        problems.append(f"{where}: type {shown(ptype, 40)} is not one of "
                        f"{', '.join(sorted(PARAM_TYPES))}")
    for key in ("label", "description"):
        _text(problems, where, param, key, empty_ok=True)
    for key in ("show", "multiSelect"):
        _flag(problems, where, param, key)
    if ptype == "endpoint":
        _text(problems, where, param, "optionsEndpoint", required=True)
    elif "optionsEndpoint" in param:
        problems.append(f"{where}: optionsEndpoint needs type 'endpoint', not {shown(ptype, 40)}")
    if "options" in param:
        options = param["options"]
        if not isinstance(options, list):
            problems.append(f"{where}: options must be a list of {{label, value}}")
        else:
            for i, opt in enumerate(options):
                if not (isinstance(opt, Mapping) and isinstance(opt.get("label"), str)
                        and isinstance(opt.get("value"), (str, int, float, bool))):
                    problems.append(f"{where}.options[{i}]: must be {{label: str, value}}, got "
                                    f"{shown(opt, 60)}")
    value = param.get("value")
    if isinstance(value, list):
        if not param.get("multiSelect"):
            problems.append(f"{where}: a list value needs multiSelect: true")
        elif not all(isinstance(v, (str, int, float)) for v in value):
            problems.append(f"{where}: list value items must be strings or numbers")
    elif value is not None and not isinstance(value, (str, int, float, bool)):
        problems.append(f"{where}: value must be a string, number, boolean or list")
    if ptype == "date" and isinstance(value, str) and value and not _DATE_VALUE.match(value):
        problems.append(f"{where}: date value {shown(value, 40)} is neither YYYY-MM-DD nor "
                        "$currentDate[+-]N[hdwMy]")
    if "optionsParams" in param and not isinstance(param["optionsParams"], Mapping):
        problems.append(f"{where}: optionsParams must be an object")
    return problems


def widget_problems(widget_id: Any, widget: Any) -> list[str]:
    """Every way ``widget`` (one entry of widgets.json) would be rejected or misbehave."""
    where = f"widget {widget_id!r}"
    if not isinstance(widget_id, str) or not widget_id:
        return [f"{where}: the id must be a non-empty string"]
    if not isinstance(widget, Mapping):
        return [f"{where}: must be an object, got {type(widget).__name__}"]
    problems: list[str] = []
    _unknown(problems, where, widget, WIDGET_KEYS)
    for key in ("name", "description", "endpoint"):
        _text(problems, where, widget, key, required=True, empty_ok=key == "description")
    for key in ("category", "subCategory", "source", "searchCategory", "widgetId"):
        _text(problems, where, widget, key)
    wtype = widget.get("type", "table")
    if wtype not in WIDGET_TYPES:
        problems.append(f"{where}: type {shown(wtype, 40)} is not one of "
                        f"{', '.join(sorted(WIDGET_TYPES))}")
    for key in ("runButton", "raw", "exportable"):
        _flag(problems, where, widget, key)
    if "refetchInterval" in widget:
        value = widget["refetchInterval"]
        if value is not False and not (_is_int(value) and value >= MIN_INTERVAL_MS):
            problems.append(f"{where}: refetchInterval must be false or >= {MIN_INTERVAL_MS} "
                            f"ms, got {shown(value, 40)}")
    if "staleTime" in widget and not (_is_int(widget["staleTime"])
                                      and widget["staleTime"] >= MIN_INTERVAL_MS):
        problems.append(f"{where}: staleTime must be >= {MIN_INTERVAL_MS} ms, got "
                        f"{shown(widget['staleTime'], 40)}")
    grid = widget.get("gridData")
    if grid is not None:
        if not isinstance(grid, Mapping):
            problems.append(f"{where}: gridData must be an object")
        else:
            _unknown(problems, f"{where}.gridData", grid, GRID_KEYS)
            for key, top in (("w", MAX_GRID_W), ("h", MAX_GRID_H)):
                if key in grid and not (_is_int(grid[key]) and 1 <= grid[key] <= top):
                    problems.append(f"{where}: gridData.{key} must be 1-{top}, got "
                                    f"{shown(grid[key], 40)}")
    params = widget.get("params", [])
    names: set[str] = set()
    if not isinstance(params, list):
        problems.append(f"{where}: params must be a list")
        params = []
    for i, param in enumerate(params):
        problems += param_problems(param, f"{where}.params[{i}]")
        name = param.get("paramName") if isinstance(param, Mapping) else None
        if isinstance(name, str):
            if name in names:
                problems.append(f"{where}: paramName {name!r} appears twice")
            names.add(name)
    problems += _data_problems(where, widget, wtype)
    return problems


def _data_problems(where: str, widget: Mapping, wtype: str) -> list[str]:
    problems: list[str] = []
    data = widget.get("data")
    if data is None:
        if wtype == "live_grid":
            problems.append(f"{where}: a live_grid needs data.wsRowIdColumn and columnsDefs")
        return problems
    if not isinstance(data, Mapping):
        return [f"{where}: data must be an object"]
    _unknown(problems, f"{where}.data", data, DATA_KEYS)
    _text(problems, f"{where}.data", data, "dataKey")
    _text(problems, f"{where}.data", data, "wsRowIdColumn")
    table = data.get("table", {})
    if not isinstance(table, Mapping):
        return [*problems, f"{where}: data.table must be an object"]
    _unknown(problems, f"{where}.data.table", table, TABLE_KEYS)
    for key in ("showAll", "transpose", "enableCharts"):
        _flag(problems, f"{where}.data.table", table, key)
    if "chartView" in table and not isinstance(table["chartView"], Mapping):
        problems.append(f"{where}: data.table.chartView must be an object")
    columns = table.get("columnsDefs", [])
    if not isinstance(columns, list):
        return [*problems, f"{where}: data.table.columnsDefs must be a list"]
    fields: list[str] = []
    for i, col in enumerate(columns):
        problems += column_problems(col, f"{where}.columnsDefs[{i}]")
        if isinstance(col, Mapping) and isinstance(col.get("field"), str):
            if col["field"] in fields:
                problems.append(f"{where}: column field {col['field']!r} appears twice")
            fields.append(col["field"])
    for col in columns:
        key = col.get("renderFnParams", {}).get("colorValueKey") if isinstance(col, Mapping) \
            and isinstance(col.get("renderFnParams"), Mapping) else None
        if isinstance(key, str) and key not in fields:
            # The colour field only reaches the grid (and updates) when it is a column itself.
            problems.append(f"{where}: colorValueKey {key!r} is not a column (add it, hidden)")
    if wtype == "live_grid":
        if "wsEndpoint" not in widget:
            problems.append(f"{where}: a live_grid needs wsEndpoint")
        else:
            _text(problems, where, widget, "wsEndpoint")
        row_id = data.get("wsRowIdColumn")
        if row_id is None:
            problems.append(f"{where}: a live_grid needs data.wsRowIdColumn")
        elif row_id not in fields:
            problems.append(f"{where}: wsRowIdColumn {row_id!r} is not a column")
    elif "wsEndpoint" in widget:
        problems.append(f"{where}: wsEndpoint only works with type live_grid")
    return problems


def widgets_problems(widgets: Any) -> list[str]:
    """Problems of a whole widgets.json object (empty list: Workspace will accept it)."""
    if not isinstance(widgets, Mapping):
        return [f"widgets.json must be an object keyed by widget id, got {type(widgets).__name__}"]
    problems: list[str] = []
    for widget_id, widget in widgets.items():
        problems += widget_problems(widget_id, widget)
    return problems


def apps_problems(apps: Any, widgets: Mapping[str, Any]) -> list[str]:
    """Problems of apps.json against the widgets it lays out (every layout id must exist)."""
    if not isinstance(apps, list):
        return [f"apps.json must be a list, got {type(apps).__name__}"]
    problems: list[str] = []
    for n, app in enumerate(apps):
        where = f"app[{n}]"
        if not isinstance(app, Mapping):
            problems.append(f"{where}: must be an object")
            continue
        _unknown(problems, where, app, APP_KEYS)
        _text(problems, where, app, "name", required=True)
        _text(problems, where, app, "description", required=True, empty_ok=True)
        _flag(problems, where, app, "allowCustomization")
        groups = app.get("groups", [])
        group_names: set[str] = set()
        for g, group in enumerate(groups if isinstance(groups, list) else []):
            gw = f"{where}.groups[{g}]"
            if not isinstance(group, Mapping):
                problems.append(f"{gw}: must be an object")
                continue
            name = group.get("name")
            if not isinstance(name, str) or not _GROUP_NAME.match(name):
                problems.append(f"{gw}: name must look like 'Group 1', got {shown(name, 40)}")
            else:
                group_names.add(name)
            if group.get("type") not in GROUP_TYPES:
                problems.append(f"{gw}: type must be one of {', '.join(sorted(GROUP_TYPES))}")
            _text(problems, gw, group, "paramName", required=True)
            for wid in group.get("widgetIds", []):
                if wid not in widgets:
                    problems.append(f"{gw}: widget {wid!r} is not in widgets.json")
        tabs = app.get("tabs")
        if not isinstance(tabs, Mapping) or not tabs:
            problems.append(f"{where}: tabs must be a non-empty object")
            continue
        for tab_id, tab in tabs.items():
            problems += _tab_problems(f"{where}.tabs[{tab_id!r}]", tab, widgets, group_names)
    return problems


def _tab_problems(where: str, tab: Any, widgets: Mapping[str, Any],
                  group_names: set[str]) -> list[str]:
    if not isinstance(tab, Mapping) or not isinstance(tab.get("layout"), list):
        return [f"{where}: must be an object with a layout list"]
    problems: list[str] = []
    _text(problems, where, tab, "id", required=True)
    _text(problems, where, tab, "name", required=True)
    for k, item in enumerate(tab["layout"]):
        lw = f"{where}.layout[{k}]"
        if not isinstance(item, Mapping):
            problems.append(f"{lw}: must be an object")
            continue
        _unknown(problems, lw, item, LAYOUT_KEYS)
        wid = item.get("i")
        if wid not in widgets:
            problems.append(f"{lw}: widget {shown(wid, 60)} is not in widgets.json")
        for key in ("x", "y", "w", "h"):
            if not (_is_int(item.get(key)) and item[key] >= (1 if key in "wh" else 0)):
                problems.append(f"{lw}: {key} must be a whole number, got "
                                f"{shown(item.get(key), 30)}")
        if _is_int(item.get("x")) and _is_int(item.get("w")) and item["x"] + item["w"] > MAX_GRID_W:
            problems.append(f"{lw}: x + w exceeds the {MAX_GRID_W}-column grid")
        for name in item.get("groups", []):
            if name not in group_names:
                problems.append(f"{lw}: group {shown(name, 40)} is not defined in the app's groups")
        state = item.get("state", {})
        params = state.get("params", {}) if isinstance(state, Mapping) else {}
        widget = widgets.get(wid) if isinstance(wid, str) else None
        if isinstance(widget, Mapping) and isinstance(params, Mapping):
            known = {p.get("paramName") for p in widget.get("params", [])}
            unknown = sorted(str(p) for p in params if p not in known)
            if unknown:
                problems.append(f"{lw}: state.params {', '.join(unknown)} are not params of "
                                f"{wid!r}")
    return problems


def check_widget(widget_id: str, widget: Any) -> None:
    """Raise :class:`BadRequest` listing every problem of one widget entry."""
    problems = widget_problems(widget_id, widget)
    if problems:
        raise BadRequest("invalid Workspace widget: " + "; ".join(problems[:10]))
