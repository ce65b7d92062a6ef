"""Columns: rows as arrays, exactly - every byte form gives back the rows that went in."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pandas as pd
import pytest

from nbfeed.client.frames import _floats, history_frame
from nbfeed.columns import BadRows, Columns
from nbfeed.columns_io import pack, read_arrow, to_arrow, unpack
from nbfeed.tabular import columns_csv, columns_order, rows_to_csv

T = 1_767_225_600_000  # 2026-01-01T00:00Z

CANDLES = [{"time": T + i * 60_000, "symbol": "BTCUSDT", "open": 1.0 + i, "high": 2.0 + i,
            "low": 0.5, "close": 1.5 + i, "volume": 10.0 * i} for i in range(5)]
ODD = [  # a field some rows lack, None, ints that stay ints, flags, text, another symbol, NaN
    {"time": T, "symbol": "A", "open": 1.0, "trades": 2, "vwap": None, "closed": True},
    {"time": T + 1, "symbol": "A", "open": math.nan, "note": "h,i \"q\"", "vwap": 1.5},
    {"time": T + 2, "symbol": "B", "open": 3.0, "trades": 5, "closed": False, "tags": [1, 2]},
    {"time": T + 3_000, "open": 4.0},  # no symbol: the batch's
]


def same_rows(a: list[dict], b: list[dict]) -> bool:
    """Equal, NaN included, with the same keys and value types."""
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if set(x) != set(y):
            return False
        for k in x:
            u, v = x[k], y[k]
            if type(u) is not type(v):
                return False
            if not (u == v or (isinstance(u, float) and math.isnan(u) and math.isnan(v))):
                return False
    return True


@pytest.mark.parametrize("rows", [CANDLES, ODD], ids=["candles", "odd"])
def test_every_form_gives_back_the_same_rows(rows):
    cols = Columns.from_rows(rows, "A" if rows is ODD else None)
    expected = [r if "symbol" in r else {"time": r["time"], "symbol": "A", **r} for r in rows]
    expected = [{"time": r["time"], "symbol": r["symbol"],
                 **{k: v for k, v in r.items() if k not in ("time", "symbol")}}
                for r in expected]
    assert same_rows(cols.rows(), expected)
    assert same_rows(pickle.loads(pickle.dumps(cols)).rows(), expected)
    assert same_rows(unpack(pack(cols), cols.time, cols.symbol).rows(), expected)
    assert same_rows(read_arrow(to_arrow(cols)).rows(), expected)
    assert same_rows(Columns.concat([cols.slice(0, 2), cols.slice(2, len(cols))]).rows(),
                     expected)
    assert same_rows([cols[i] for i in range(len(cols))], expected)
    if rows is ODD:  # keys: time, symbol, then the fields in the order the batch showed them
        assert list(cols.rows()[1]) == ["time", "symbol", "open", "vwap", "note"]
    else:
        assert [list(r) for r in cols.rows()] == [list(r) for r in rows]


def test_types_are_kept_where_rows_agree():
    cols = Columns.from_rows(ODD, "A")
    assert cols.fields["open"].dtype == np.float64
    assert cols.fields["trades"].dtype == np.int64
    assert cols.fields["closed"].dtype == bool
    assert cols.fields["vwap"].dtype == object  # None mixed in: kept as it was
    assert cols.present("trades").tolist() == [True, False, True, False]
    assert cols.present("open") is None


def test_pickling_sends_arrays_not_the_rows_built_from_them():
    cols = Columns.from_rows(CANDLES * 200)
    before = pickle.dumps(cols)
    cols.rows()
    assert pickle.dumps(cols) == before
    assert pickle.loads(before)._rows is None


@pytest.mark.parametrize(("rows", "message"), [
    ([{"symbol": "A", "close": 1.0}], "row 0: time is missing"),
    ([{"time": T}, ["not", "a", "dict"]], "row 1: expected a dict, got list"),
    ([{"time": T}, {"time": "noon"}], "row 1: time 'noon' is not an integer epoch-ms"),
    ([{"time": T}, {"time": T, 7: 1.0}], "row 1: field name 7 is not a string"),
    ([{"time": T, "symbol": 42}], "row 0: symbol 42 is not a string"),
    ([{"time": 10**20}], "row 0: time 100000000000000000000 does not fit"),
])
def test_rows_that_cannot_be_columns_are_named(rows, message):
    with pytest.raises(BadRows) as info:
        Columns.from_rows(rows)
    assert message in str(info.value)


def test_a_whole_float_time_is_a_time():
    assert Columns.from_rows([{"time": float(T), "x": 1.0}]).time.tolist() == [T]


@pytest.mark.parametrize("rows", [CANDLES, ODD], ids=["candles", "odd"])
def test_a_dataframe_from_columns_is_the_one_rows_gave(rows):
    """history() used to build its DataFrame from row dicts; from columns it is the same."""
    cols = Columns.from_rows(rows, "A")
    old = pd.DataFrame.from_records(cols.rows())
    old.index = pd.DatetimeIndex(pd.to_datetime(old.pop("time"), unit="ms", utc=True),
                                 name="time")
    if old["symbol"].nunique() <= 1:
        old = old.drop(columns="symbol")
    pd.testing.assert_frame_equal(history_frame(cols), _floats(old))


@pytest.mark.parametrize("rows", [CANDLES, ODD], ids=["candles", "odd"])
def test_csv_from_columns_is_the_csv_of_the_rows(rows):
    cols = Columns.from_rows(rows, "A")
    assert columns_csv(cols, columns_order(cols)) == rows_to_csv(cols.rows())


def test_slices_share_memory_and_chunks_cover_everything():
    cols = Columns.from_rows(CANDLES)
    part = cols[1:3]
    assert np.shares_memory(part.fields["open"], cols.fields["open"])
    assert [r["time"] for r in part] == [T + 60_000, T + 120_000]
    assert [len(c) for c in cols.chunks(2)] == [2, 2, 1]
    assert Columns.concat(list(cols.chunks(2))) == CANDLES
