"""Intervals and times: bar alignment in UTC and every way people write a time."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from nbfeed.errors import BadInterval, BadRequest
from nbfeed.intervals import (
    BAR_INTERVALS,
    INTERVALS,
    TICK,
    bar_starts,
    ceil_bar,
    check_interval,
    floor_bar,
    interval_ms,
    is_bar,
    next_bar,
    prev_bar,
    shift_bars,
)
from nbfeed.timeutil import datetimes_to_ms, ms_to_iso, now_ms, to_ms


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp() * 1000)


# ---- intervals ------------------------------------------------------------------------------


def test_valid_intervals_pass_and_bad_ones_are_named_with_what_is_valid():
    assert (*BAR_INTERVALS, TICK) == INTERVALS
    for interval in INTERVALS:
        assert check_interval(interval) == interval
    for bad in ("7m", "1H", "", None, 5, "tick "):
        with pytest.raises(BadInterval) as caught:
            check_interval(bad)
        assert repr(bad) in str(caught.value) and "1m, 3m" in str(caught.value)
    with pytest.raises(BadInterval) as caught:
        check_interval("1h", supported=["1m", "1d"])
    assert "'1h'" in str(caught.value) and "not supported" in str(caught.value)
    assert "1m, 1d" in str(caught.value)
    assert is_bar("1m") and not is_bar(TICK)


@pytest.mark.parametrize(("interval", "inside", "start", "following"), [
    ("1s", "2024-03-05 10:11:12.999", "2024-03-05 10:11:12", "2024-03-05 10:11:13"),
    ("1m", "2024-03-05 10:11:59", "2024-03-05 10:11:00", "2024-03-05 10:12:00"),
    ("15m", "2024-03-05 10:44:00", "2024-03-05 10:30:00", "2024-03-05 10:45:00"),
    ("4h", "2024-03-05 03:59:59", "2024-03-05 00:00:00", "2024-03-05 04:00:00"),
    ("12h", "2024-03-05 13:00:00", "2024-03-05 12:00:00", "2024-03-06 00:00:00"),
    ("1d", "2024-03-05 23:59:59", "2024-03-05 00:00:00", "2024-03-06 00:00:00"),
    # 3d: epoch multiples of three days, as Binance's 3d klines (2024-01-03 is day 19725 = 3 x 6575)
    ("3d", "2024-01-05 12:00:00", "2024-01-03 00:00:00", "2024-01-06 00:00:00"),
    ("3d", "2024-01-03 00:00:00", "2024-01-03 00:00:00", "2024-01-06 00:00:00"),
    ("1w", "2024-03-10 23:00:00", "2024-03-04 00:00:00", "2024-03-11 00:00:00"),  # Mondays
    ("1w", "2024-03-04 00:00:00", "2024-03-04 00:00:00", "2024-03-11 00:00:00"),
    ("1M", "2024-02-29 12:00:00", "2024-02-01 00:00:00", "2024-03-01 00:00:00"),
    ("1M", "2023-12-31 23:59:59", "2023-12-01 00:00:00", "2024-01-01 00:00:00"),
])
def test_bars_align_in_utc(interval, inside, start, following):
    assert floor_bar(ms(inside), interval) == ms(start)
    assert next_bar(ms(inside), interval) == ms(following)
    assert prev_bar(ms(following), interval) == ms(start)
    assert floor_bar(ms(start), interval) == ms(start)  # a bar start is its own floor


def test_bar_starts_are_the_bars_beginning_in_a_half_open_span():
    day = ms("2024-03-05 00:00:00")
    assert bar_starts(day, day + 3 * 3_600_000, "1h") == [day + i * 3_600_000 for i in range(3)]
    assert bar_starts(day + 1, day + 3_600_000 + 1, "1h") == [day + 3_600_000]  # aligned up
    assert bar_starts(day, day, "1h") == []
    months = bar_starts(ms("2024-01-15 00:00:00"), ms("2024-04-01 00:00:00"), "1M")
    assert months == [ms("2024-02-01 00:00:00"), ms("2024-03-01 00:00:00")]


def test_ceil_bar_and_shift_bars_step_on_the_calendar():
    day = ms("2024-03-05 00:00:00")
    assert ceil_bar(day, "1h") == day  # a bar start is its own ceiling
    assert ceil_bar(day + 1, "1h") == day + 3_600_000
    assert ceil_bar(ms("2024-02-10 00:00:00"), "1M") == ms("2024-03-01 00:00:00")
    assert shift_bars(day, "1h", 3) == day + 3 * 3_600_000
    assert shift_bars(day, "1h", -24) == ms("2024-03-04 00:00:00")
    jan = ms("2024-01-01 00:00:00")
    assert shift_bars(jan, "1M", -1) == ms("2023-12-01 00:00:00")  # across a year boundary
    assert shift_bars(jan, "1M", 14) == ms("2025-03-01 00:00:00")
    # An absurd month count stops at the calendar's ends instead of overflowing a datetime.
    assert shift_bars(jan, "1M", -10**9) == ms("0001-01-01 00:00:00")
    assert shift_bars(jan, "1M", 10**9) == ms("9999-12-01 00:00:00")


def test_interval_lengths():
    assert interval_ms("1m") == 60_000 and interval_ms("1w") == 7 * 86_400_000
    assert interval_ms("1M") == 30 * 86_400_000  # nominal; next_bar knows real month ends
    with pytest.raises(BadInterval, match="'tick'"):
        interval_ms(TICK)


# ---- times ----------------------------------------------------------------------------------

T = ms("2024-01-02 09:30:00")


@pytest.mark.parametrize("value", [
    "2024-01-02T09:30:00Z", "2024-01-02T09:30:00+00:00", "2024-01-02T10:30:00+01:00",
    "2024-01-02T09:30:00", "2024-01-02 09:30:00", " 2024-01-02T09:30:00z ",
    T // 1000, float(T // 1000), T, T * 1000, T * 1_000_000, str(T // 1000), str(T),
    datetime(2024, 1, 2, 9, 30), datetime(2024, 1, 2, 4, 30, tzinfo=timezone(timedelta(hours=-5))),
    pd.Timestamp("2024-01-02 09:30", tz="UTC"), np.datetime64("2024-01-02T09:30:00"),
    np.int64(T), np.float64(T // 1000),
])
def test_every_common_time_form_reads_as_epoch_ms_utc(value):
    assert to_ms(value) == T


def test_dates_and_relative_times():
    assert to_ms(date(2024, 1, 2)) == ms("2024-01-02 00:00:00")
    assert to_ms("2024-01-02") == ms("2024-01-02 00:00:00")
    before = now_ms()
    assert before - 1000 <= to_ms("now") <= now_ms() + 1000
    assert abs(to_ms("$currentDate-1d") - (before - 86_400_000)) < 5000
    assert abs(to_ms("now - 2h") - (before - 7_200_000)) < 5000
    month_ago = datetime.fromtimestamp(to_ms("$currentDate-1M") / 1000, tz=timezone.utc)
    assert 27 <= (datetime.now(timezone.utc) - month_ago).days <= 31


@pytest.mark.parametrize(("value", "shown"), [
    (None, "None"), (True, "True"), ("", "empty"), ("yesterday", "'yesterday'"),
    ("2024-13-45", "'2024-13-45'"), ("x" * 100, "too long"), (float("nan"), "nan"),
    (float("inf"), "inf"), (object(), "object"), (np.datetime64("NaT"), "NaT"),
    ([2024, 1, 2], "list"),
])
def test_unreadable_times_are_refused_naming_the_field_and_value(value, shown):
    with pytest.raises(BadRequest) as caught:
        to_ms(value, "start")
    assert str(caught.value).startswith("start:") and shown in str(caught.value)


def test_iso_display_round_trips():
    assert ms_to_iso(T) == "2024-01-02T09:30:00Z"
    assert to_ms(ms_to_iso(T + 123)) == T + 123


def test_datetime_columns_become_epoch_ms_with_missing_times_flagged():
    naive = pd.Series(pd.to_datetime(["2024-01-02 09:30", None, "2024-01-02 10:30"]))
    ms_, valid = datetimes_to_ms(naive)
    assert ms_.tolist() == [T, 0, T + 3_600_000] and valid.tolist() == [True, False, True]
    berlin = pd.DatetimeIndex(["2024-01-02 10:30"]).tz_localize("Europe/Berlin")  # 09:30 UTC
    assert datetimes_to_ms(berlin)[0].tolist() == [T]
    assert datetimes_to_ms(np.array(["2024-01-02T09:30"], dtype="datetime64[s]"))[0].tolist() \
        == [T]

