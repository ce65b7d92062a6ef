"""Binary data frames (nbfeed.wire_binary): exact rows, a browser-readable layout, hostile bytes."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest

from nbfeed.columns import Columns
from nbfeed.jsonfast import dumpb, loads
from nbfeed.wire_binary import (
    MAGIC,
    FrameError,
    FrameReader,
    decode_frame,
    decode_rows,
    encode_block,
    encode_frame,
    encode_rows_block,
    json_rows_of,
    read_header,
)

QUOTES = [{"time": 1_700_000_000_000 + i, "symbol": "AAPL", "price": 208.5 + i / 7,
           "prev_close": 209.7331, "change": -1.2208 + i / 7, "change_percent": -0.5818,
           "volume": 1000 + i, "bid": 208.4914, "ask": 208.5332, "halted": i % 2 == 0}
          for i in range(50)]
AWKWARD = [
    {"time": 1, "symbol": "AAPL", "price": 1.5, "n": 3, "ok": True, "tag": "x"},
    {"time": 2, "symbol": "AAPL", "price": math.nan, "n": 4, "ok": False, "tag": None,
     "extra": 1.0},
    {"time": 3, "symbol": "BRK.B", "price": math.inf, "n": 5, "ok": True, "tag": "\u00e9\ud800"},
    {"time": -4, "symbol": "AAPL", "price": -0.0, "n": -(2 ** 62), "ok": True, "tag": "",
     "nested": {"a": [1, 2]}},
    {"time": 5, "symbol": "AAPL", "price": 1e308, "n": 0, "ok": False, "tag": "\u2603",
     "big": [1, None]},
]

# Rows naming other symbols than their batch's (a symbol column).
OTHERS = [{"time": 7, "symbol": "MSFT", "price": 1.0},
          {"time": 8, "symbol": "AAPL", "price": float("nan")},
          {"time": 9, "symbol": "AAPL", "price": 2.0, "flag": True}]


def as_json_client_sees(rows):
    return loads(dumpb(rows))


def frame_of(*row_lists, rid="q1"):
    cols = [Columns.from_rows(rows, "AAPL") for rows in row_lists]
    return encode_frame(rid, [encode_block(c) for c in cols])


@pytest.mark.parametrize("rows", [QUOTES, AWKWARD, QUOTES[:1]], ids=["quotes", "awkward", "one"])
def test_rows_come_back_as_a_json_client_reads_them(rows):
    header, batches = decode_frame(frame_of(rows, rows[::-1]))
    assert header["rows"] == 2 * len(rows) and header["blocks"] == 2
    if rows is QUOTES:
        assert len(header["schemas"]) == 1  # both batches have the same fields: named once
    got = [row for cols in batches for row in json_rows_of(cols)]
    assert got == as_json_client_sees(rows + rows[::-1])
    # Types too, not just equality: an int stays an int, a flag a flag, a null a null.
    want = as_json_client_sees(rows + rows[::-1])
    assert [[type(v) for v in r.values()] for r in got] == \
        [[type(r2[k]) for k in r] for r, r2 in zip(got, want)]


# Numbers only (int64 and float64 columns, none missing): the one-struct-call path.
PLAIN = [{k: v for k, v in r.items() if k != "halted"} for r in QUOTES]
PLAIN_ODD = [{**r, "price": [math.nan, math.inf, -math.inf, 1e308, -0.0][i % 5]}
             for i, r in enumerate(PLAIN[:10])]


@pytest.mark.parametrize("rows", [QUOTES, AWKWARD, AWKWARD[::-1], QUOTES[:1], [], PLAIN,
                                  PLAIN[:1], PLAIN_ODD, PLAIN_ODD[:2]],
                         ids=["quotes", "awkward", "reversed", "one", "none", "plain",
                              "plain-one", "plain-nan-inf", "plain-nan-two"])
def test_rows_read_without_numpy_are_the_same(rows):
    """decode_rows (what the notebook client uses) equals json_rows_of, key order and types."""
    data = encode_frame("q", [encode_block(Columns.from_rows(rows, "AAPL")),
                              encode_block(Columns.from_rows(rows[::-1], "AAPL")),
                              encode_block(Columns.from_rows(OTHERS, "AAPL"))])
    _, fast = decode_rows(data)
    _, batches = decode_frame(data)
    slow = [r for c in batches for r in json_rows_of(c)]
    assert fast == slow == as_json_client_sees(rows + rows[::-1] + OTHERS)
    assert [[(k, type(v)) for k, v in r.items()] for r in fast] == \
        [[(k, type(v)) for k, v in r.items()] for r in slow]


def test_a_field_some_rows_lack_stays_absent_not_null():
    _, (cols,) = decode_frame(frame_of(AWKWARD))
    rows = json_rows_of(cols)
    assert "extra" not in rows[0] and rows[1]["extra"] == 1.0
    assert rows[4]["big"] == [1, None] and "big" not in rows[3]


def test_every_array_starts_at_a_multiple_of_8_bytes():
    """A browser can view every column as a typed array of the frame without copying."""
    frame = frame_of(QUOTES, AWKWARD, QUOTES[:3], rid="a-longer-id-\u00e9")
    assert len(frame) % 8 == 0
    header, offset = read_header(frame)
    assert len(header["schemas"]) == 2
    for _ in range(header["blocks"]):
        assert offset % 8 == 0
        (size,) = struct.unpack_from("<I", frame, offset)
        meta = loads(frame[offset + 4:offset + 4 + size])
        offset += 4 + size
        schema = header["schemas"][meta["schema"]]
        sizes = iter(meta.get("sizes", []))
        for _name, kind in schema["columns"]:
            assert offset % 8 == 0
            nbytes = next(sizes) if kind == "json" else meta["rows"] * int(kind[1])
            offset += nbytes + (-nbytes % 8)
        for _name in schema["present"]:
            assert offset % 8 == 0
            offset += meta["rows"] + (-meta["rows"] % 8)
    assert offset == len(frame)


def test_binary_is_smaller_than_json_for_quote_rows():
    assert len(frame_of(QUOTES)) < len(dumpb(QUOTES)) / 1.5
    # Even a batch of one row: its field names are in the frame's schema, not per block.
    one_row_batches = [QUOTES[i:i + 1] for i in range(20)]
    assert len(frame_of(*one_row_batches)) < 0.85 * len(dumpb(QUOTES[:20]))


def test_an_empty_frame_and_an_empty_batch():
    header, batches = decode_frame(encode_frame("q", []))
    assert (header["rows"], header["blocks"], batches) == (0, 0, [])
    _, (cols,) = decode_frame(encode_frame("q", [encode_block(Columns.empty("X"))]))
    assert len(cols) == 0 and cols.symbol == "X"


def test_every_truncation_is_refused_with_a_reason():
    frame = frame_of(AWKWARD)
    for cut in range(len(frame)):
        with pytest.raises(FrameError):
            decode_frame(frame[:cut])


SCHEMA = {"columns": [["time", "i8"]], "present": []}


def _block(meta: dict, body: bytes = b"") -> bytes:
    meta = {"schema": "k", **meta}
    raw = dumpb(meta)
    raw += b" " * (-(4 + len(raw)) % 8)
    return struct.pack("<I", len(raw)) + raw + body


def _frame(blocks: list[bytes], head: dict | None = None, schema: dict | None = None) -> bytes:
    raw = dumpb(head or {"type": "data_update", "id": "q", "rows": 1, "blocks": len(blocks),
                         "schemas": {"k": schema or SCHEMA}})
    raw += b" " * (-len(raw) % 8)
    return MAGIC + struct.pack("<I", len(raw)) + raw + b"".join(blocks)


TIME1 = np.array([5], dtype="<i8").tobytes()
JSON_X = {"columns": [["time", "i8"], ["x", "json"]], "present": []}


@pytest.mark.parametrize(
    ("data", "named"),
    [
        (b"", "magic"),
        (b"{\"type\":\"data_update\"}", "magic"),
        (MAGIC + struct.pack("<I", 2 ** 31) + b"{}", "frame header"),
        (MAGIC + struct.pack("<I", 4) + b"[1] ", "frame header must be a JSON object"),
        (MAGIC + struct.pack("<I", 7) + b"{\"a\":\xff}", "not JSON"),
        (_frame([], {"type": "data_update", "blocks": 10 ** 12}), "block 0"),
        (_frame([], {"type": "data_update", "blocks": -1}), "blocks must be a count"),
        (_frame([], {"type": "data_update", "blocks": 0, "schemas": []}), "schemas must be"),
        (_frame([_block({"rows": 1}, TIME1 + b"junk")]), "bytes after the last block"),
        (_frame([_block({"rows": 100}, TIME1)]), "do not fit"),
        (_frame([_block({"rows": 1, "schema": "nope"}, TIME1)]), "not in the frame header"),
        (_frame([_block({"rows": 1}, TIME1)], schema={"columns": [["time", "c16"]]}),
         "unknown type"),
        (_frame([_block({"rows": 1}, TIME1)], schema={"columns": [["price", "f8"]]}),
         "first column must be time"),
        (_frame([_block({"rows": 1}, TIME1 * 2)],
                schema={"columns": [["time", "i8"], ["time", "i8"]]}), "twice"),
        (_frame([_block({"rows": 1}, TIME1)], schema={"columns": "time"}), "must be lists"),
        (_frame([_block({"rows": 1}, TIME1)], schema={"columns": [[1, 2]]}), "[name, type]"),
        (_frame([_block({"rows": 1}, TIME1)], schema=["time"]), "must be an object"),
        (_frame([_block({"rows": 1}, TIME1)],
                schema={"columns": [["time", "i8"]], "present": ["nope"]}), "no field"),
        (_frame([_block({"rows": 1}, TIME1)],
                schema={"columns": [["time", "i8"]], "present": [["x"]]}), "no field"),
        (_frame([_block({"rows": 1, "sizes": [3]}, TIME1 + b"[1,\0\0\0\0\0")],
                schema=JSON_X), "not JSON"),
        (_frame([_block({"rows": 1, "sizes": [5]}, TIME1 + b"[1,2]\0\0\0")], schema=JSON_X),
         "JSON array of 1"),
        (_frame([_block({"rows": 1, "sizes": []}, TIME1)], schema=JSON_X), "do not fit"),
        (_frame([_block({"rows": 1, "sizes": 5}, TIME1)], schema=JSON_X), "sizes must be"),
        (_frame([_block({"rows": "1"})]), "rows must be a count"),
        (_frame([_block({"rows": 1, "symbol": 7})]), "symbol"),
        (_frame([struct.pack("<I", 8) + b"[" * 8]), "not JSON"),
    ],
)
def test_hostile_frames_are_refused_naming_the_problem(data, named):
    with pytest.raises(FrameError) as refused:
        decode_frame(data)
    assert named in str(refused.value), str(refused.value)
    assert len(str(refused.value)) < 400


def test_a_huge_hostile_schema_is_refused_quickly():
    columns = [["time", "i8"]] + [[f"f{i}", "f8"] for i in range(40_000)] + [["f7", "f8"]]
    with pytest.raises(FrameError, match="twice"):
        decode_frame(_frame([], schema={"columns": columns}))


def test_a_lying_block_count_costs_nothing():
    """A header claiming a trillion blocks fails at the first missing one, allocating none."""
    with pytest.raises(FrameError, match="block 0"):
        decode_frame(_frame([], {"type": "data_update", "blocks": 10 ** 12}))


def test_a_schema_is_sent_once_per_socket_and_read_by_that_connection_only():
    first, second = (encode_block(Columns.from_rows(QUOTES[i:i + 5], "AAPL")) for i in (0, 5))
    sent: set[str] = set()
    frame1 = encode_frame("q", [first], sent)
    frame2 = encode_frame("q", [second], sent)
    assert b"prev_close" in frame1 and b"prev_close" not in frame2 and len(frame2) < len(frame1)
    reader = FrameReader()
    rows = [r for frame in (frame1, frame2) for c in reader.read(frame)[1]
            for r in json_rows_of(c)]
    assert rows == as_json_client_sees(QUOTES[:10])
    with pytest.raises(FrameError, match="not in the frame header"):
        FrameReader().read(frame2)  # another connection never saw the schema


def test_a_reader_keeps_a_bounded_number_of_schemas():
    reader = FrameReader()
    reader.max_schemas = 3
    for i in range(3):
        reader.read(frame_of([{"time": 1, "symbol": "X", f"f{i}": 1.0}]))
    with pytest.raises(FrameError, match="more than 3 schemas"):
        reader.read(frame_of([{"time": 1, "symbol": "X", "another": 1.0}]))


async def flush_binary(batches: list, conflated_rows: int, send) -> None:
    """One ``WireSession.flush`` of a binary socket whose subscription ``q`` holds ``batches``
    (``conflated_rows`` > 0: the socket is behind, so small batches are encoded together)."""
    from nbfeed.hub.wire import WireSession

    class Hub:  # only what the session touches on its binary path
        pass

    class Sub:
        pending = 1
        conflated_rows = 0

        def __init__(self, items):
            self.items = items

        def take(self):
            items, self.items = self.items, []
            self.pending = 0
            return items

        async def close(self):
            pass

    sub = Sub(batches)
    sub.conflated_rows = conflated_rows
    session = WireSession(Hub(), send)
    try:
        session.format = "binary"
        session.subscriptions["q"] = sub
        session._ids_json["q"] = b'"q"'
        await session.flush()
    finally:
        await session.close()


@pytest.mark.parametrize("conflated", [0, 5], ids=["keeping-up", "behind"])
async def test_a_batch_that_cannot_be_columns_goes_out_as_json_in_its_place(conflated):
    """The session's binary path keeps the order of batches when one of them has to be JSON
    (here: a time that is no epoch-ms integer, which JSON carries as it is)."""
    from nbfeed.hub.outbox import StreamBatch

    sent: list[tuple[bytes, bool]] = []

    def send(frame: bytes, binary: bool = False):
        sent.append((frame, binary))

    rows = [[{"time": 1, "symbol": "A", "price": 1.0}], [{"time": "soon", "symbol": "A"}],
            [{"time": 3, "symbol": "A", "price": 3.0}], [{"time": 4, "symbol": "A",
                                                          "price": 4.0}]]
    await flush_binary([StreamBatch("s", "A", "tick", r) for r in rows], conflated, send)
    assert [binary for _, binary in sent] == [True, False, True]
    reader = FrameReader()
    got = []
    for frame, binary in sent:
        if binary:
            got += [r for c in reader.read(frame)[1] for r in json_rows_of(c)]
        else:
            assert list(loads(frame)) == ["type", "id", "rows"]
            got += loads(frame)["rows"]
    assert got == [r for batch in rows for r in batch]


async def test_a_socket_behind_gets_its_small_batches_in_one_block_in_order():
    from nbfeed.hub.outbox import StreamBatch

    sent: list[bytes] = []
    symbols = ["AAPL", "MSFT", "GOOGL", "AAPL"]
    batches = [StreamBatch("s", sym, "tick", [{"time": i, "symbol": sym, "price": i + 0.5}])
               for i, sym in enumerate(symbols)]
    big = StreamBatch("s", "IBM", "tick", [{"time": 10 + i, "symbol": "IBM", "price": 1.0}
                                           for i in range(10)])
    await flush_binary([*batches, big, batches[0]], 7,
                       lambda frame, binary=False: sent.append(frame))
    (frame,) = sent
    header, parts = FrameReader().read(frame)
    assert header["blocks"] == 3  # the four small ones together, the big one, the last one
    assert [r for c in parts for r in json_rows_of(c)] == \
        [r for b in [*batches, big, batches[0]] for r in b.rows]


def test_shared_blocks_hold_a_bounded_number_of_rows():
    """The cache of encoded batches holds their rows alive: it is bounded by rows, and a
    batch dropped from it is encoded again (the same bytes), never mistaken for another."""
    from nbfeed.hub.outbox import StreamBatch
    from nbfeed.hub.wire_frames import SharedBlocks

    shared = SharedBlocks(max_batches=100, max_rows=50)
    batches = [StreamBatch("s", "AAPL", "tick", QUOTES[i:i + 10]) for i in range(0, 50, 10)]
    batches += [StreamBatch("s", "AAPL", "tick", QUOTES[:10]) for _ in range(15)]
    blocks = [shared.block(b) for b in batches]
    assert shared._rows <= 50 and len(shared._blocks) <= 5
    assert shared.block(batches[-1]) is blocks[-1] and shared.encoded == 20
    again = shared.block(batches[0])  # dropped long ago: encoded again, same bytes
    assert again is not blocks[0] and again == blocks[0] and shared.encoded == 21
    huge = StreamBatch("s", "AAPL", "tick", QUOTES * 3)  # bigger than the bound: kept alone
    assert shared.block(huge) is shared.block(huge) and len(shared._blocks) == 1


@pytest.mark.parametrize("rows", [PLAIN, PLAIN[:1], PLAIN_ODD, QUOTES, AWKWARD, OTHERS,
                                  [{**r, "volume": float(r["volume"])} for r in PLAIN],
                                  [{"time": 1, "symbol": "AAPL", "n": 2 ** 63}],
                                  [{"time": 1.0, "symbol": "AAPL", "p": 1.0}],
                                  [{"time": 1, "p": 1.0}, {"time": 2, "p": 2}],
                                  [{"time": 1, "symbol": "AAPL", "p": 1.0}, {"time": 2}]],
                         ids=["plain", "one", "nan-inf", "flags", "awkward", "others",
                              "floats", "too-big", "float-time", "mixed", "ragged"])
def test_blocks_straight_from_rows_are_the_same_bytes(rows):
    """The server's cheap path for rows gives exactly the block the Columns path gives, or
    steps aside (None) for rows it does not handle."""
    fast = encode_rows_block(rows, "AAPL")
    slow = encode_block(Columns.from_rows(rows, "AAPL"))
    plain = all(type(r.get("time")) is int and len(r) == len(rows[0]) for r in rows) and all(
        type(v) is float or (type(v) is int and abs(v) < 2 ** 63) for r in rows
        for k, v in r.items() if k not in ("time", "symbol")) and all(
        r.get("symbol", "AAPL") == "AAPL" for r in rows)
    if plain:
        assert fast == slow
    else:
        assert fast is None
