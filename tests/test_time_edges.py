"""The edges of time: bars around 1970, across 1966-1973, and back to 1900, are right.

Integer epoch-ms times between 1966-11 and 1973-03 are below 1e11, where a number read by
magnitude counts as epoch *seconds*: 1d bars of 1970-01-01..01-11 came back as one bar at time
0, and history touching 1966-1973 answered 502, so ``count=1000000`` at ``1d``/``1w``/``1M``
always failed. A provider's whole-number times are epoch ms, whatever their size.
"""

from __future__ import annotations

import numpy as np
import pytest

from nbfeed.errors import BadRequest
from nbfeed.intervals import bar_starts, interval_ms
from nbfeed.providers.registry import ProviderSpec
from nbfeed.providers.rows import normalize_row
from nbfeed.timeutil import to_ms
from tests.providers_for_faults import WireBystander
from tests.providers_for_tests import RecordingProvider
from tests.server_fixtures import *  # noqa: F403
from tests.server_fixtures import fetch_json

DAY = 86_400_000


@pytest.mark.parametrize("ms", [0, DAY, 5 * DAY, -99_999_999_999, 99_999_999_999,
                                -2_208_988_800_000, 1_767_225_600_000])
def test_whole_number_times_from_a_provider_are_epoch_ms(ms):
    assert normalize_row({"time": ms, "close": 1.0}, source="s", symbol="X",
                         interval="1d")["time"] == ms
    assert normalize_row({"timestamp": np.int64(ms)}, source="s", symbol="X",
                         interval="1d")["time"] == ms


def test_other_time_forms_are_still_read_as_people_write_them():
    assert normalize_row({"time": 1_700_000_000.5}, source="s", symbol="X",
                         interval="tick")["time"] == 1_700_000_000_500  # time.time()
    assert normalize_row({"date": "1970-01-02"}, source="s", symbol="X",
                         interval="1d")["time"] == DAY
    with pytest.raises(BadRequest, match="time"):
        normalize_row({"time": "soon"}, source="s", symbol="X", interval="1d")


async def test_bars_around_1970_come_back_one_per_day(start_hub):
    hub = await start_hub(ProviderSpec("rec", RecordingProvider, {"period": 0}))
    rows = await hub.history("rec", "AAA", "1d", start="1970-01-01", end="1970-01-11")
    assert [r["time"] for r in rows] == [n * DAY for n in range(10)]
    # Across 1966-11..1973-03, where ms values are below 1e11.
    start, end = to_ms("1966-10-01", "start"), to_ms("1973-04-01", "end")
    rows = await hub.history("rec", "AAA", "1d", start=start, end=end)
    assert [r["time"] for r in rows] == bar_starts(start, end, "1d")


@pytest.mark.parametrize(("interval", "bars"), [("1d", 40_000), ("1w", 6_000), ("1M", 1_400)])
async def test_the_largest_count_reaches_back_to_1900(nbfeed_server, jp_fetch, jp_ws_fetch,
                                                      interval, bars):
    bystander = await WireBystander.open(jp_ws_fetch, "simulated", "MSFT")
    _, body = await fetch_json(jp_fetch, "nbfeed", "api", "history", params={
        "source": "simulated", "symbol": "AAPL", "interval": interval, "count": "1000000"})
    times = [r["time"] for r in body["rows"]]
    assert len(times) > bars
    assert times[0] == to_ms("1900-01-01", "start")  # the first bar of the supported range
    assert times == sorted(set(times))
    if interval != "1M":
        assert {b - a for a, b in zip(times, times[1:])} == {interval_ms(interval)}
    assert bystander.max_gap() < 1.0
    bystander.close()


async def test_workspace_tables_around_1970(nbfeed_server, jp_fetch):
    _, rows = await fetch_json(jp_fetch, "nbfeed", "workspace", "history", "simulated", params={
        "symbol": "AAPL", "interval": "1d", "start": "1970-01-01", "end": "1970-01-10"})
    assert [r["date"] for r in rows] == [f"1970-01-{d:02d}T00:00:00Z" for d in range(1, 11)]


def test_a_chunked_notebook_backfill_across_1966_1973(tmp_path):
    from nbfeed.client.connect import connect

    feed = connect(embedded=True, providers=["simulated"], home=str(tmp_path / "home"))
    try:
        bars = feed.history("simulated", "AAPL", "1h", start="1966-01-01", end="1974-01-01",
                            progress=False)
    finally:
        feed.close()
    expected = bar_starts(to_ms("1966-01-01"), to_ms("1974-01-01"), "1h")
    assert len(expected) > 50_000  # more than one chunk
    assert len(bars) == len(expected)
    assert bars.index[0].isoformat() == "1966-01-01T00:00:00+00:00"
    assert bars.index[-1].isoformat() == "1973-12-31T23:00:00+00:00"


async def test_times_outside_the_supported_range_are_refused_naming_the_bound(
        nbfeed_server, jp_fetch):
    for params in ({"start": "1899-12-31"}, {"end": "3000-01-01"}):
        _, body = await fetch_json(jp_fetch, "nbfeed", "api", "history", expect=400, params={
            "source": "simulated", "symbol": "AAPL", "interval": "1d", **params})
        assert "1900..2999" in body["detail"] and next(iter(params)) in body["detail"]
