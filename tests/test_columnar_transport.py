"""Rows travel from a provider process to the hub as columns, and come out as published.

Real provider processes; the rows are the awkward kinds authors publish (ints, bools, text,
None, fields absent from some rows, several symbols in one call, a DataFrame)."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from nbfeed.columns import Columns
from nbfeed.errors import BadRequest
from nbfeed.hub.outbox import Outbox, StreamBatch
from nbfeed.intervals import TICK
from nbfeed.providers.base import Provider
from nbfeed.providers.registry import ProviderSpec
from tests.providers_for_columns import T0, ScriptedRowsProvider

EXPECTED = [
    {"time": T0, "symbol": "MIX", "price": 1.5, "size": 3, "flag": True, "venue": "XNAS"},
    {"time": T0 + 1, "symbol": "MIX", "price": 2.25, "note": None},
    {"time": T0 + 2, "symbol": "MIX", "venue": "Zürich ✓", "price": 2.5, "size": 4},
    {"time": T0 + 3, "symbol": "MIX", "price": 3.0},
    {"time": T0 + 4, "symbol": "MIX", "price": 4.0, "size": 5},
]


async def _batches_until_done(sub, timeout: float = 30.0) -> list[StreamBatch]:
    batches: list[StreamBatch] = []
    deadline = time.monotonic() + timeout
    while not any(b.columns.fields.get("done") is not None for b in batches):
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"timed out; got {batches}"
        try:
            items = await asyncio.wait_for(sub.get(), remaining)
        except asyncio.TimeoutError:
            continue
        batches.extend(i for i in items if isinstance(i, StreamBatch))
    return batches


@pytest.mark.asyncio
async def test_rows_cross_as_columns_and_come_out_as_published(start_hub):
    hub = await start_hub(ProviderSpec("scripted", ScriptedRowsProvider))
    sub = await hub.subscribe("scripted", ["MIX"], TICK)
    batches = await _batches_until_done(sub)
    # Columns all the way: nobody asked for dicts yet, so none were built.
    assert batches and all(b.columnar for b in batches)
    assert all(b.columns.time.dtype == np.int64 for b in batches)
    rows = [row for b in batches for row in b.rows]
    assert rows[:5] == EXPECTED
    # Types survive: an int stays an int, a bool a bool, text text, None None; a field a
    # row did not have is absent, not None.
    first, second, third = rows[:3]
    assert type(first["size"]) is int and first["flag"] is True and first["venue"] == "XNAS"
    assert "size" not in second and "flag" not in second and second["note"] is None
    assert third["venue"] == "Zürich ✓" and type(third["size"]) is int
    assert all(r["symbol"] == "MIX" for r in rows)  # OTHER's row went to OTHER's stream
    # A row that cannot travel is refused to the author at publish(), naming row and field;
    # the stream goes on.
    refused = next(r["refused"] for r in rows if "refused" in r)
    assert "row 0" in refused and "time" in refused and "int64" in refused
    assert rows[-1]["done"] is True and len(rows) == 7
    # The hub's snapshot (what a new subscriber starts from) is the newest row.
    assert hub.snapshot([("scripted", "MIX", TICK)]) == [rows[-1]]


def test_publish_refuses_rows_that_cannot_be_columns_naming_the_row():
    p = Provider()
    p.name = "src"  # outside a provider process, publish collects rows in p.published
    ok = {"time": T0, "symbol": "AAA", "price": 1.0}
    for bad, words in (({"time": 2**63, "symbol": "AAA"}, ("row 1", "time", "int64")),
                       ({"time": T0, "symbol": "AAA", 7: 1.0}, ("row 1", "field name 7")),
                       ({"time": T0, "symbol": 42}, ("row 1", "symbol 42"))):
        with pytest.raises(BadRequest) as info:
            p.publish([ok, bad])
        assert all(w in str(info.value) for w in words), str(info.value)
    assert p.published == []  # a refused call publishes none of its rows
    p.publish([ok, {"time": T0 + 1, "symbol": "AAA", "price": 2}])
    assert p.published == [ok, {"time": T0 + 1, "symbol": "AAA", "price": 2}]


def _columnar(symbol: str, first: int, n: int) -> StreamBatch:
    rows = [{"time": 1_000 + i, "symbol": symbol, "price": float(i), "seq": i}
            for i in range(first, first + n)]
    return StreamBatch.from_columns("sim", symbol, TICK, Columns.from_rows(rows, symbol))


def test_a_columnar_batch_builds_its_rows_once_and_only_when_asked():
    batch = _columnar("AAPL", 0, 50)
    assert len(batch) == 50 and batch.columnar
    last = batch.last_row()
    assert last == {"time": 1_049, "symbol": "AAPL", "price": 49.0, "seq": 49}
    assert batch.columnar and batch.last_row() is last  # no rows built for that
    rows = batch.rows
    assert batch.rows is rows and rows[10] == {"time": 1_010, "symbol": "AAPL", "price": 10.0,
                                               "seq": 10}
    assert not batch.columnar and batch.columns is batch.columns
    plain = StreamBatch("sim", "AAPL", TICK, list(rows))
    assert plain.json_rows() == batch.json_rows()
    assert plain.columns == batch.columns and plain.columns.fields["seq"].dtype == np.int64


def test_columnar_quotes_conflate_to_their_newest_row_without_building_rows():
    box = Outbox(max_rows=50)  # outside a loop: conflates as soon as it holds too much
    for first in range(0, 1000, 20):
        box.put_batch(_columnar("AAPL", first, 20))
        box.put_batch(StreamBatch("sim", "MSFT", TICK, [{"time": first, "symbol": "MSFT",
                                                         "seq": first}]))
        assert box.pending_rows <= 50
    items = box.take()
    aapl = [b for b in items if b.symbol == "AAPL"]
    assert all(b.columnar for b in aapl)  # still columns: no rows built to conflate them
    assert len(aapl[0]) == 1  # what was merged away left its newest row, nothing else
    seqs = [r["seq"] for b in aapl for r in b.rows]
    assert seqs == sorted(seqs) and seqs[-1] == 999
    msft = [r["seq"] for b in items if b.symbol == "MSFT" for r in b.rows]
    assert msft == sorted(msft) and msft[-1] == 980
    assert box.conflated_rows == 1050 - len(seqs) - len(msft)
