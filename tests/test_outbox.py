"""Per-subscriber outboxes: order while keeping up, bounded conflation when behind, events."""

from __future__ import annotations

import asyncio
import json

import pytest

from nbfeed.hub.outbox import MAX_EVENTS, Outbox, StreamBatch


def quotes(symbol: str, first: int, n: int) -> StreamBatch:
    rows = [{"time": 1_000 + i, "symbol": symbol, "price": float(i), "seq": i}
            for i in range(first, first + n)]
    return StreamBatch("sim", symbol, "tick", rows)


def candles(symbol: str, times: list[int], close: float) -> StreamBatch:
    rows = [{"time": t, "symbol": symbol, "open": 1.0, "high": 2.0, "low": 0.5, "close": close,
             "volume": 1.0} for t in times]
    return StreamBatch("sim", symbol, "1m", rows)


def rows_of(items: list) -> list[dict]:
    return [row for item in items if isinstance(item, StreamBatch) for row in item.rows]


def test_a_subscriber_that_keeps_up_gets_every_batch_in_order():
    box = Outbox(max_rows=100)
    batches = [quotes("AAPL", 0, 30), quotes("MSFT", 0, 30), quotes("AAPL", 30, 30)]
    for batch in batches:
        box.put_batch(batch)
    assert box.pending_rows == 90 and len(box) == 90
    assert box.take() == batches  # the very same shared objects, nothing copied
    assert box.conflated_rows == 0 and box.delivered_rows == 90 and box.pending_rows == 0
    assert box.take() == []


def test_quotes_conflate_to_the_newest_row_per_symbol_when_behind():
    # Outside an event loop the outbox conflates as soon as it holds too much.
    box = Outbox(max_rows=50)
    for first in range(0, 1000, 20):
        box.put_batch(quotes("AAPL", first, 20))
        box.put_batch(quotes("MSFT", first, 20))
        assert box.pending_rows <= 50
    rows = rows_of(box.take())
    newest = {r["symbol"]: r["seq"] for r in rows}
    assert newest == {"AAPL": 999, "MSFT": 999}
    assert box.conflated_rows == 2000 - len(rows)


def test_candles_conflate_to_the_newest_version_of_each_bar_keeping_the_newest_bars():
    box = Outbox(max_rows=10)
    for close in (1.0, 2.0, 3.0):  # three updates of the same 20 bars
        box.put_batch(candles("BTC", [60_000 * i for i in range(20)], close))
    rows = rows_of(box.take())
    times = [r["time"] for r in rows]
    assert times == sorted(times) and len(times) <= 10
    assert times[-1] == 60_000 * 19  # the newest bars survive
    assert {r["close"] for r in rows} == {3.0}  # and in their newest version
    assert box.conflated_rows == 60 - len(rows)


def test_events_come_first_and_are_bounded():
    box = Outbox(max_rows=10)
    box.put_batch(quotes("AAPL", 0, 1))
    for i in range(MAX_EVENTS + 10):
        box.put_event({"type": "status", "n": i})
    items = box.take()
    events = [item for item in items if isinstance(item, dict)]
    assert items[: len(events)] == events and isinstance(items[-1], StreamBatch)
    assert len(events) == MAX_EVENTS and events[-1]["n"] == MAX_EVENTS + 9  # oldest dropped


def test_batch_json_is_computed_once_and_never_invalid():
    def parsed(fragment: bytes | str) -> list:
        text = fragment.decode() if isinstance(fragment, bytes) else fragment
        return json.loads(f"[{text}]")

    batch = StreamBatch("sim", "AAPL", "tick",
                        [{"time": 1, "symbol": "AAPL", "price": float("nan"), "bid": float("inf"),
                          "ask": 1.5}])
    fragment = batch.json_rows()
    assert parsed(fragment) == [{"time": 1, "symbol": "AAPL", "price": None, "bid": None,
                                 "ask": 1.5}]
    assert batch.json_rows() is fragment  # cached: every subscriber writes the same bytes
    odd = StreamBatch("sim", "X", "tick", [{"time": 1, "symbol": "X", "note": object()}])
    assert parsed(odd.json_rows())[0]["note"].startswith("<object")
    assert "sim/AAPL/tick, 1 rows" in repr(batch)


def test_bad_bound_is_refused():
    with pytest.raises(ValueError, match="max_rows"):
        Outbox(max_rows=0)


@pytest.mark.asyncio
async def test_get_waits_for_data_and_a_closed_box_ends_the_reader():
    box = Outbox(max_rows=10)
    woken: list[int] = []
    box.on_ready = lambda: woken.append(1)
    waiter = asyncio.ensure_future(box.get())
    await asyncio.sleep(0)
    assert not waiter.done()
    box.put_batch(quotes("AAPL", 0, 3))
    items = await asyncio.wait_for(waiter, 5)
    assert rows_of(items)[-1]["seq"] == 2 and woken
    box.put_batch(quotes("AAPL", 3, 1))
    box.close()
    assert rows_of(await box.get())[0]["seq"] == 3  # what was waiting is still delivered
    with pytest.raises(EOFError):
        await box.get()
    box.put_batch(quotes("AAPL", 4, 1))  # ignored once closed
    assert box.pending_rows == 0


@pytest.mark.asyncio
async def test_a_waiting_reader_gets_a_whole_burst_and_a_busy_one_is_conflated():
    waiting, busy = Outbox(max_rows=100), Outbox(max_rows=100)
    reader = asyncio.ensure_future(waiting.get())
    await asyncio.sleep(0)  # the reader now waits for data
    burst = [quotes("AAPL", first, 100) for first in range(0, 500, 100)]  # 500 rows at once
    for batch in burst:
        waiting.put_batch(batch)
        busy.put_batch(batch)
    assert busy.pending_rows == 500  # judged after the burst, not in the middle of it
    items = await asyncio.wait_for(reader, 5)
    assert items == burst and waiting.conflated_rows == 0
    await asyncio.sleep(0)
    assert busy.pending_rows == 1 and busy.conflated_rows == 499
    assert rows_of(busy.take())[0]["seq"] == 499
